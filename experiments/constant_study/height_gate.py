"""The height gate on detector boxes and given boxes: fixed ratios and the per-track widening.

    PYTHONPATH=/work/scratch_boxmot python experiments/constant_study/height_gate.py <path>/TUD-Campus \
        [--seeds 0 1 2 3 4] [--cache /tmp/hog_cache] [--out experiments/constant_study]

Protocols:

* ``hog`` / ``hog 7fps``: the default detector (``configs/detector/hog.yaml``, built from the composed
  predict config, its real scores, predict's small-box filter) on TUD-Campus at 25 fps and on the same
  detections subsampled to 7 fps (run.py's frame choice), next to boxmot's BoT-SORT on the same boxes;
* ``hog demo``: the same detector on ``scripts/demo.sh``'s video (``api.make_demo_video``, 48 frames,
  2 people, seed 0) with its ground truth;
* ``base`` / ``hard`` / ``7fps``: run.py's given-box protocols over ``--seeds``.

HOG is the slow part: its selected boxes are cached per sequence in ``--cache`` (npz) and reused.
Our tracker is built as predict.py builds it without a checkpoint (box-derived features, the 2D cue
decides). Writes ``height_gate.md`` / ``height_gate.json`` next to this file (or ``--out``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _module(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


study = _module("constant_study_run", HERE / "run.py")
hog_study = _module("hog_false_identities", REPO / "experiments" / "hog_detector" / "false_identities.py")

SETTINGS: dict[str, dict[str, Any]] = {
    "shipped: 1.25 widened to <= 1.5": {},
    "fixed 1.5 (the previous default)": {"association.gate_height_ratio": 1.5, "association.gate_height_ratio_max": 1.5},
    "fixed 1.25": {"association.gate_height_ratio": 1.25, "association.gate_height_ratio_max": 1.25},
    "1.25 widened to <= 1.7": {"association.gate_height_ratio": 1.25, "association.gate_height_ratio_max": 1.7},
    "1.3 widened to <= 1.5": {"association.gate_height_ratio": 1.3, "association.gate_height_ratio_max": 1.5},
}


def hog_rows(name: str, frames: list[np.ndarray], cache: Path) -> list[np.ndarray]:
    """Per frame (K, 7) rows ``frame, -1, x, y, w, h, score`` of the default detector (cached)."""
    import hydra

    from phalp_lightning import api

    path = cache / f"{name}.npz"
    if path.exists():
        stored = np.load(path)
        return [stored[f"f{t}"] for t in range(len(frames))]
    with tempfile.TemporaryDirectory() as work:
        cfg = api.compose("predict", {"video": "unused.mp4"}, Path(work))
    detector = hydra.utils.instantiate(cfg.detector)
    out = []
    for t, image in enumerate(frames):
        boxes, margins = detector.windows(image)
        selected = detector.select(boxes, margins, image.shape[0], image.shape[1])
        xyxy, scores = selected.boxes.numpy().reshape(-1, 4), selected.scores.numpy().reshape(-1)
        keep = ((xyxy[:, 2] - xyxy[:, 0]) >= cfg.system.min_box_width) & ((xyxy[:, 3] - xyxy[:, 1]) >= cfg.system.min_box_height)
        xyxy, scores = xyxy[keep], scores[keep]
        out.append(np.column_stack([np.full(len(xyxy), t + 1), np.full(len(xyxy), -1), xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2], scores]))
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{f"f{t}": rows for t, rows in enumerate(out)})
    return out


def run_ours_hog(tracker: Any, frames_rows: list[np.ndarray], image_size: tuple[int, int]) -> np.ndarray:
    tracker.reset()
    frames = [
        hog_study.box_detections(
            np.column_stack([rows[:, 2], rows[:, 3], rows[:, 2] + rows[:, 4], rows[:, 3] + rows[:, 5]]), rows[:, 6], t, image_size
        )
        for t, rows in enumerate(frames_rows)
    ]
    return study.tracked_rows(tracker, frames)


def hog_protocols(tud: Path, cache: Path) -> dict[str, tuple[Any, list[np.ndarray]]]:
    from phalp_lightning import api

    load_frames = hog_study.load_sequence
    tud_seq = study.Sequence.load(tud)
    tud_rows = hog_rows("TUD-Campus", load_frames(tud).frames, cache)
    low = study.subsample(tud_seq, 7.0)
    kept = np.unique(np.round(np.arange(0, tud_seq.num_frames, 25.0 / 7.0)).astype(int))
    low_rows = []
    for i, t in enumerate(kept):
        rows = tud_rows[t].copy()
        rows[:, 0] = i + 1
        low_rows.append(rows)
    work = Path(tempfile.mkdtemp(prefix="height_gate_demo_"))
    video = api.make_demo_video(work / "demo", num_frames=48, num_people=2)
    demo_frames = load_frames(video.video_path.parent).frames
    gt = np.loadtxt(video.mot_gt_path, delimiter=",", ndmin=2)[:, :6]
    demo = study.Sequence("demo", video.video_path.parent, len(demo_frames), demo_frames[0].shape[:2], gt)
    return {"hog": (tud_seq, tud_rows), "hog 7fps": (low, low_rows), "hog demo": (demo, hog_rows("demo", demo_frames, cache))}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sequence", type=Path, help="the TUD-Campus MOT-layout folder")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4])
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "phalp_hog_cache")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    trackers = {name: study.composed_tracker(overrides) for name, overrides in SETTINGS.items()}
    botsort = {k: v for k, v in study.boxmot_trackers(25.0).items() if k.startswith("BoT")}
    table: dict[str, dict[str, list[dict[str, float]]]] = {}
    start = time.perf_counter()
    for protocol, (seq, frames_rows) in hog_protocols(args.sequence, args.cache).items():
        for name, tracker in trackers.items():
            table.setdefault(protocol, {}).setdefault(name, []).append(study.score(seq, run_ours_hog(tracker, frames_rows, seq.image_size)))
        fps = 7.0 if "7fps" in protocol else 25.0
        for name, make in study.boxmot_trackers(fps).items():
            if name in botsort:
                table[protocol].setdefault(name, []).append(study.score(seq, study.run_boxmot(make, frames_rows, seq.image_size)))
        print(f"{protocol} done ({time.perf_counter() - start:.0f} s)", flush=True)
    for seed in args.seeds:
        for protocol, (seq, frames_rows) in study.protocols(study.Sequence.load(args.sequence), seed).items():
            frames = study.box_frames(frames_rows, seq.image_size)
            for name, tracker in trackers.items():
                table.setdefault(protocol, {}).setdefault(name, []).append(study.score(seq, study.run_ours(tracker, frames)))
            fps = 7.0 if protocol == "7fps" else 25.0
            for name, make in study.boxmot_trackers(fps).items():
                if name in botsort:
                    table[protocol].setdefault(name, []).append(study.score(seq, study.run_boxmot(make, frames_rows, seq.image_size)))
        print(f"seed {seed} done ({time.perf_counter() - start:.0f} s)", flush=True)
    summary = {protocol: {name: study.summarise(runs) for name, runs in rows.items()} for protocol, rows in table.items()}
    command = "python experiments/constant_study/height_gate.py <TUD-Campus> --seeds " + " ".join(map(str, args.seeds))
    lines = ["# Height gate: fixed ratios and per-track widening", "", f"`{command}` (given-box protocols: means over seeds; ID switches summed)", "",
             "| protocol | tracker | HOTA | IDF1 | MOTA | IDSW |", "|---|---|---|---|---|---|"]
    for protocol, rows in summary.items():
        for name, s in rows.items():
            lines.append(f"| {protocol} | {name} | {100 * s['HOTA']:.1f} | {100 * s['IDF1']:.1f} | {100 * s['MOTA']:.1f} | {s['IDSW']:.0f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    study.atomic_write_text(args.out / "height_gate.json", json.dumps({"command": command, "settings": SETTINGS, "summary": summary}, indent=1) + "\n")
    study.atomic_write_text(args.out / "height_gate.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary


if __name__ == "__main__":
    main()
