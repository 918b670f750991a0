"""A tiny video of coloured blobs with known tracks, until the data engineer's generator is used."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

COLOURS = [(220, 30, 30), (30, 60, 220), (30, 200, 40)]


@dataclass
class BlobVideo:
    video_path: Path
    frames_dir: Path
    mot_gt_path: Path
    boxes: np.ndarray  # (T, P, 4) xyxy
    track_ids: np.ndarray  # (P,)


def make_blob_video(out_dir: Path, num_frames: int = 6, num_people: int = 2, height: int = 240, width: int = 320) -> BlobVideo:
    """People = 60 x 120 coloured rectangles walking horizontally in opposite directions (no overlap)."""
    import cv2

    out_dir.mkdir(parents=True, exist_ok=True)
    frames_dir = out_dir / "frames"
    frames_dir.mkdir(exist_ok=True)
    boxes = np.zeros((num_frames, num_people, 4), dtype=np.float32)
    writer = cv2.VideoWriter(str(out_dir / "blobs.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (width, height))
    rows = []
    for t in range(num_frames):
        image = np.full((height, width, 3), 128, dtype=np.uint8)
        for p in range(num_people):
            x = 20 + 8 * t if p % 2 == 0 else width - 80 - 8 * t
            y = 10 + p * 110 if num_people > 1 else 60
            y = min(y, height - 121)
            boxes[t, p] = (x, y, x + 60, y + 120)
            image[y : y + 120, x : x + 60] = COLOURS[p % len(COLOURS)]
            rows.append(f"{t + 1},{p + 1},{x},{y},60,120,1,1,1")
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(frames_dir / f"{t + 1:06d}.jpg"), bgr)
        writer.write(bgr)
    writer.release()
    gt = out_dir / "gt.txt"
    gt.write_text("\n".join(rows) + "\n")
    return BlobVideo(out_dir / "blobs.mp4", frames_dir, gt, boxes, np.arange(1, num_people + 1))
