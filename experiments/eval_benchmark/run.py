"""Own vectorised HOTA vs TrackEval's HOTA (same data, same run), and the cost of a full evaluation.

    python experiments/eval_benchmark/run.py [--sequences 10 --frames 100 --people 8 --repeats 3]

Prints a table and writes results.json / results.md next to this file.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from phalp_lightning.evaluation.evaluator import evaluate_sequence_data
from phalp_lightning.evaluation.hota import hota_sequence
from phalp_lightning.evaluation.sequences import build_sequence_data
from phalp_lightning.evaluation.synthetic import random_tracking_scene
from phalp_lightning.utils.io import atomic_write_text


def best_of(repeats: int, function) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sequences", type=int, default=10)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--people", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from trackeval.metrics import HOTA

    scenes = [random_tracking_scene(seed, num_frames=args.frames, num_people=args.people) for seed in range(args.sequences)]
    data = {gt.name: build_sequence_data(gt, pred) for gt, pred in scenes}
    reference = HOTA()
    dicts = [sequence.to_trackeval_dict() for sequence in data.values()]
    max_difference = max(
        float(np.abs(hota_sequence(sequence).hota - reference.eval_sequence(d)["HOTA"]).max())
        for sequence, d in zip(data.values(), dicts, strict=True)
    )
    own_s = best_of(args.repeats, lambda: [hota_sequence(sequence) for sequence in data.values()])
    trackeval_s = best_of(args.repeats, lambda: [reference.eval_sequence(d) for d in dicts])
    pairing_s = best_of(args.repeats, lambda: [build_sequence_data(gt, pred) for gt, pred in scenes])
    full_s = best_of(1, lambda: evaluate_sequence_data(data))
    detections = sum(sequence.num_gt_dets for sequence in data.values())
    results = {
        "setup": {"sequences": args.sequences, "frames": args.frames, "people": args.people,
                  "gt_detections": detections, "repeats": args.repeats, "machine": platform.processor() or platform.machine()},
        "hota_own_s": own_s, "hota_trackeval_s": trackeval_s, "speedup_own_vs_trackeval": trackeval_s / own_s,
        "max_abs_hota_difference": max_difference,
        "pairing_iou_s": pairing_s, "full_evaluation_s": full_s,
        "full_evaluation_ms_per_frame": 1e3 * full_s / (args.sequences * args.frames),
    }
    table = "\n".join([
        "| step | seconds | note |",
        "|---|---|---|",
        f"| HOTA, own (vectorised) | {own_s:.4f} | {results['speedup_own_vs_trackeval']:.1f}x faster than TrackEval |",
        f"| HOTA, trackeval 1.3.0 | {trackeval_s:.4f} | max abs difference {max_difference:.1e} |",
        f"| pairing + IoU (build_sequence_data) | {pairing_s:.4f} | |",
        f"| full evaluate (HOTA + motmetrics CLEAR/Identity) | {full_s:.4f} | {results['full_evaluation_ms_per_frame']:.2f} ms/frame |",
    ])
    header = (f"{args.sequences} sequences x {args.frames} frames x {args.people} people ({detections} GT boxes), "
              f"best of {args.repeats}, one process, side by side in one run.\n\n")
    print(header + table)
    folder = Path(__file__).resolve().parent
    atomic_write_text(folder / "results.json", json.dumps(results, indent=2) + "\n")
    atomic_write_text(folder / "results.md", "# Evaluation benchmark\n\n`python experiments/eval_benchmark/run.py`\n\n" + header + table + "\n")


if __name__ == "__main__":
    main()
