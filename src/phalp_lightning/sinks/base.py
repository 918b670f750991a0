"""The writer interface of the predict pipeline and atomic file output.

A writer receives the complete :class:`~phalp_lightning.structures.FrameTracks` of one video, frame
by frame in order, and writes its files only when the video is closed, atomically (temporary file +
``os.replace``) after checking it (a rendered video is re-opened and its frames counted): a file
that exists under its final name is finished, which is what resuming relies on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from phalp_lightning.structures import FrameTracks


@dataclass(frozen=True)
class VideoInfo:
    """What writers know about the video they are opened for."""

    name: str  # output file stem
    source: str  # path of the video, folder or box file
    num_frames: int
    output_dir: Path
    fps: float = 30.0


@runtime_checkable
class TrackWriter(Protocol):
    """Writes the tracks of one video at a time: ``open`` -> ``write`` per frame -> ``close``."""

    needs_images: bool  # True when write() needs the frame image

    def outputs(self, video: VideoInfo) -> list[Path]:
        """The files ``close`` will write for ``video`` (all exist = the video is finished)."""
        ...

    def open(self, video: VideoInfo) -> None:
        """Start a video (discarding any unfinished one)."""
        ...

    def write(self, tracks: FrameTracks, image: np.ndarray | None) -> None:
        """Add one frame; ``image`` is the (H, W, 3) uint8 RGB frame when ``needs_images``."""
        ...

    def close(self) -> list[Path]:
        """Write the files of the video atomically; returns their paths."""
        ...

    def abort(self) -> None:
        """Drop the video's partial state and temporary files; nothing is written."""
        ...


def output_complete(writer: object, path: Path) -> bool:
    """Whether ``path`` (one of ``writer.outputs``) is a finished output.

    Files are renamed into place only when complete, so existence is the default test; a writer
    whose files can also be damaged afterwards or by an older version (a rendered video) checks more
    with its own ``is_complete(path)``.
    """
    check = getattr(writer, "is_complete", None)
    return bool(check(path)) if check is not None else path.is_file()
