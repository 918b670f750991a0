"""How often OpenCV's HOG people detector finds the people of the synthetic videos.

    python experiments/synthetic_detectability/run.py [--videos 3] [--frames 30]

A person counts as found when a HOG detection (score > 0.5, the predict pipeline's default
threshold) has IoU > 0.3 with its ground-truth box. Rates are given over all people and over people
with visibility > 0.7 (crossings occlude the others). Writes ``results.json`` and ``results.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--people", type=int, default=3)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    import cv2
    from phalp_lightning.datamodules.synthetic import make_synthetic_video
    from phalp_lightning.datamodules.synthetic.people import BodyModelHandle

    from phalp_lightning.utils.boxes import box_iou

    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    body = BodyModelHandle()
    counts = {"people": 0, "found": 0, "visible_people": 0, "visible_found": 0, "false_positives": 0, "frames": 0}
    heights = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.videos):
            video = make_synthetic_video(Path(folder) / str(seed), num_frames=args.frames, num_people=args.people, height=args.height,
                                         width=args.width, seed=seed, write_video=False, body_model=body)
            for frame, path in enumerate(video.frame_paths):
                rects, weights = hog.detectMultiScale(cv2.imread(str(path)), winStride=(8, 8), padding=(8, 8), scale=1.05)
                keep = np.ravel(weights) > 0.5 if len(rects) else np.zeros(0, bool)
                detections = np.asarray([[x, y, x + w, y + h] for x, y, w, h in np.asarray(rects).reshape(-1, 4)[keep]], float).reshape(-1, 4)
                overlaps = box_iou(np.reshape(video.boxes[frame], (-1, 4)), detections) > 0.3  # (people, detections)
                matched = overlaps.any(axis=0)
                for box, visibility, found in zip(video.boxes[frame], video.visibility[frame], overlaps, strict=True):
                    hit = bool(found.any())
                    counts["people"] += 1
                    counts["found"] += hit
                    heights.append(box[3] - box[1])
                    if visibility > 0.7:
                        counts["visible_people"] += 1
                        counts["visible_found"] += hit
                counts["false_positives"] += int((~matched).sum())
                counts["frames"] += 1
    report = {
        "command": "python experiments/synthetic_detectability/run.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": vars(args) | {"out": str(args.out)},
        **counts,
        "detection_rate": round(counts["found"] / counts["people"], 3),
        "detection_rate_visible": round(counts["visible_found"] / max(counts["visible_people"], 1), 3),
        "box_height_px": {"min": round(float(np.min(heights)), 1), "median": round(float(np.median(heights)), 1)},
    }
    print(json.dumps(report, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=2))
    (args.out / "results.md").write_text(
        f"Command: `{report['command'].strip()}`\n\n| people | HOG found | rate | people with visibility > 0.7 | rate | false positives / frame |\n"
        f"|---|---|---|---|---|---|\n| {counts['people']} | {counts['found']} | {report['detection_rate']} | {counts['visible_people']} | "
        f"{report['detection_rate_visible']} | {counts['false_positives'] / counts['frames']:.2f} |\n"
    )
    return report


if __name__ == "__main__":
    main()
