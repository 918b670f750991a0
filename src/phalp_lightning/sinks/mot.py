"""MOT-challenge text output: ``frame,id,x,y,w,h,conf,-1,-1,-1`` per detected track entry."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from phalp_lightning.structures import FrameTracks, VideoInfo
from phalp_lightning.utils.io import atomic_output


class MOTWriter:
    """``mot/<name>.txt``: one row per track detected in a frame (ghosts are not written); frames 1-based."""

    needs_images = False

    def __init__(self) -> None:
        self._video: VideoInfo | None = None
        self._rows: list[np.ndarray] = []

    def outputs(self, video: VideoInfo) -> list[Path]:
        return [video.output_dir / "mot" / f"{video.name}.txt"]

    def open(self, video: VideoInfo) -> None:
        self._video, self._rows = video, []

    def write(self, tracks: FrameTracks, image: np.ndarray | None = None) -> None:
        detected = tracks.detected.cpu().numpy()
        boxes = tracks.detections.boxes.cpu().numpy()[detected]
        ids = tracks.track_ids.cpu().numpy()[detected]
        scores = tracks.detections.scores.cpu().numpy()[detected]
        frame = np.full(len(ids), tracks.frame_index + 1)
        rows = np.column_stack([frame, ids, boxes[:, :2], boxes[:, 2:] - boxes[:, :2], scores])
        self._rows.append(rows[np.argsort(ids, kind="stable")])

    def close(self) -> list[Path]:
        if self._video is None:
            raise RuntimeError("MOTWriter.close() before open()")
        (path,) = self.outputs(self._video)
        rows = np.concatenate(self._rows) if self._rows else np.zeros((0, 7))
        lines = [f"{int(r[0])},{int(r[1])},{r[2]:.2f},{r[3]:.2f},{r[4]:.2f},{r[5]:.2f},{r[6]:.4f},-1,-1,-1" for r in rows]
        with atomic_output(path) as temporary:
            temporary.write_text("".join(line + "\n" for line in lines))
        self._video, self._rows = None, []
        return [path]

    def abort(self) -> None:
        self._video, self._rows = None, []
