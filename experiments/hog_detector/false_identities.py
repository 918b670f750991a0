"""False identities of the default detector + tracker: HOG thresholds on clean clips and a real sequence.

    python experiments/hog_detector/false_identities.py [--real <MOT sequence dir> ...] [--one-person-frames 180]

A new user's first runs are ``bash scripts/demo.sh`` (48 synthetic frames, 2 people) and a clip of
their own; a detector that fires on background gives tracks of nobody ("false identities"). For each
sequence this

1. caches the HOG windows and margins of every frame once per window setting (the score and NMS
   thresholds act after the windows, so every threshold pair reuses them);
2. for each detector setting: selects boxes (``HOGDetector.select``), drops boxes under predict's
   small-box filter (``system.min_box_width/height``), and tracks them with the tracker of
   ``configs/predict.yaml`` as ``predict.py`` builds it without a checkpoint (``hmar_checkpoint=False``:
   the 2-D box-motion cue alone decides, so HMAR's untrained features would not change any id; the
   detections carry box-derived features instead of running HMAR);
3. writes the MOT output with predict's own ``MOTWriter`` and scores it with ``evaluate_files``
   (HOTA, IDF1, MOTA, FP, FN, ID switches), and counts identities: output ids, and false ids = ids
   whose boxes overlap a ground-truth box (IoU >= 0.5) in fewer than half of their frames.

Sequences: one synthetic person walking (``api.make_demo_video(num_people=1)``), the demo's video
(``api.make_demo_video``: 48 frames, 2 people, seed 0, as ``scripts/demo.sh``), and any real
MOT-layout folders passed with ``--real`` (``gt/gt.txt`` rows with conf 1; a video file or ``img1/``).
Writes false_identities.json / .md next to this file (or ``--out``) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import Sequence, load_sequence  # noqa: E402

from phalp_lightning import api  # noqa: E402
from phalp_lightning.detection.hog import HOGDetector  # noqa: E402
from phalp_lightning.structures import FrameDetections, VideoInfo  # noqa: E402
from phalp_lightning.utils.io import atomic_write_text  # noqa: E402
from phalp_lightning.utils.vectors import APPEARANCE_DIM, NUM_LOCATION_JOINTS, POSE_DIM  # noqa: E402

# Window settings (what HOG computes per frame) and, per window setting, the thresholds tried on them.
WINDOW_SETTINGS = {
    # The detector before the real-footage tuning (its class docstring): OpenCV grouping, the window shrunk.
    "pre-tuning": dict(max_side=640, person_box=(0.5, 0.5, 0.8, 0.9), min_person_height=None, group_threshold=2),
    # Today's window setting (configs/detector/hog.yaml): every raw window, person box fitted inside it.
    "raw windows": dict(max_side=640, person_box=(0.488, 0.493, 0.582, 0.774), min_person_height=100, group_threshold=0),
}
THRESHOLDS = {
    "pre-tuning": [(0.3, 0.4)],
    "raw windows": [(score, nms) for score in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5) for nms in (0.2, 0.3, 0.4)],
}


@dataclass
class Windows:
    boxes: list[np.ndarray]  # per frame (K, 4) x, y, w, h
    margins: list[np.ndarray]  # per frame (K,)
    seconds: float


def box_detections(boxes: np.ndarray, scores: np.ndarray, t: int, image_size: tuple[int, int]) -> FrameDetections:
    """Detections with features derived from the boxes: what an untrained HMAR contributes to the ids (nothing)."""
    count = len(boxes)
    height, width = image_size
    boxes_t = torch.as_tensor(boxes, dtype=torch.float32).reshape(count, 4)
    side = float(max(height, width))
    centre = (boxes_t[:, :2] + boxes_t[:, 2:]) / 2
    point = (centre + torch.tensor([(side - width) / 2, (side - height) / 2])) / side
    depth = 2 * 5000.0 / (256.0 * (boxes_t[:, 3] - boxes_t[:, 1]).clamp_min(1.0) / side)
    camera = torch.stack([(point[:, 0] - 0.5) * depth * 256 / 5000, (point[:, 1] - 0.5) * depth * 256 / 5000, depth], 1)
    joints = point[:, None, :].expand(count, NUM_LOCATION_JOINTS, 2).reshape(count, 2 * NUM_LOCATION_JOINTS)
    pose = torch.zeros(count, POSE_DIM)
    pose[:, 226:229] = torch.stack([camera[:, 0], camera[:, 1], camera[:, 2] / 200.0], dim=1)
    return FrameDetections(video="clip", frame_index=t, frame_name=f"{t:06d}.jpg", image_size=image_size,
                           boxes=boxes_t, scores=torch.as_tensor(scores, dtype=torch.float32).reshape(count),
                           appearance=torch.full((count, APPEARANCE_DIM), 5.0), pose=pose,
                           location=torch.cat([joints, camera, camera, camera], dim=1))


def collect_windows(sequence: Sequence, detector: HOGDetector) -> Windows:
    start = time.perf_counter()
    found = [detector.windows(frame) for frame in sequence.frames]
    return Windows([w for w, _ in found], [m for _, m in found], time.perf_counter() - start)


def track(sequence: Sequence, windows: Windows, detector: HOGDetector, cfg, out_dir: Path) -> tuple[Path, dict[str, int]]:
    """Select, filter small boxes, track as predict.py does without a checkpoint.

    Returns the MOT file and the kept detections by their best IoU with a ground-truth box: on
    nobody (< 0.1), on a person but mislocalised (0.1-0.5), matched (>= 0.5).
    """
    from phalp_lightning.evaluation.sequences import box_iou_xywh
    from phalp_lightning.sinks.mot import MOTWriter
    from phalp_lightning.tracking.phalp_tracker import tracker_from_config

    tracker = tracker_from_config(cfg.tracker, hmar_checkpoint=False)
    writer = MOTWriter()
    info = VideoInfo(name=sequence.name, source=sequence.name, num_frames=len(sequence.frames), output_dir=out_dir)
    writer.open(info)
    height, width = sequence.frames[0].shape[:2]
    overlaps = []
    for t, (boxes, margins) in enumerate(zip(windows.boxes, windows.margins, strict=True)):
        selected = detector.select(boxes, margins, height, width)
        xyxy, scores = selected.boxes.numpy(), selected.scores.numpy()
        keep = ((xyxy[:, 2] - xyxy[:, 0]) >= cfg.system.min_box_width) & ((xyxy[:, 3] - xyxy[:, 1]) >= cfg.system.min_box_height)
        kept = xyxy[keep]
        if len(kept):
            xywh = np.concatenate([kept[:, :2], kept[:, 2:] - kept[:, :2]], axis=1)
            gt = sequence.gt[t]
            overlaps.append(box_iou_xywh(xywh, gt).max(axis=1) if len(gt) else np.zeros(len(kept)))
        for tracks in tracker.update(box_detections(xyxy[keep], scores[keep], t, (height, width))):
            writer.write(tracks)
    for tracks in tracker.finalize():
        writer.write(tracks)
    (path,) = writer.close()
    best = np.concatenate(overlaps) if overlaps else np.zeros(0)
    return path, {"boxes_on_nobody": int((best < 0.1).sum()), "boxes_mislocalised": int(((best >= 0.1) & (best < 0.5)).sum()),
                  "boxes_matched": int((best >= 0.5).sum())}


def identities(mot_path: Path, sequence: Sequence) -> dict[str, int]:
    """Output ids, and the false ones: matched (IoU >= 0.5) to a ground-truth box in under half their frames."""
    from phalp_lightning.evaluation.sequences import box_iou_xywh

    rows = np.loadtxt(mot_path, delimiter=",", ndmin=2)
    if rows.size == 0:
        return {"ids": 0, "false_ids": 0, "gt_ids": 0}
    false_ids = 0
    ids = np.unique(rows[:, 1]).astype(int)
    for track_id in ids:
        own = rows[rows[:, 1] == track_id]
        matched = 0
        for row in own:
            gt = sequence.gt[int(row[0]) - 1]
            matched += bool(len(gt)) and float(box_iou_xywh(row[None, 2:6], gt).max()) >= 0.5
        false_ids += matched < 0.5 * len(own)
    return {"ids": int(len(ids)), "false_ids": int(false_ids)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", type=Path, nargs="*", default=[], help="MOT-layout sequence folders (real data)")
    parser.add_argument("--one-person-frames", type=int, default=180)
    parser.add_argument("--demo-frames", type=int, default=48)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()

    from phalp_lightning.pipelines.evaluate import evaluate_files

    work = Path(tempfile.mkdtemp(prefix="hog_false_ids_"))
    api.ensure_body_model()
    clips = [
        ("one person (synthetic)", api.make_demo_video(work / "one_person", num_frames=args.one_person_frames, num_people=1)),
        ("demo (synthetic, scripts/demo.sh)", api.make_demo_video(work / "demo", num_frames=args.demo_frames, num_people=2)),
    ]
    sequences = [(label, load_sequence(video.video_path.parent), video.mot_gt_path) for label, video in clips]
    sequences += [(f"{path.name} (real)", load_sequence(path), path / "gt" / "gt.txt") for path in args.real]
    cfg = api.compose("predict", {"video": "unused.mp4"}, work / "config")

    rows = []
    for label, sequence, gt_path in sequences:
        gt_ids = len({int(i) for i in np.loadtxt(gt_path, delimiter=",", ndmin=2)[:, 1]})
        for setting, window_kwargs in WINDOW_SETTINGS.items():
            windows = collect_windows(sequence, HOGDetector(**window_kwargs))
            for score, nms in THRESHOLDS[setting]:
                detector = HOGDetector(score_threshold=score, nms_threshold=nms, **window_kwargs)
                out_dir = work / f"{sequence.name}_{setting.replace(' ', '_')}_{score}_{nms}"
                mot, boxes = track(sequence, windows, detector, cfg, out_dir)
                overall = evaluate_files(mot, gt_path, format="mot").overall
                row = {"sequence": label, "frames": len(sequence.frames), "gt_ids": gt_ids, "windows": setting,
                       "score_threshold": score, "nms_threshold": nms, **identities(mot, sequence), **boxes,
                       **{key: float(overall[key]) for key in ("HOTA", "IDF1", "MOTA", "Recall", "Precision")},
                       **{key: int(overall[key]) for key in ("FP", "FN", "IDSW")},
                       "hog_ms_per_frame": round(1000 * windows.seconds / len(sequence.frames))}
                rows.append(row)
                print(json.dumps(row), flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "false_identities.json", json.dumps(rows, indent=1))
    header = ("| sequence | windows | score thr | NMS IoU | ids (gt) | false ids | boxes on nobody / mislocalised / matched "
              "| FP | FN | IDSW | HOTA | IDF1 | MOTA |")
    lines = ["# HOG thresholds: false identities of detector + tracker (no checkpoint)", "",
             "Command: `python experiments/hog_detector/false_identities.py "
             + " ".join(["--real", *(f"<path to>/{path.name}" for path in args.real)] if args.real else [])
             + (f" --one-person-frames {args.one_person_frames}" if args.one_person_frames != 180 else "") + "`", "",
             header, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['sequence']} ({row['frames']} frames) | {row['windows']} | {row['score_threshold']} | "
                     f"{row['nms_threshold']} | {row['ids']} ({row['gt_ids']}) | {row['false_ids']} | {row['boxes_on_nobody']} / "
                     f"{row['boxes_mislocalised']} / {row['boxes_matched']} | {row['FP']} | "
                     f"{row['FN']} | {row['IDSW']} | {100 * row['HOTA']:.1f} | {100 * row['IDF1']:.1f} | {100 * row['MOTA']:.1f} |")
    atomic_write_text(args.out / "false_identities.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
