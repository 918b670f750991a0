"""Atomic file writes: a file that exists is complete, which resuming and skipping rely on."""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class AtomicFile:
    """A temporary path next to ``path`` that becomes ``path`` in one step on :meth:`commit`.

    For writers whose file outlives one ``with`` block (a video written frame by frame across
    calls); inside one block use :func:`atomic_output`. The parent folder is created. The temporary
    file is not created here, so the writer creates it with the usual permissions.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Keep the real suffix last: OpenCV and numpy pick the format from it.
        self.temporary = self.path.parent / f".{self.path.stem}.tmp.{uuid.uuid4().hex[:12]}{self.path.suffix}"

    def commit(self) -> Path:
        """Replace ``path`` with the finished temporary file; returns ``path``."""
        os.replace(self.temporary, self.path)
        return self.path

    def discard(self) -> None:
        """Remove the temporary file, if any; ``path`` is left as it was."""
        self.temporary.unlink(missing_ok=True)


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` in one step.

    The parent folder is created. The temporary file is not created here, so the writer creates it
    with the usual permissions; it is removed if the writer fails.
    """
    output = AtomicFile(path)
    try:
        yield output.temporary
        output.commit()
    finally:
        output.discard()


# The names AtomicFile (and so atomic_output) gives its temporaries: ".<stem>.tmp.<12 hex><suffix>".
TEMPORARY_NAME = re.compile(r"^\..*\.tmp\.[0-9a-f]{12}(\.[^.]*)?$")


def sweep_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporaries a killed run left under ``folder`` (recursively); returns them.

    Only for a folder no other process is writing into at the same time.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = [path for path in folder.rglob(".*.tmp.*") if TEMPORARY_NAME.match(path.name) and path.is_file()]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    path = Path(path)
    with atomic_output(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    path = Path(path)
    with atomic_output(path) as temporary:
        temporary.write_bytes(data)
    return path


def sha256_of(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """The file's SHA-256 hex digest, read in ``chunk``-byte blocks (weights files are large)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
