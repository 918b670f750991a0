"""Rendered tracking video: 2-D boxes/ids/joints, or body meshes (pyrender, else the CPU rasteriser)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from phalp_lightning.errors import UserError
from phalp_lightning.rendering.overlay import draw_tracks
from phalp_lightning.structures import FrameTracks, VideoInfo, has_3d
from phalp_lightning.utils.io import AtomicFile
from phalp_lightning.utils.logging import get_logger

log = get_logger(__name__)


class VideoRenderWriter:
    """``<prefix><name>.mp4`` (OpenCV, mp4v) with the tracks drawn on every frame.

    Args:
        mode: "boxes" (boxes, ids and 2-D joints) or "mesh" (SMPL meshes of detected tracks, over
            the boxes; falls back to "boxes" with a warning when no mesh renderer can be built).
        fps: frame rate of the written video.
        output_width: resize frames to this width (None keeps the source size).
        prefix: file-name prefix (PHALP: "PHALP_").
        mesh_backend: "auto" (pyrender, else CPU), "pyrender" or "cpu".
        assets_dir: body-model folder for the mesh mode (None: $PHALP_ASSETS or the cache).
    """

    needs_images = True

    def __init__(
        self,
        mode: str = "boxes",
        fps: float = 30.0,
        output_width: int | None = None,
        prefix: str = "PHALP_",
        mesh_backend: str = "auto",
        assets_dir: str | None = None,
    ) -> None:
        if mode not in ("boxes", "mesh"):
            raise UserError(f"render.writer.mode={mode!r}: unknown render mode", "use render=boxes or render=mesh")
        self.mode = mode
        self.fps = fps
        self.output_width = output_width
        self.prefix = prefix
        self.mesh_backend = mesh_backend
        self.assets_dir = assets_dir
        self._mesh: Any = None
        # One render in progress: OpenCV's writer filling the output's temporary file.
        self._writer: Any = None
        self._output: AtomicFile | None = None
        self._frames_written = 0
        self._video: VideoInfo | None = None

    def outputs(self, video: VideoInfo) -> list[Path]:
        return [video.output_dir / f"{self.prefix}{video.name}.mp4"]

    def open(self, video: VideoInfo) -> None:
        self.abort()
        self._video = video
        if self.mode == "mesh" and self._mesh is None:
            from phalp_lightning.rendering.mesh import build_mesh_renderer

            self._mesh = build_mesh_renderer(self.mesh_backend, self.assets_dir)
            if self._mesh is None:
                log.warning("no mesh renderer available (pyrender/GL and the CPU rasteriser both missing): rendering boxes")
                self.mode = "boxes"

    def _render(self, tracks: FrameTracks, image: np.ndarray) -> np.ndarray:
        if self.mode == "mesh" and not has_3d(tracks.detections.pose):
            # Tracked without HMAR: no pose to mesh (nor joints to draw).
            log.warning("render mode mesh: the tracks have no 3D outputs (no HMAR checkpoint): rendering boxes and ids")
            self.mode = "boxes"
        if self.mode == "mesh":
            image = self._mesh.render(image, tracks)
        return draw_tracks(image, tracks, draw_joints=self.mode == "boxes")

    def write(self, tracks: FrameTracks, image: np.ndarray | None) -> None:
        import cv2

        if image is None or self._video is None:
            raise RuntimeError("VideoRenderWriter.write needs open() and the frame image")
        frame = self._render(tracks, image)
        if self.output_width is not None and frame.shape[1] != self.output_width:
            height = int(frame.shape[0] * self.output_width / frame.shape[1])
            frame = cv2.resize(frame, (self.output_width, height), interpolation=cv2.INTER_LINEAR)
        if self._writer is None:
            self._start_file(frame.shape[1], frame.shape[0])
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self._frames_written += 1

    def _start_file(self, width: int, height: int) -> None:
        """Open the video writer on a temporary file (the size is known from the first frame)."""
        import cv2

        (path,) = self.outputs(self._video)
        self._output = AtomicFile(path)
        self._frames_written = 0
        self._writer = cv2.VideoWriter(str(self._output.temporary), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height))
        if not self._writer.isOpened():
            raise OSError(f"OpenCV cannot open a video writer for {path}")

    def close(self) -> list[Path]:
        if self._video is None:
            raise RuntimeError("VideoRenderWriter.close() before open()")
        paths = self.outputs(self._video)
        if self._writer is None:  # no frame at all: nothing to render
            self._video = None
            return []
        self._writer.release()
        self._writer = None
        # OpenCV's writer reports no write error (disk full, file-size limit): the file is re-opened
        # and its frames counted before it is renamed into place as finished.
        counted = count_frames(self._output.temporary)
        if counted != self._frames_written:
            expected = self._frames_written
            self.abort()
            raise OSError(
                f"rendered video {paths[0]} is incomplete: {counted} of {expected} frames readable "
                "(disk full or a file-size limit?); nothing was written under its name"
            )
        self._output.commit()
        self._output, self._video = None, None
        return paths

    def is_complete(self, path: Path) -> bool:
        """A finished render: the file decodes and its last frame reads (checked before a rerun skips it)."""
        return path.is_file() and count_frames(path) > 0

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.release()
        if self._output is not None:
            self._output.discard()
        self._writer, self._output, self._video = None, None, None


def count_frames(path: Path) -> int:
    """Frames a video file decodes to (0 when it does not open): the container's count, trusted
    only if its last frame reads, else counted by reading."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            return 0
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if total > 0:
            capture.set(cv2.CAP_PROP_POS_FRAMES, total - 1)
            if capture.grab():
                return total
            capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
        counted = 0
        while capture.grab():
            counted += 1
        return counted
    finally:
        capture.release()
