"""Seconds per frame of each detector backend on the CPU at 720p, side by side with HOG's.

    python experiments/detector_speed/run.py [--backends hog torchvision_maskrcnn maskrcnn vitdet]
        [--frames 2] [--people 20] [--out DIR]

Run it in an environment that has the backends (scripts/backends_ci.sh builds one; backends that do
not import are reported as skipped). Each detector is built from its shipped config exactly as
``predict.py detector=<name>`` builds it, at the released input sizes (ViTDet-H and Mask R-CNN 1024 px,
torchvision 800/1333, HOG's 640 px cap) and with the released 1000 proposals per image, from random
weights saved in that backend's file layout (timing does not depend on the values). The person logit
is raised so that each frame ends with ``--people`` detections and their masks, as a crowded real frame
would: without it random weights detect nothing and the mask head never runs.

One untimed frame warms each detector up; ``--frames`` more are timed (median). Writes results.json
and results.md next to this file (or into --out) and prints the table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from phalp_lightning.utils.benchmarking import machine as machine_description
from phalp_lightning.utils.benchmarking import write_results

PROJECT_ROOT = Path(__file__).resolve().parents[2]
HEIGHT, WIDTH = 720, 1280
BACKENDS = ("hog", "torchvision_maskrcnn", "maskrcnn", "vitdet")
PERSON_LOGIT_BOOST = 12.0


def frame(seed: int = 0) -> torch.Tensor:
    """(1, 720, 1280, 3) uint8: smooth gradients with noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    image = np.stack([x * 255 // WIDTH, y * 255 // HEIGHT, (x + y) % 256], axis=-1)
    return torch.from_numpy((image + rng.integers(0, 40, image.shape)).clip(0, 255).astype(np.uint8))[None]


def boost_person(state: dict, person: int) -> None:
    """Box predictors answer "person" at the anchors' boxes: class and box-delta weights (heads and RPN) zeroed, the person's bias raised."""
    for name in [name for name in state if name.endswith("cls_score.weight")]:
        state[name][:] = 0
        bias = state[name.removesuffix("weight") + "bias"]
        bias[:] = 0
        bias[person] = PERSON_LOGIT_BOOST
    for name in [name for name in state if ".bbox_pred." in name or ".anchor_deltas." in name]:
        state[name][:] = 0


def random_weights(backend: str, folder: Path) -> Path:
    """A random-weights file in the backend's released layout (detectron2 .pth, torchvision state dict)."""
    if backend == "torchvision_maskrcnn":
        from torchvision.models.detection import maskrcnn_resnet50_fpn

        state = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict()
        boost_person(state, 1)
        path = folder / "torchvision_maskrcnn.pth"
        torch.save(state, path)
        return path
    from phalp_lightning.detection.detectron2 import PERSON_CLASS, build_model, resolve_config_file

    config = {"vitdet": "cascade_mask_rcnn_vitdet_h.py", "maskrcnn": "new_baselines/mask_rcnn_regnety_4gf_dds_FPN_400ep_LSJ.py"}[backend]
    state = build_model(resolve_config_file(config), 0.5, None).state_dict()
    boost_person(state, PERSON_CLASS)
    path = folder / f"{backend}.pth"
    torch.save({"model": state}, path)
    return path


def build(backend: str, people: int, folder: Path, output_dir: Path):
    import hydra

    from phalp_lightning.utils.config import compose_run_config

    overrides = ["video=x.mp4", f"detector={backend}"]
    if backend != "hog":
        overrides += [f"detector.weights={random_weights(backend, folder)}", f"detector.max_detections={people}"]
    cfg = compose_run_config(PROJECT_ROOT / "configs", "predict", overrides, output_dir)
    return hydra.utils.instantiate(cfg.detector)


def time_backend(backend: str, frames: int, people: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="detector_speed_") as tmp:
        started = time.perf_counter()
        detector = build(backend, people, Path(tmp), Path(tmp) / "out")
        build_seconds = time.perf_counter() - started
    image = frame()
    detector(image)  # warm-up
    seconds, found = [], 0
    for _ in range(frames):
        started = time.perf_counter()
        (detections,) = detector(image)
        seconds.append(time.perf_counter() - started)
        found = len(detections)
    return {"backend": backend, "seconds_per_frame": statistics.median(seconds), "all_seconds": seconds, "people_found": found, "build_seconds": build_seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--frames", type=int, default=2, help="timed frames per backend (after one warm-up frame)")
    parser.add_argument("--people", type=int, default=20, help="detections per frame (each with a mask)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    rows, skipped = [], {}
    for backend in args.backends:
        try:
            row = time_backend(backend, args.frames, args.people)
        except ImportError as error:  # the backend is not installed here (DetectorSetupError is one)
            skipped[backend] = str(error).splitlines()[0]
            print(f"{backend}: skipped ({skipped[backend]})", flush=True)
            continue
        rows.append(row)
        print(f"{backend}: {row['seconds_per_frame']:.3f} s/frame ({row['people_found']} people, built in {row['build_seconds']:.0f} s)", flush=True)
    hog = next((row["seconds_per_frame"] for row in rows if row["backend"] == "hog"), None)
    for row in rows:
        row["times_hog"] = row["seconds_per_frame"] / hog if hog else None
    machine = machine_description()
    result = {"command": ["python", "experiments/detector_speed/run.py", *(argv if argv is not None else sys.argv[1:])], "frame": [HEIGHT, WIDTH], "timed_frames": args.frames, "people": args.people, "machine": machine, "rows": rows, "skipped": skipped}
    lines = [
        f"# Detector seconds per frame on the CPU, {WIDTH}x{HEIGHT}",
        "",
        f"`python experiments/detector_speed/run.py {' '.join(argv if argv is not None else sys.argv[1:])}`; "
        f"{machine['cpu_count']} CPUs, {machine['torch_threads']} torch threads, 1-min load average {machine['load_average_1min']:.1f} "
        f"at the end (other processes share the CPUs), torch {machine['torch']}. Random weights, released input sizes and "
        f"proposal counts, {args.people} detections with masks per frame; median of {args.frames} frames after one warm-up.",
        "",
        "| backend | s/frame | x HOG | people found | setup s (random weights written, detector built) |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        ratio = f"{row['times_hog']:.0f}" if row["times_hog"] else "-"
        lines.append(f"| {row['backend']} | {row['seconds_per_frame']:.3f} | {ratio} | {row['people_found']} | {row['build_seconds']:.0f} |")
    for backend, reason in skipped.items():
        lines.append(f"| {backend} | skipped: {reason} | | | |")
    lines += ["", "HOG finds nobody in the generated frame (no people in it, and its weights are not random); its time is"
              " that of any 720p frame capped at its 640 px `max_side`. The others' people are forced by the weights."]
    table = "\n".join(lines) + "\n"
    write_results(args.out, result, table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
