"""The reference evaluators the evaluation tests compare with: hard test dependencies, never skipped."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest


def require_trackeval() -> ModuleType:
    """The installed TrackEval 1.3.0; missing, the test fails and says how to install it.

    It is not in the ``dev`` extra because its metadata pulls the GUI opencv-python;
    ``scripts/setup.sh`` installs it with ``pip install --no-deps trackeval==1.3.0``.
    """
    try:
        return importlib.import_module("trackeval")
    except ImportError:
        pytest.fail("trackeval is a test dependency: run `pip install --no-deps trackeval==1.3.0` (scripts/setup.sh does)")
