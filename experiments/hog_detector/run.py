"""The offline HOG detector on real MOT-layout sequences: detection quality before and after tuning.

    python experiments/hog_detector/run.py <sequence dir> [<sequence dir> ...] [--fit] [--out DIR]

A sequence dir holds ``gt/gt.txt`` and either ``img1/*.jpg`` or one video file (MOTChallenge layout;
real data is never part of the repository). For each sequence this

1. runs the detector as it was before this tuning (a pinned copy of the previous ``detect_one``:
   max side 640, OpenCV grouping, the whole window shrunk by 10 % of its width per side) and the
   current defaults of ``configs/detector/hog.yaml``;
2. scores both against the ground truth as a detector: DetA, DetRe, DetPr (HOTA's detection terms,
   averaged over IoU 0.05..0.95, each detection its own id), and precision/recall at IoU >= 0.5;
3. with ``--fit``: collects raw HOG windows at several upsampling factors and groupings, fits the
   person box inside the window (median centre and size of the matched ground-truth box relative to
   the window), and grid-searches the score and NMS thresholds for DetA, fitting on the first half of
   every sequence's frames and reporting the second half (held out) and all frames.

Writes results.json and results.md next to this file (or --out) and prints the tables.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from phalp_lightning.utils.benchmarking import write_results

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")


@dataclass
class Sequence:
    name: str
    frames: list[np.ndarray]  # RGB uint8
    gt: list[np.ndarray]  # per frame (N, 4) x, y, w, h


def load_sequence(directory: Path) -> Sequence:
    import cv2
    from phalp_lightning.datamodules.formats.mot import read_mot

    rows = read_mot(directory / "gt" / "gt.txt")
    if rows.extra.shape[1] >= 1:  # MOT16+ layout: evaluation flag and class columns
        keep = (rows.confidences != 0) & (rows.extra[:, 0] == 1)
        rows = type(rows)(rows.frames[keep], rows.track_ids[keep], rows.boxes_xywh[keep], rows.confidences[keep], rows.extra[keep], rows.path)
    images = sorted((directory / "img1").glob("*.jpg")) if (directory / "img1").is_dir() else []
    frames: list[np.ndarray] = []
    if images:
        frames = [cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB) for path in images]
    else:
        video = next((p for p in sorted(directory.iterdir()) if p.suffix.lower() in VIDEO_EXTENSIONS), None)
        if video is None:
            raise SystemExit(f"error: {directory} has neither img1/ nor a video file — pass a MOT-layout sequence folder")
        capture = cv2.VideoCapture(str(video))
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        capture.release()
    gt = [rows.frame(index + 1).boxes_xywh.astype(np.float64) for index in range(len(frames))]
    return Sequence(directory.name, frames, gt)


def iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from phalp_lightning.evaluation.sequences import box_iou_xywh

    return box_iou_xywh(a, b)


def detection_scores(gt: list[np.ndarray], detections: list[np.ndarray]) -> dict[str, float]:
    """HOTA's detection terms (each detection its own id) and P/R at IoU 0.5, over the given frames."""
    from phalp_lightning.evaluation.hota import hota_sequence
    from phalp_lightning.evaluation.sequences import TrackSequence, build_sequence_data

    frames_gt = np.concatenate([np.full(len(b), t) for t, b in enumerate(gt)]) if gt else np.zeros(0)
    frames_det = np.concatenate([np.full(len(b), t) for t, b in enumerate(detections)]) if detections else np.zeros(0)
    gt_rows = np.concatenate(gt) if gt else np.zeros((0, 4))
    det_rows = np.concatenate(detections) if detections else np.zeros((0, 4))
    # Ground-truth identities do not matter for DetA; unique ids per row keep frames independent.
    ground_truth = TrackSequence("s", frames_gt, np.arange(len(gt_rows)), gt_rows, evaluated_frames=np.arange(len(gt)))
    prediction = TrackSequence("s", frames_det, np.arange(len(det_rows)), det_rows)
    summary = hota_sequence(build_sequence_data(ground_truth, prediction)).summary()
    tp = 0
    for g, d in zip(gt, detections, strict=True):
        if len(g) and len(d):
            iou = iou_xywh(g, d)
            rows, cols = linear_sum_assignment(-iou)
            tp += int((iou[rows, cols] >= 0.5).sum())
    return {
        "DetA": 100 * summary["DetA"],
        "DetRe": 100 * summary["DetRe"],
        "DetPr": 100 * summary["DetPr"],
        "recall@0.5": 100 * tp / max(1, len(gt_rows)),
        "precision@0.5": 100 * tp / max(1, len(det_rows)),
        "detections/frame": len(det_rows) / max(1, len(gt)),
    }


def previous_detect_one(image: np.ndarray, hog) -> np.ndarray:  # noqa: ANN001 - cv2 type
    """The detector before this tuning (pinned copy for the 'before' row): boxes x, y, w, h."""
    import cv2

    height, width = image.shape[:2]
    factor = 1.0
    if max(height, width) > 640:
        factor = 640 / max(height, width)
        image = cv2.resize(image, (round(width * factor), round(height * factor)), interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    rects, weights = hog.detectMultiScale(gray, winStride=(8, 8), padding=(8, 8), scale=1.05)
    if len(rects) == 0:
        return np.zeros((0, 4))
    rects = np.asarray(rects, dtype=np.float32).reshape(-1, 4)
    margins = np.asarray(weights, dtype=np.float32).reshape(-1)
    scores = np.clip(margins, 0.0, None) / (1.0 + np.clip(margins, 0.0, None))
    keep = np.asarray(cv2.dnn.NMSBoxes(rects.tolist(), scores.tolist(), 0.3, 0.4), dtype=np.int64).reshape(-1)
    keep = keep[scores[keep] > 0.3]
    x, y, w, h = rects[keep].T
    dx, dy = w * 0.1, h * 0.1 * 0.5
    boxes = np.stack([x + dx, y + dy, x + w - dx, y + h - dy], axis=1) / factor
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def timed_detections(sequence: Sequence, detect) -> tuple[list[np.ndarray], float]:  # noqa: ANN001
    start = time.perf_counter()
    boxes = [detect(frame) for frame in sequence.frames]
    return boxes, 1e3 * (time.perf_counter() - start) / len(sequence.frames)


def fit_person_box(windows: list[np.ndarray], margins: list[np.ndarray], gt: list[np.ndarray], start=(0.5, 0.55, 0.5, 0.78)) -> tuple[float, ...]:
    """Median centre and size of the matched ground-truth box relative to the window (two rounds)."""
    box = np.asarray(start, dtype=np.float64)
    for _ in range(3):
        rel = []
        for w, m, g in zip(windows, margins, gt, strict=True):
            w = w[m > 0]
            if not len(w) or not len(g):
                continue
            guess = np.stack([w[:, 0] + (box[0] - box[2] / 2) * w[:, 2], w[:, 1] + (box[1] - box[3] / 2) * w[:, 3], box[2] * w[:, 2], box[3] * w[:, 3]], axis=1)
            iou = iou_xywh(guess, g)
            rows, cols = linear_sum_assignment(-iou)
            good = iou[rows, cols] >= 0.4
            for r, c in zip(rows[good], cols[good], strict=True):
                win, person = w[r], g[c]
                rel.append([(person[0] + person[2] / 2 - win[0]) / win[2], (person[1] + person[3] / 2 - win[1]) / win[3], person[2] / win[2], person[3] / win[3]])
        if not rel:
            break
        box = np.median(np.asarray(rel), axis=0)
    return tuple(round(float(v), 3) for v in box)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sequences", nargs="+", type=Path, help="MOT-layout sequence folders (gt/gt.txt + img1/ or a video)")
    parser.add_argument("--fit", action="store_true", help="fit person box, upsampling, grouping, thresholds")
    parser.add_argument("--factors", type=float, nargs="+", default=[1.0, 1.25, 1.5, 2.0], help="upsampling factors tried by --fit")
    parser.add_argument("--groups", type=int, nargs="+", default=[0, 2], help="OpenCV grouping thresholds tried by --fit")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)

    import cv2
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from phalp_lightning.detection.hog import HOGDetector

    project = Path(__file__).resolve().parents[2]
    default_cfg = OmegaConf.load(project / "configs" / "detector" / "hog.yaml")
    tuned: HOGDetector = instantiate(default_cfg)
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    sequences = [load_sequence(directory) for directory in args.sequences]

    # Sequence folders are recorded by name: where the (real, never committed) data lives is the caller's.
    words = [Path(word).name if Path(word) in args.sequences else word for word in (argv if argv is not None else sys.argv[1:])]
    result: dict = {"command": "python experiments/hog_detector/run.py " + " ".join(words),
                    "defaults": OmegaConf.to_container(default_cfg), "sequences": {}}
    for sequence in sequences:
        before, before_ms = timed_detections(sequence, lambda frame: previous_detect_one(frame, hog))
        after, after_ms = timed_detections(sequence, lambda frame: xyxy_to_xywh(tuned.detect_one(frame).boxes.numpy()))
        heights = np.concatenate(sequence.gt)[:, 3]
        result["sequences"][sequence.name] = {
            "frames": len(sequence.frames),
            "size": list(sequence.frames[0].shape[:2]),
            "gt_boxes": int(len(heights)),
            "gt_height_px": [float(heights.min()), float(np.median(heights)), float(heights.max())],
            "before": {**detection_scores(sequence.gt, before), "ms/frame": before_ms},
            "after": {**detection_scores(sequence.gt, after), "ms/frame": after_ms},
        }
        print(sequence.name, json.dumps(result["sequences"][sequence.name], indent=1), flush=True)

    if args.fit:
        result["fit"] = fit(sequences, args.factors, args.groups)
    text = markdown(result)
    write_results(args.out, result, text)
    print(text)
    return result


def fit(sequences: list[Sequence], factors: list[float], groups: list[int]) -> dict:
    """Grid over upsampling x grouping; person box and thresholds fitted on the first halves."""
    from phalp_lightning.detection.hog import HOGDetector

    halves = [(s, len(s.frames) // 2) for s in sequences]
    rows = []
    for factor, group in itertools.product(factors, groups):
        probe = HOGDetector(group_threshold=group)
        start = time.perf_counter()
        raw = [[probe.windows_at(frame, factor) for frame in s.frames] for s in sequences]
        ms = 1e3 * (time.perf_counter() - start) / sum(len(s.frames) for s in sequences)
        fit_windows = [w for (s, half), r in zip(halves, raw, strict=True) for w, _ in r[:half]]
        fit_margins = [m for (s, half), r in zip(halves, raw, strict=True) for _, m in r[:half]]
        fit_gt = [g for s, half in halves for g in s.gt[:half]]
        person_box = fit_person_box(fit_windows, fit_margins, fit_gt)
        best = None
        for score, nms in itertools.product([0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4], [0.2, 0.3, 0.4, 0.5, 0.6]):
            detector = HOGDetector(score_threshold=score, nms_threshold=nms, person_box=person_box)
            fit_dets = [xyxy_to_xywh(detector.select(w, m, *f.shape[:2]).boxes.numpy())
                        for (s, half), r in zip(halves, raw, strict=True) for (w, m), f in zip(r[:half], s.frames[:half], strict=True)]
            deta = detection_scores(fit_gt, fit_dets)["DetA"]
            if best is None or deta > best[0]:
                best = (deta, score, nms)
        _, score, nms = best
        detector = HOGDetector(score_threshold=score, nms_threshold=nms, person_box=person_box)
        held_gt = [g for s, half in halves for g in s.gt[half:]]
        held = [xyxy_to_xywh(detector.select(w, m, *f.shape[:2]).boxes.numpy()) for (s, half), r in zip(halves, raw, strict=True) for (w, m), f in zip(r[half:], s.frames[half:], strict=True)]
        every = [xyxy_to_xywh(detector.select(w, m, *f.shape[:2]).boxes.numpy()) for s, r in zip(sequences, raw, strict=True) for (w, m), f in zip(r, s.frames, strict=True)]
        row = {
            "factor": factor, "group_threshold": group, "person_box": list(person_box), "score_threshold": score, "nms_threshold": nms,
            "fit_DetA": best[0], "held_out": detection_scores(held_gt, held), "all": detection_scores([g for s in sequences for g in s.gt], every),
            "ms/frame": ms,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {"rows": rows}


def markdown(result: dict) -> str:
    lines = [
        "# HOG people detector on real sequences", "",
        f"Command: `{result['command']}`. Detection scores in % (DetA/DetRe/DetPr: HOTA's detection terms over IoU 0.05-0.95, "
        "each detection its own id); ms/frame on a shared 2-core CPU (compare rows of one run).", "",
        "Defaults now: `" + json.dumps({k: v for k, v in result["defaults"].items() if k != "_target_"}) + "`.", "",
        "| sequence | detector | DetA | DetRe | DetPr | recall@0.5 | precision@0.5 | detections/frame | ms/frame |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, entry in result["sequences"].items():
        for which in ("before", "after"):
            r = entry[which]
            lines.append(f"| {name} ({entry['frames']} frames, {entry['size'][1]}x{entry['size'][0]}, people {entry['gt_height_px'][0]:.0f}-{entry['gt_height_px'][2]:.0f} px) | {which} | "
                         f"{r['DetA']:.1f} | {r['DetRe']:.1f} | {r['DetPr']:.1f} | {r['recall@0.5']:.1f} | {r['precision@0.5']:.1f} | {r['detections/frame']:.2f} | {r['ms/frame']:.0f} |")
    if "fit" in result:
        lines += ["", "## Fit (first half of each sequence's frames; held out = second half)", "",
                  "| upsampling | OpenCV grouping | person box (cx, cy, w, h of window) | score thr | NMS IoU | DetA fit | DetA held out | DetA all | P@0.5 / R@0.5 all | ms/frame |",
                  "|---:|---:|---|---:|---:|---:|---:|---:|---|---:|"]
        for row in result["fit"]["rows"]:
            lines.append(f"| {row['factor']} | {row['group_threshold']} | {', '.join(f'{v:.3f}' for v in row['person_box'])} | {row['score_threshold']} | {row['nms_threshold']} | "
                         f"{row['fit_DetA']:.1f} | {row['held_out']['DetA']:.1f} | {row['all']['DetA']:.1f} | "
                         f"{row['all']['precision@0.5']:.1f} / {row['all']['recall@0.5']:.1f} | {row['ms/frame']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
