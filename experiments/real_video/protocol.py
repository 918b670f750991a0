"""The given-boxes protocol on a MOT-layout sequence: ground truth in, perturbed detections out.

Every tracker of the experiment gets exactly these boxes: the ground-truth rows marked to be
evaluated (conf 1), with a seeded 10 % of them dropped, centre and size jittered with a standard
deviation of 3 % of the box size, and a few false positives of person size at random places. All
given boxes score 1.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Sequence:
    """A MOT-layout sequence folder: ``gt/gt.txt``, ``seqinfo.ini`` and a video or ``img1/``."""

    name: str
    root: Path
    num_frames: int
    image_size: tuple[int, int]  # (H, W)
    gt_rows: np.ndarray  # (N, 6) frame (1-based), id, x, y, w, h of the evaluated rows

    @classmethod
    def load(cls, root: str | Path) -> Sequence:
        root = Path(root)
        gt_path = root / "gt" / "gt.txt"
        if not gt_path.is_file():
            raise FileNotFoundError(f"{root}: no gt/gt.txt (a MOT-layout sequence folder is expected)")
        info = configparser.ConfigParser()
        info.read(root / "seqinfo.ini")
        section = info["Sequence"] if "Sequence" in info else {}
        rows = np.loadtxt(gt_path, delimiter=",", ndmin=2)
        keep = rows[:, 6] == 1 if rows.shape[1] > 6 else np.ones(len(rows), dtype=bool)
        rows = rows[keep][:, :6]
        num_frames = int(section.get("seqLength", int(rows[:, 0].max())))
        height = int(section.get("imHeight", 0))
        width = int(section.get("imWidth", 0))
        return cls(str(section.get("name", root.name)), root, num_frames, (height, width), rows)

    def video_path(self) -> Path | None:
        videos = sorted(self.root.glob("*.mp4")) + sorted(self.root.glob("*.avi"))
        return videos[0] if videos else None


def given_boxes(
    sequence: Sequence,
    seed: int = 0,
    drop_rate: float = 0.10,
    jitter: float = 0.03,
    false_positive_rate: float = 0.02,
) -> np.ndarray:
    """Detections of the protocol: (M, 7) rows ``frame (1-based), gt id (-1 = false positive), x, y, w, h, score``.

    Args:
        sequence: the sequence.
        seed: the seed of the drops, jitter and false positives.
        drop_rate: share of ground-truth boxes removed.
        jitter: standard deviation of the centre and size noise, as a share of the box size.
        false_positive_rate: false positives per ground-truth box ("a few").
    """
    rng = np.random.default_rng(seed)
    rows = sequence.gt_rows.copy()
    rows = rows[rng.random(len(rows)) >= drop_rate]
    frame, ids, x, y, w, h = rows.T
    cx, cy = x + w / 2, y + h / 2
    cx = cx + rng.normal(0.0, jitter, len(rows)) * w
    cy = cy + rng.normal(0.0, jitter, len(rows)) * h
    w = w * (1.0 + rng.normal(0.0, jitter, len(rows)))
    h = h * (1.0 + rng.normal(0.0, jitter, len(rows)))
    boxes = np.column_stack([frame, ids, cx - w / 2, cy - h / 2, w, h, np.ones(len(rows))])

    height, width = sequence.image_size
    count = max(1, int(round(false_positive_rate * len(sequence.gt_rows))))
    template = sequence.gt_rows[rng.integers(0, len(sequence.gt_rows), count)]
    fp_w = template[:, 4] * rng.uniform(0.8, 1.2, count)
    fp_h = template[:, 5] * rng.uniform(0.8, 1.2, count)
    fp_x = rng.uniform(0, max(width - fp_w.max(), 1), count)
    fp_y = rng.uniform(0, max(height - fp_h.max(), 1), count)
    fp_frames = rng.integers(1, sequence.num_frames + 1, count)
    false_positives = np.column_stack([fp_frames, -np.ones(count), fp_x, fp_y, fp_w, fp_h, np.ones(count)])
    out = np.concatenate([boxes, false_positives])
    return out[np.lexsort((-out[:, 6], out[:, 0]))]


def per_frame(rows: np.ndarray, num_frames: int) -> list[np.ndarray]:
    """Split protocol rows into one (n, 7) array per frame (index 0 = frame 1)."""
    return [rows[rows[:, 0] == index + 1] for index in range(num_frames)]


def tracked_rows(tracker: Any, frames: list[Any]) -> np.ndarray:
    """Run ``tracker`` (our PHALPTracker) over ``frames`` and return its entries as MOT rows (n, 6): frame (from 1), id, x, y, w, h."""
    from phalp_lightning.evaluation.sequences import TrackSequence

    emitted = []
    for frame in frames:
        emitted.extend(tracker.update(frame))
    emitted.extend(tracker.finalize())
    sequence = TrackSequence.from_frame_tracks(emitted, name="x")
    return np.column_stack([sequence.frames + 1, sequence.track_ids, sequence.boxes])
