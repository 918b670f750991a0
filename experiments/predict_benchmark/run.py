"""Predict-pipeline benchmark on a generated video (CPU): stage speeds, crop vectorisation, HOG recall.

    python experiments/predict_benchmark/run.py [--frames 30] [--people 3] [--out experiments/predict_benchmark]

Measured side by side in one run:
  * crops: the batched ``crop_people`` (one grid_sample for all people of a frame) against a per-person
    loop of OpenCV ``warpAffine`` calls building the same 4-channel crops (ratio = loop / batched);
  * HOG detector: seconds per frame, recall and precision at IoU >= 0.5 against the generator's boxes;
  * frame decoding (OpenCV) per frame.
Writes results.json and results.md next to this file (or --out).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def crops_loop(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """The per-person reference: PHALP's way, one warpAffine of image and mask per detection."""
    import cv2

    from phalp_lightning.utils.image import IMAGENET_MEAN, IMAGENET_STD

    out = []
    for x1, y1, x2, y2 in boxes:
        center = np.float32([(x1 + x2) / 2, (y1 + y2) / 2])
        side = max(x2 - x1, y2 - y1)
        src = np.float32([center, center + [0, side / 2], center + [side / 2, 0]])
        dst = np.float32([[size / 2, size / 2], [size / 2, size], [size, size / 2]])
        matrix = cv2.getAffineTransform(src, dst)
        rgb = cv2.warpAffine(image.astype(np.float32), matrix, (size, size), flags=cv2.INTER_LINEAR)
        mask = np.zeros(image.shape[:2], np.float32)
        mask[int(y1):int(y2), int(x1):int(x2)] = 255
        mask = cv2.warpAffine(mask, matrix, (size, size), flags=cv2.INTER_LINEAR)
        out.append(np.concatenate([((rgb - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1), mask[None]]))
    return np.stack(out)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--people", type=int, default=3)
    parser.add_argument("--crop-size", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)

    from phalp_lightning.datamodules.synthetic import make_synthetic_video
    from phalp_lightning.datamodules.synthetic.mannequin import write_synthetic_assets
    from phalp_lightning.datamodules.video import open_source
    from scipy.optimize import linear_sum_assignment

    from phalp_lightning.detection.hog import HOGDetector
    from phalp_lightning.utils.benchmarking import best_of, write_results
    from phalp_lightning.utils.boxes import box_iou
    from phalp_lightning.utils.person_crops import crop_people

    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as workdir:
        assets = Path(workdir) / "assets"
        write_synthetic_assets(assets)
        video = make_synthetic_video(Path(workdir) / "video", num_frames=args.frames, num_people=args.people, assets_root=assets, seed=0)
        source = open_source(video.video_path)
        start = time.perf_counter()
        frames = [source.read(i) for i in range(len(source))]
        decode_s = (time.perf_counter() - start) / len(frames)

        # Crops, side by side on the same frames and ground-truth boxes.
        batched_s, loop_s, people = 0.0, 0.0, 0
        for frame, boxes in zip(frames, video.boxes, strict=True):
            boxes = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
            image = torch.from_numpy(frame)
            batched_s += best_of(lambda image=image, boxes=boxes: crop_people(image, torch.from_numpy(boxes).float(), None, crop_size=args.crop_size))
            loop_s += best_of(lambda frame=frame, boxes=boxes: crops_loop(frame, boxes, args.crop_size))
            people += len(boxes)

        detector = HOGDetector(score_threshold=0.3)
        start = time.perf_counter()
        detections = [detector(torch.from_numpy(frame)[None])[0] for frame in frames]
        hog_s = (time.perf_counter() - start) / len(frames)
        matched = predicted = truth = 0
        for found, boxes in zip(detections, video.boxes, strict=True):
            predicted += len(found)
            truth += len(boxes)
            if len(found) and len(boxes):
                iou = box_iou(found.boxes.numpy().astype(np.float64), boxes)
                rows, cols = linear_sum_assignment(-iou)
                matched += int((iou[rows, cols] >= 0.5).sum())

    results = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads",
        "video": {"frames": args.frames, "people": args.people, "height": video.height, "width": video.width},
        "decode_ms_per_frame": 1000 * decode_s,
        "crops": {
            "crop_size": args.crop_size,
            "people": people,
            "batched_ms_per_frame": 1000 * batched_s / len(frames),
            "opencv_loop_ms_per_frame": 1000 * loop_s / len(frames),
            "loop_over_batched": loop_s / batched_s,
        },
        "hog": {"ms_per_frame": 1000 * hog_s, "recall_iou50": matched / max(truth, 1), "precision_iou50": matched / max(predicted, 1)},
    }
    table = [
        "| measure | value |",
        "|---|---|",
        f"| frames x people | {args.frames} x {args.people} ({video.width}x{video.height}) |",
        f"| decode (OpenCV) | {results['decode_ms_per_frame']:.1f} ms/frame |",
        f"| crops batched (grid_sample, {args.crop_size}px) | {results['crops']['batched_ms_per_frame']:.1f} ms/frame |",
        f"| crops per-person warpAffine loop | {results['crops']['opencv_loop_ms_per_frame']:.1f} ms/frame |",
        f"| loop / batched | {results['crops']['loop_over_batched']:.2f}x |",
        f"| HOG detector | {results['hog']['ms_per_frame']:.1f} ms/frame |",
        f"| HOG recall / precision @ IoU 0.5 | {results['hog']['recall_iou50']:.2f} / {results['hog']['precision_iou50']:.2f} |",
    ]
    write_results(args.out, results, f"`{results['command']}` on {results['machine']}\n\n" + "\n".join(table) + "\n")
    print("\n".join(table))
    return results


if __name__ == "__main__":
    main()
