"""Completeness of writer outputs (the writer interface itself, ``TrackWriter``, is in ``structures``).

A writer receives the complete :class:`~phalp_lightning.structures.FrameTracks` of one video, frame
by frame in order, and writes its files only when the video is closed, atomically (temporary file +
``os.replace``) after checking it (a rendered video is re-opened and its frames counted): a file
that exists under its final name is finished, which is what resuming relies on.
"""

from __future__ import annotations

from pathlib import Path


def output_complete(writer: object, path: Path) -> bool:
    """Whether ``path`` (one of ``writer.outputs``) is a finished output.

    Files are renamed into place only when complete, so existence is the default test; a writer
    whose files can also be damaged afterwards or by an older version (a rendered video) checks more
    with its own ``is_complete(path)``.
    """
    check = getattr(writer, "is_complete", None)
    return bool(check(path)) if check is not None else path.is_file()
