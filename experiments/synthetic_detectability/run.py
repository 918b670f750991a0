"""How often OpenCV's HOG people detector finds the people of the synthetic videos.

    python experiments/synthetic_detectability/run.py [--videos 3] [--frames 30]

A person counts as found when a HOG detection (score > 0.5, the predict pipeline's default
threshold) has IoU > 0.3 with its ground-truth box. Rates are given over all people and over people
with visibility > 0.7 (crossings occlude the others), per video and over all. Writes
``results.json``, ``results.md`` and ``results.png`` (bars; needs matplotlib); ``--plot-only``
redraws ``results.png`` from the ``results.json`` in --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from phalp_lightning.utils.io import atomic_write_text


def plot(report: dict, path: Path) -> Path | None:
    """Detection rates (all people, people with visibility > 0.7) per video and over all videos."""
    from phalp_lightning.utils.plotting import PlottingUnavailableError, save_bars

    rows = [*report.get("per_video", []), {"video": "all", "detection_rate": report["detection_rate"],
                                           "detection_rate_visible": report["detection_rate_visible"]}]
    try:
        return save_bars(path, [f"seed {row['video']}" if row["video"] != "all" else "all" for row in rows],
                         {"all people": [row["detection_rate"] for row in rows],
                          "visibility > 0.7": [row["detection_rate_visible"] for row in rows]},
                         ylabel="fraction found by HOG (IoU > 0.3)", value_format="{:.2f}",
                         title=f"HOG on synthetic people ({report['people']} person-frames, "
                               f"{report['false_positives']} false positives)")
    except PlottingUnavailableError as error:
        print(f"warning: no {path.name}: {error}", file=sys.stderr)
        return None


def _rate(found: int, total: int) -> float:
    return round(found / max(total, 1), 3)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--people", type=int, default=3)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--plot-only", action="store_true", help="redraw results.png from OUT/results.json")
    args = parser.parse_args(argv)
    if args.plot_only:
        report = json.loads((args.out / "results.json").read_text())
        print("wrote", plot(report, args.out / "results.png"))
        return report
    import cv2
    from phalp_lightning.datamodules.synthetic import make_synthetic_video
    from phalp_lightning.datamodules.synthetic.people import BodyModelHandle

    from phalp_lightning.utils.boxes import box_iou

    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    body = BodyModelHandle()
    counts = {"people": 0, "found": 0, "visible_people": 0, "visible_found": 0, "false_positives": 0, "frames": 0}
    heights = []
    per_video = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.videos):
            before = dict(counts)
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
            delta = {key: counts[key] - before[key] for key in counts}
            per_video.append({"video": seed, "detection_rate": _rate(delta["found"], delta["people"]),
                              "detection_rate_visible": _rate(delta["visible_found"], delta["visible_people"]), **delta})
    report = {
        "command": "python experiments/synthetic_detectability/run.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": vars(args) | {"out": str(args.out)},
        **counts,
        "detection_rate": round(counts["found"] / counts["people"], 3),
        "detection_rate_visible": round(counts["visible_found"] / max(counts["visible_people"], 1), 3),
        "box_height_px": {"min": round(float(np.min(heights)), 1), "median": round(float(np.median(heights)), 1)},
        "per_video": per_video,
    }
    print(json.dumps(report, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "results.json", json.dumps(report, indent=2))
    atomic_write_text(args.out / "results.md", 
        f"Command: `{report['command'].strip()}`\n\n| people | HOG found | rate | people with visibility > 0.7 | rate | false positives / frame |\n"
        f"|---|---|---|---|---|---|\n| {counts['people']} | {counts['found']} | {report['detection_rate']} | {counts['visible_people']} | "
        f"{report['detection_rate_visible']} | {counts['false_positives'] / counts['frames']:.2f} |\n"
        "\n![detection rate per video and overall](results.png)\n"
    )
    plot(report, args.out / "results.png")
    return report


if __name__ == "__main__":
    main()
