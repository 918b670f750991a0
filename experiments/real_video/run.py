"""Real video, given boxes: our tracker against SORT, ByteTrack and BoT-SORT on the same detections.

    python experiments/real_video/run.py /path/to/TUD-Campus [/path/to/OTHER-SEQ ...] [--seeds 0 1 2]

Each argument is a MOT-layout sequence folder (``gt/gt.txt``, ``seqinfo.ini``, a video file or
``img1/``). Real data is never part of the repository: pass its path. For every sequence and seed the
given-boxes protocol (``protocol.py``: ground truth with conf 1, 10 % dropped, 3 % jitter of centre
and size, a few false positives, score 1) is built once and every tracker gets those boxes:

* ours: the project's defaults (``configs/tracker/phalp.yaml``) with an untrained HMAR, i.e. no
  checkpoint, as a new user runs it; the features come from the real prediction path
  (``TrackingSystem``: crops -> HMAR -> pose/location/appearance/UV) with the small-box filter off
  so that every given box is tracked; ``reference`` is the same run with ``reference_mode=true``
  (the original's association);
* SORT, ByteTrack and BoT-SORT without re-id (``baselines.py``).

Scores come from ``phalp_lightning.evaluation`` (HOTA, IDF1, MOTA, ID switches, standard protocol).
The table goes to ``results.json`` / ``results.md`` next to this file (or ``--out``). HMAR features
are cached under ``--cache`` (default: a folder in the system temp dir), never in the repository.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baselines import ByteTracker, SortTracker  # noqa: E402
from protocol import Sequence, given_boxes, per_frame, tracked_rows  # noqa: E402

from phalp_lightning.utils.io import atomic_write_text  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
METRICS = ("HOTA", "DetA", "AssA", "IDF1", "MOTA", "IDSW")


def read_frames(sequence: Sequence) -> list[np.ndarray]:
    """RGB uint8 frames of the sequence (video file or ``img1/``)."""
    import cv2

    video = sequence.video_path()
    frames = []
    if video is not None:
        capture = cv2.VideoCapture(str(video))
        while len(frames) < sequence.num_frames:
            ok, image = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        capture.release()
    else:
        for path in sorted((sequence.root / "img1").glob("*.jpg"))[: sequence.num_frames]:
            frames.append(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))
    if len(frames) != sequence.num_frames:
        raise RuntimeError(f"{sequence.root}: read {len(frames)} frames, seqinfo.ini says {sequence.num_frames}")
    return frames


def ensure_assets(assets: str | None, cache: Path) -> str:
    """The body-model assets folder: ``--assets``, else a synthetic set generated once under the cache."""
    if assets:
        return assets
    folder = cache / "assets"
    if not (folder / "3D" / "smpl_mean_params.npz").is_file():
        subprocess.run([sys.executable, "-m", "phalp_lightning.assets", "--root", str(folder), "generate"], check=True)
    return str(folder)


def hmar_features(sequence: Sequence, frames_rows: list[np.ndarray], seed: int, assets: str, cache: Path) -> list[Any]:
    """FrameDetections of the given boxes through the untrained HMAR (cached per sequence and seed)."""
    import torch

    from phalp_lightning.detection.base import NoDetector
    from phalp_lightning.models.components.hmar import HMAR
    from phalp_lightning.models.tracking_system import TrackingSystem
    from phalp_lightning.structures import Detections

    digest = hashlib.sha1(np.concatenate(frames_rows).tobytes()).hexdigest()[:12]
    path = cache / f"{sequence.name}_seed{seed}_{digest}.pt"
    if path.is_file():
        return torch.load(path, weights_only=False)
    torch.manual_seed(0)
    hmar = HMAR(assets_dir=assets)
    system = TrackingSystem(NoDetector(), hmar, min_box_width=0, min_box_height=0).eval()
    images = read_frames(sequence)
    out = []
    for start in range(0, len(images), 4):
        stop = min(start + 4, len(images))
        given = []
        for rows in frames_rows[start:stop]:
            xyxy = np.column_stack([rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]])
            given.append(Detections(boxes=torch.tensor(xyxy, dtype=torch.float32), scores=torch.tensor(rows[:, 6], dtype=torch.float32)))
        batch = {
            "video": sequence.name,
            "images": torch.from_numpy(np.stack(images[start:stop])),
            "frame_index": torch.arange(start, stop),
            "frame_name": [f"{i + 1:06d}.jpg" for i in range(start, stop)],
            "given": given,
        }
        with torch.no_grad():
            result = system.predict_step(batch)
        if result.error:
            raise RuntimeError(result.error)
        out.extend(result.frames)
        print(f"  HMAR features {sequence.name}: frames {stop}/{len(images)}", flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(out, path)
    return out


def composed_tracker(overrides: dict[str, Any], **objects: Any) -> Any:
    """The tracker as ``predict.py`` builds it without a checkpoint; ``overrides`` are ``tracker.*`` keys
    (``{"association": "eq019"}`` picks a rule of the association group, dotted keys set values)."""
    import tempfile

    from phalp_lightning.tracking.phalp_tracker import tracker_from_config
    from phalp_lightning.utils.config import compose_run_config

    arguments = [
        f"tracker/association={value}" if key == "association" else f"tracker.{key}={json.dumps(value)}"
        for key, value in overrides.items()
    ]
    with tempfile.TemporaryDirectory() as out:
        cfg = compose_run_config(REPO / "configs", "predict", arguments, out)
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    return tracker_from_config(cfg.tracker, hmar_checkpoint=False, **objects)


def run_ours(features: list[Any], assets: str, overrides: dict[str, Any]) -> np.ndarray:
    """Our tracker as ``predict.py`` builds it (+ ``tracker.*`` overrides); rows ``frame, id, x, y, w, h``."""
    import torch

    from phalp_lightning.models.components.hmar import HMAR

    torch.manual_seed(0)
    hmar = HMAR(assets_dir=assets).eval()
    tracker = composed_tracker(overrides, appearance_encoder=hmar.encode_appearance)
    return tracked_rows(tracker, features)


def run_baseline(tracker: Any, frames_rows: list[np.ndarray]) -> np.ndarray:
    rows = []
    for index, detections in enumerate(frames_rows):
        out = tracker.update(detections[:, 2:7])
        rows.extend([index + 1, *row[:5]] for row in out)
    return np.array(rows).reshape(-1, 6)


def score(sequence: Sequence, rows: np.ndarray) -> dict[str, float]:
    from phalp_lightning.evaluation.evaluator import evaluate_sequences
    from phalp_lightning.evaluation.sequences import TrackSequence

    gt = TrackSequence.from_rows(sequence.name, sequence.gt_rows)
    prediction = TrackSequence.from_rows(sequence.name, rows)
    result = evaluate_sequences({sequence.name: prediction}, {sequence.name: gt})
    return {name: float(result.overall[name]) for name in METRICS}


TRACKERS: dict[str, Any] = {
    "ours (defaults, untrained HMAR)": ("ours", {}),
    "ours, reference_mode": ("ours", {"reference_mode": True, "association": "eq019"}),
    "SORT (IoU)": ("baseline", SortTracker),
    "ByteTrack": ("baseline", ByteTracker),
    "BoT-SORT (no re-id)": ("baseline", ByteTracker.botsort),
}


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Real video, given boxes",
        "",
        "`python experiments/real_video/run.py " + " ".join(results["arguments"]) + "`",
        "",
        "Given-boxes protocol: ground truth with conf 1, 10 % dropped, 3 % jitter of centre and size, "
        f"{results['false_positive_rate'] * 100:g} false positives per 100 boxes, score 1; seeds {results['seeds']} "
        f"(reference_mode row: seeds {results['reference_seeds']}). "
        "Ours runs with no HMAR checkpoint (untrained HMAR). Mean over seeds (HOTA, DetA, AssA, IDF1, MOTA in %; IDSW summed).",
        "",
    ]
    for name, table in results["sequences"].items():
        lines += [f"## {name}", "", "| tracker | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
        for tracker, metrics in table.items():
            cells = [f"{metrics[m]:.0f}" if m == "IDSW" else f"{100 * metrics[m]:.1f}" for m in METRICS]
            lines.append(f"| {tracker} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sequences", nargs="+", help="MOT-layout sequence folders")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--false-positive-rate", type=float, default=0.02)
    parser.add_argument("--assets", default=None, help="body-model assets (default: a generated synthetic set)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "phalp_real_video_cache")
    parser.add_argument("--reference-seeds", type=int, nargs="*", default=[0],
                        help="seeds of the reference_mode row (its per-pair HMAR texture encoding is slow on a CPU)")
    parser.add_argument("--only", nargs="*", default=None, help="run only these trackers (names of the table)")
    parser.add_argument("--ours", default=None, help="JSON overrides of the tracker config for the 'ours' rows")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)

    assets = ensure_assets(args.assets, args.cache)
    extra = json.loads(args.ours) if args.ours else {}
    results: dict[str, Any] = {
        "arguments": [Path(s).name for s in args.sequences] + ["--seeds", *map(str, args.seeds)]
        + ["--reference-seeds", *map(str, args.reference_seeds)],
        "seeds": args.seeds,
        "reference_seeds": args.reference_seeds,
        "false_positive_rate": args.false_positive_rate,
        "sequences": {},
        "per_seed": {},
    }
    previous: dict[str, Any] = {}
    if args.only and (args.out / "results.json").is_file():
        # A partial rerun (--only) keeps the other trackers' rows of the same table.
        previous = json.loads((args.out / "results.json").read_text()).get("per_seed", {})
    for folder in args.sequences:
        sequence = Sequence.load(folder)
        table: dict[str, list[dict[str, float]]] = {
            name: runs for name, runs in previous.get(sequence.name, {}).items() if name not in args.only
        } if args.only else {}
        for seed in args.seeds:
            frames_rows = per_frame(given_boxes(sequence, seed=seed, false_positive_rate=args.false_positive_rate), sequence.num_frames)
            features = None
            for name, (kind, spec) in TRACKERS.items():
                if args.only and name not in args.only:
                    continue
                if kind == "ours" and spec.get("reference_mode") and seed not in args.reference_seeds:
                    continue
                start = time.perf_counter()
                if kind == "ours":
                    if features is None:
                        features = hmar_features(sequence, frames_rows, seed, assets, args.cache)
                    rows = run_ours(features, assets, {**spec, **extra})
                else:
                    rows = run_baseline(spec(), frames_rows)
                metrics = score(sequence, rows)
                table.setdefault(name, []).append(metrics)
                print(f"{sequence.name} seed {seed} {name:<34} " + " ".join(f"{m}={metrics[m]:.3f}" for m in METRICS)
                      + f" ({time.perf_counter() - start:.1f} s)", flush=True)
        results["per_seed"][sequence.name] = table
        results["sequences"][sequence.name] = {
            name: {m: float(np.sum([r[m] for r in runs])) if m == "IDSW" else float(np.mean([r[m] for r in runs])) for m in METRICS}
            for name, runs in sorted(table.items(), key=lambda item: list(TRACKERS).index(item[0]))
        }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "results.json", json.dumps(results, indent=2) + "\n")
    atomic_write_text(args.out / "results.md", markdown(results) + "\n")
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()
