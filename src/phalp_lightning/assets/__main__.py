"""``python -m phalp_lightning.assets [list|download|verify|generate|convert-smpl]``: get and check assets.

The command lives with the entry points (:mod:`phalp_lightning.pipelines.assets.command`), since it
builds the networks to check weight files; this package is the registry the models import.
"""

from __future__ import annotations

import sys

from phalp_lightning.errors import run_reporting_user_errors
from phalp_lightning.pipelines.assets.command import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(run_reporting_user_errors(main))
