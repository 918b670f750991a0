"""Which files under an assets root are generated stand-ins, recorded so that ``download`` replaces them.

The synthetic body-model set (``phalp_lightning.datamodules.synthetic.mannequin``) records what it
wrote here; the registry side (``list``, ``download``) only reads the record.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from phalp_lightning.utils.io import atomic_write_text, sha256_of

# Which files under a root are generated stand-ins (relpath -> sha256), so that `download` replaces
# them with the released files instead of keeping them as "already present".
STAND_IN_MANIFEST = "synthetic_stand_ins.json"


def record_stand_ins(root: Path, written: list[Path]) -> None:
    """Add ``written`` (files under ``root``) with their sha256 to the record under ``root``."""
    recorded = read_stand_ins(root)
    recorded.update({path.relative_to(root).as_posix(): sha256_of(path) for path in written})
    atomic_write_text(root / STAND_IN_MANIFEST, json.dumps(recorded, indent=1, sort_keys=True) + "\n")


def read_stand_ins(root: str | os.PathLike[str]) -> dict[str, str]:
    """relpath -> sha256 of the files ``generate`` wrote under ``root`` (empty when none)."""
    path = Path(root) / STAND_IN_MANIFEST
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return recorded if isinstance(recorded, dict) else {}


def is_stand_in(root: str | os.PathLike[str], relpath: str) -> bool:
    """True when ``root/relpath`` is still the file ``generate`` wrote (same content)."""
    digest = read_stand_ins(root).get(relpath)
    path = Path(root) / relpath
    return digest is not None and path.is_file() and sha256_of(path) == digest
