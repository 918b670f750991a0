"""The gated rule's constants on several protocols, next to the real BoT-SORT and ByteTrack (boxmot).

    PYTHONPATH=/work/scratch_boxmot python experiments/constant_study/run.py <path>/TUD-Campus \
        [--seeds 0 1 ... 9] [--out experiments/constant_study]

boxmot is never installed into the project's environment: install it into a scratch folder with
``pip install --no-deps --target <dir> boxmot==25.0.0 filterpy==1.4.5 lapx==0.11.1`` and put that
folder on PYTHONPATH for this command only. Without it the boxmot rows are skipped (and said so).

Protocols (experiments/real_video/protocol.py, given boxes, score 1):

* ``base``: 10 % of the boxes dropped, 3 % jitter, 2 % false positives (the real_video protocol);
* ``hard``: 20 % dropped, 5 % false positives;
* ``7fps``: the base protocol on the sequence subsampled to 7 frames per second (25 fps -> every
  3.57th frame, frames renumbered);
* ``street``: synthetic street scenes (similar people crossing in front of a raised camera, misses,
  jitter, false positives), which copy no real sequence's protocol.

Our tracker is built as ``predict.py`` builds it without a checkpoint; its features come straight
from the boxes (the gated rule with no informative 3D cue reads only the boxes, so HMAR's untrained
features would change nothing). Each constant of the rule is varied alone around the shipped value.
Means over seeds; ID switches summed. Results: ``results.md`` / ``results.json`` next to this file.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "experiments" / "real_video"))

from protocol import Sequence, given_boxes, per_frame, tracked_rows  # noqa: E402

from phalp_lightning.utils.io import atomic_write_text  # noqa: E402

METRICS = ("HOTA", "IDF1", "MOTA", "IDSW")
# Each constant varied alone (shipped value first).
VARIANTS: dict[str, list[Any]] = {
    "association.gate_iou": [0.1, 0.05, 0.2],
    "association.gate_iou_tentative": [0.3, 0.2, 0.4],
    "association.gate_height_ratio": [1.25, 1.3, 1.5, 2.0],
    "association.tentative_max_misses": [3, 1, 2, 5],
    "association.recent_age": [30, 10, 60],
    "association.smooth_boxes": [True, False],
    "n_init": [5, 3],
}


def subsample(sequence: Sequence, fps: float, source_fps: float = 25.0) -> Sequence:
    """The sequence at ``fps``: frames round(k * source_fps / fps), renumbered from 1."""
    kept = np.unique(np.round(np.arange(0, sequence.num_frames, source_fps / fps)).astype(int)) + 1
    renumber = {int(f): i + 1 for i, f in enumerate(kept)}
    rows = sequence.gt_rows[np.isin(sequence.gt_rows[:, 0], kept)].copy()
    rows[:, 0] = [renumber[int(f)] for f in rows[:, 0]]
    return Sequence(f"{sequence.name}-{fps:g}fps", sequence.root, len(kept), sequence.image_size, rows)


def protocols(sequence: Sequence, seed: int) -> dict[str, tuple[Sequence, list[np.ndarray]]]:
    low = subsample(sequence, 7.0)
    return {
        "base": (sequence, per_frame(given_boxes(sequence, seed=seed), sequence.num_frames)),
        "hard": (sequence, per_frame(given_boxes(sequence, seed=seed, drop_rate=0.2, false_positive_rate=0.05), sequence.num_frames)),
        "7fps": (low, per_frame(given_boxes(low, seed=seed), low.num_frames)),
    }


def box_frames(frames_rows: list[np.ndarray], image_size: tuple[int, int]) -> list[Any]:
    import torch
    from phalp_lightning.datamodules.synthetic.scenes import _box_detections

    out = []
    for index, rows in enumerate(frames_rows):
        boxes = torch.tensor(np.column_stack([rows[:, 2], rows[:, 3], rows[:, 2] + rows[:, 4], rows[:, 3] + rows[:, 5]]),
                             dtype=torch.float32).reshape(-1, 4)
        count = len(rows)
        out.append(_box_detections(boxes, torch.tensor(rows[:, 1], dtype=torch.int64), index, image_size,
                                   torch.zeros(count, 229), torch.zeros(count, 4096), False))
    return out


def composed_tracker(overrides: dict[str, Any]) -> Any:
    from hydra.core.global_hydra import GlobalHydra

    from phalp_lightning.tracking.phalp_tracker import tracker_from_config
    from phalp_lightning.utils.config import compose_run_config

    arguments = [f"tracker.{key}={json.dumps(value)}" for key, value in overrides.items()]
    with tempfile.TemporaryDirectory() as out:
        cfg = compose_run_config(REPO / "configs", "predict", arguments, out)
    GlobalHydra.instance().clear()
    return tracker_from_config(cfg.tracker, hmar_checkpoint=False)


def run_ours(tracker: Any, frames: list[Any]) -> np.ndarray:
    tracker.reset()
    return tracked_rows(tracker, frames)


def boxmot_trackers(fps: float) -> dict[str, Any]:
    """The installed boxmot trackers (no re-id weights; static camera: no camera-motion compensation)."""
    try:
        from boxmot import BotSort, ByteTrack
    except ImportError:
        return {}
    return {
        "BoT-SORT (boxmot 25.0.0, no re-id)": lambda: BotSort(use_embeddings=False, use_cmc=False, frame_rate=int(round(fps))),
        "ByteTrack (boxmot 25.0.0)": lambda: ByteTrack(frame_rate=int(round(fps))),
    }


def run_boxmot(make: Any, frames_rows: list[np.ndarray], image_size: tuple[int, int]) -> np.ndarray:
    tracker = make()
    image = np.zeros((*image_size, 3), dtype=np.uint8)
    rows = []
    for index, detections in enumerate(frames_rows):
        x, y, w, h, score = detections[:, 2:7].T
        dets = np.column_stack([x, y, x + w, y + h, score, np.zeros(len(x))]).astype(np.float32).reshape(-1, 6)
        out = tracker.update(dets, image)
        for row in np.asarray(out).reshape(-1, out.shape[-1] if len(out) else 8):
            rows.append([index + 1, row[4], row[0], row[1], row[2] - row[0], row[3] - row[1]])
    return np.array(rows, dtype=np.float64).reshape(-1, 6)


def score(sequence: Sequence, rows: np.ndarray) -> dict[str, float]:
    from phalp_lightning.evaluation.evaluator import evaluate_sequences
    from phalp_lightning.evaluation.sequences import TrackSequence

    gt = TrackSequence.from_rows(sequence.name, sequence.gt_rows)
    prediction = TrackSequence.from_rows(sequence.name, rows)
    result = evaluate_sequences({sequence.name: prediction}, {sequence.name: gt})
    return {name: float(result.overall[name]) for name in METRICS}


def street_rows(seed: int) -> tuple[Any, np.ndarray]:
    from phalp_lightning.datamodules.synthetic.scenes import street_scene

    scene = street_scene(num_people=10, num_frames=60, seed=seed, trained_cues=False)
    return scene, scene.gt_rows.numpy()


def summarise(runs: list[dict[str, float]]) -> dict[str, float]:
    out = {}
    for m in METRICS:
        values = np.array([r[m] for r in runs])
        out[m] = float(values.sum()) if m == "IDSW" else float(values.mean())
        if m != "IDSW":
            out[f"{m}_min"], out[f"{m}_max"] = float(values.min()), float(values.max())
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sequence", help="a MOT-layout sequence folder (TUD-Campus)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--street-seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--variants", nargs="*", default=None,
                        help="also vary each constant alone (all of VARIANTS, or only the keys given)")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    sequence = Sequence.load(args.sequence)
    settings: list[dict[str, Any]] = [{}]
    if args.variants is not None:
        keys = args.variants or list(VARIANTS)
        settings += [{key: value} for key in keys for value in VARIANTS[key][1:]]
    trackers = {json.dumps(s) if s else "ours (shipped defaults)": composed_tracker(s) for s in settings}
    table: dict[str, dict[str, list[dict[str, float]]]] = {}
    start = time.perf_counter()
    for seed in args.seeds:
        for protocol, (seq, frames_rows) in protocols(sequence, seed).items():
            frames = box_frames(frames_rows, seq.image_size)
            for name, tracker in trackers.items():
                table.setdefault(protocol, {}).setdefault(name, []).append(score(seq, run_ours(tracker, frames)))
            fps = 7.0 if protocol == "7fps" else 25.0
            for name, make in boxmot_trackers(fps).items():
                table[protocol].setdefault(name, []).append(score(seq, run_boxmot(make, frames_rows, seq.image_size)))
        print(f"seed {seed} done ({time.perf_counter() - start:.0f} s)", flush=True)
    if not boxmot_trackers(25.0):
        print("boxmot not importable: its rows are skipped (put the scratch folder on PYTHONPATH)", flush=True)
    for seed in args.street_seeds:
        from phalp_lightning.evaluation.evaluator import evaluate_sequences
        from phalp_lightning.evaluation.sequences import TrackSequence

        scene, gt = street_rows(seed)
        for name, tracker in trackers.items():
            tracker.reset()
            out = []
            for frame in scene.frames:
                out += tracker.update(frame)
            out += tracker.finalize()
            result = evaluate_sequences({"street": TrackSequence.from_frame_tracks(out, name="street")},
                                        {"street": TrackSequence.from_rows("street", gt)})
            table.setdefault("street", {}).setdefault(name, []).append({m: float(result.overall[m]) for m in METRICS})
    summary = {protocol: {name: summarise(runs) for name, runs in rows.items()} for protocol, rows in table.items()}
    command = "python experiments/constant_study/run.py <TUD-Campus> --seeds " + " ".join(map(str, args.seeds)) + (
        " --variants " + " ".join(args.variants) if args.variants is not None else "") + " --street-seeds " + " ".join(map(str, args.street_seeds))
    lines = ["# Constants of the gated rule across protocols", "", f"`{command}` (means over seeds, [min, max]; ID switches summed)", ""]
    for protocol, rows in summary.items():
        lines += [f"## {protocol}", "", "| tracker | HOTA [min, max] | IDF1 [min, max] | MOTA | IDSW |", "|---|---|---|---|---|"]
        for name, s in rows.items():
            lines.append(f"| {name} | {100 * s['HOTA']:.1f} [{100 * s['HOTA_min']:.1f}, {100 * s['HOTA_max']:.1f}] | "
                         f"{100 * s['IDF1']:.1f} [{100 * s['IDF1_min']:.1f}, {100 * s['IDF1_max']:.1f}] | {100 * s['MOTA']:.1f} | {s['IDSW']:.0f} |")
        lines.append("")
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "results.json", json.dumps({"command": command, "summary": summary, "runs": table}, indent=1) + "\n")
    atomic_write_text(args.out / "results.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary


if __name__ == "__main__":
    main()
