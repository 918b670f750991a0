"""Pose transformer vs. three baselines on noisy synthetic tracks, per noise level; writes the validation record.

Question: with the per-frame errors of a single-frame 3D pose estimator in the history (per-joint
rotation noise, left/right flips, missed frames, shape jitter; docs/pose_transformer.md, Noise), does
the trained predictor still beat the best of constant pose, constant velocity (fractional steps) and
a damped/capped constant velocity 1, 5 and 10 frames ahead? At which levels?

Steps (all under --out):
1. noisy training shards: ``python -m phalp_lightning.datamodules.synthetic tracklets --motions ...
   --noise-deg <levels>`` (each track one level), ``mean_std.npy`` from them;
2. ``python train.py model=pose_transformer ...`` (the real entry point) for at most --max-time;
3. two fresh sets of tracks (other generator streams than the shards): a tuning set picks, per level,
   the damped velocity's (max_steps, decay) and which baseline the tracker would fall back to; the
   held-out set scores everything against the noise-free poses;
4. ``validated.ckpt`` = last.ckpt + the validation record (VALIDATION_KEY): per level, whether the
   network beat the best baseline at every horizon. ``load_pose_transformer`` reads it and says at
   start whether the tracker uses the network or a baseline.

Usage:
    python experiments/pose_transformer_cpu_training/noise_study.py --out /tmp/noise_study --max-time 00:00:10:00
    python experiments/pose_transformer_cpu_training/noise_study.py --out /tmp/noise_study --evaluate-only
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from phalp_lightning.utils.io import atomic_output, atomic_write_text

REPO = Path(__file__).resolve().parents[2]
MOTIONS = ("walk", "run", "stand", "turn", "wave")
BASELINES = ("constant_pose", "constant_velocity", "damped_velocity")
DAMPING_GRID = list(itertools.product((1.0, 2.0, 3.0, 5.0), (1.0, 0.8, 0.6)))  # (max_steps, decay)


def make_shards(data: Path, args: argparse.Namespace) -> None:
    if (data / "manifest.json").is_file():
        return
    command = [
        sys.executable, "-m", "phalp_lightning.datamodules.synthetic", "tracklets", "--out", str(data),
        "--seed", str(args.seed), "--num-train-tracks", str(args.num_train_tracks), "--num-val-tracks", "64",
        "--motions", *MOTIONS, "--noise-deg", *[str(level) for level in args.train_levels],
    ]  # fmt: skip
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=REPO)


def train(out: Path, data: Path, args: argparse.Namespace) -> tuple[Path, list[str], float]:
    from phalp_lightning.datamodules.tracklets import TrackletDataModule

    from phalp_lightning.models.pose_transformer_data import pose_statistics, write_mean_std

    mean_std = out / "mean_std.npy"
    if not mean_std.is_file():
        module = TrackletDataModule(train_shards=str(data / "train-*.tar"), val_shards=str(data / "val-*.tar"), batch_size=64, num_workers=0)
        module.setup("fit")
        write_mean_std(mean_std, *pose_statistics(module.train_dataloader()))
    run_dir = out / "run"
    command = [
        sys.executable, "train.py", "model=pose_transformer", "trainer=cpu", "logger=csv", f"seed={args.seed}",
        f"data.train_shards='{data / 'train-*.tar'}'", f"data.val_shards='{data / 'val-*.tar'}'",
        f"data.epoch_length={args.epoch_length}", f"data.batch_size={args.batch_size}", f"model.net.mean_std={mean_std}",
        f"trainer.max_epochs={args.max_epochs}", f"+trainer.max_time={args.max_time}", "trainer.gradient_clip_val=2.0",
        "+trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}", *args.overrides,
    ]  # fmt: skip
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    if args.evaluate_only:
        return checkpoint, command, float("nan")
    print("+", " ".join(command), flush=True)
    started = time.time()
    subprocess.run(command, check=True, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
    return checkpoint, command, time.time() - started


def track_batches(seed: int, stream: int, num_tracks: int, levels: list[float]) -> dict[float, dict[str, torch.Tensor]]:
    """Per level: windows of fresh tracks with noisy ``pose``/``valid`` and their ``clean_pose`` (same tracks at every level)."""
    from phalp_lightning.datamodules.synthetic.people import BodyModelHandle
    from phalp_lightning.datamodules.synthetic.tracklets import PoseNoise, corrupt_poses, simulate_tracks

    rng = np.random.default_rng([seed, stream])
    tracks = simulate_tracks(rng, num_tracks, 64, BodyModelHandle(None), motions=MOTIONS)
    # Two 32-frame windows per track (the network's frame_length is 35).
    clean = tracks["pose"].reshape(num_tracks * 2, 32, -1)
    valid = tracks["valid"].reshape(num_tracks * 2, 32)
    out = {}
    for index, level in enumerate(levels):
        noise_rng = np.random.default_rng([seed, stream, index])
        noisy, noisy_valid = corrupt_poses(noise_rng, clean, valid, PoseNoise.at_level(level))
        out[level] = {
            "pose": torch.from_numpy(noisy), "clean_pose": torch.from_numpy(clean),
            "valid": torch.from_numpy(noisy_valid), "time": torch.arange(32).repeat(len(clean), 1),
        }  # fmt: skip
    return out


def score(network, batch: dict, horizons: list[int], max_steps: float, decay: float) -> dict[int, dict[str, float]]:
    """Mean pose_l2 (the tracker's pose distance, against the noise-free pose) per horizon and predictor."""
    from phalp_lightning.models.pose_transformer_module import PoseTransformerModule, pose_distance

    scorer = PoseTransformerModule(
        network, optimizer=None, history_length=7, future_horizons=horizons,
        damped_velocity_max_steps=max_steps, damped_velocity_decay=decay,
    ).eval()  # fmt: skip
    result = {}
    for horizon in horizons:
        predictions = scorer.future_predictions(batch, horizon)
        result[horizon] = {
            name: float(pose_distance(predictions[name], predictions["target"]).mean())
            for name in ("model", *BASELINES)
        }
        result[horizon]["windows"] = len(predictions["target"])
    return result


def study(checkpoint: Path, args: argparse.Namespace) -> dict:
    from phalp_lightning.models.convert_pose_transformer import load_pose_transformer

    network = load_pose_transformer(checkpoint)
    network.tracking_fallback = None  # score the network itself
    tuning = track_batches(args.seed, 7, args.tuning_tracks, args.levels)
    held_out = track_batches(args.seed, 8, args.held_out_tracks, args.levels)
    levels = []
    for level in args.levels:
        # Tuning set: the damped velocity's settings, then the baseline with the smallest mean of
        # (error / constant pose's error) over the horizons, so every horizon counts.
        def relative(result: dict, name: str) -> float:
            return float(np.mean([result[h][name] / max(result[h]["constant_pose"], 1e-12) for h in args.horizons]))

        tuned = {settings: score(network, tuning[level], args.horizons, *settings) for settings in DAMPING_GRID}
        max_steps, decay = min(DAMPING_GRID, key=lambda settings: relative(tuned[settings], "damped_velocity"))
        fallback = min(BASELINES, key=lambda name: relative(tuned[(max_steps, decay)], name))
        result = score(network, held_out[level], args.horizons, max_steps, decay)
        per_horizon = {}
        for horizon in args.horizons:
            best = min(BASELINES, key=lambda name: result[horizon][name])
            per_horizon[str(horizon)] = {
                **result[horizon], "best_baseline": best,
                "model_vs_best": result[horizon]["model"] / max(result[horizon][best], 1e-12),
            }  # fmt: skip
        levels.append(
            {
                "noise_deg": float(level),
                "model_wins": all(entry["model_vs_best"] < 1.0 for entry in per_horizon.values()),
                "best_baseline": {"name": fallback, "max_steps": max_steps, "decay": decay},
                "horizons": per_horizon,
            }
        )
    return {"operating_noise_deg": float(args.operating_noise_deg), "levels": levels}


def markdown(record: dict, horizons: list[int]) -> str:
    lines = [
        "| noise (deg) | frames ahead | model | constant pose | constant velocity | damped velocity (max_steps, decay) | model / best baseline | network used |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for level in record["levels"]:
        setting = level["best_baseline"]
        for horizon in horizons:
            entry = level["horizons"][str(horizon)]
            cells = [f"{entry[name]:.4g}" for name in ("model", *BASELINES)]
            best = 1 + BASELINES.index(entry["best_baseline"])
            cells[best] = f"_{cells[best]}_"
            if entry["model_vs_best"] < 1.0:
                cells[0] = f"**{cells[0]}**"
            cells[3] += f" ({setting['max_steps']:g}, {setting['decay']:g})"
            used = "yes" if level["model_wins"] else f"no: {setting['name']}"
            lines.append(f"| {level['noise_deg']:g} | {horizon} | " + " | ".join(cells) + f" | {entry['model_vs_best']:.3f} | {used} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=None, help="existing noisy shards (default: OUT/data)")
    parser.add_argument("--levels", type=float, nargs="+", default=[0.0, 1.0, 2.0, 5.0], help="validation noise levels (deg)")
    parser.add_argument("--train-levels", type=float, nargs="+", default=[0.0, 1.0, 2.0, 5.0])
    parser.add_argument("--operating-noise-deg", type=float, default=2.0, help="level the tracker assumes by default")
    parser.add_argument("--num-train-tracks", type=int, default=768)
    parser.add_argument("--tuning-tracks", type=int, default=64)
    parser.add_argument("--held-out-tracks", type=int, default=128)
    parser.add_argument("--max-epochs", type=int, default=6)
    parser.add_argument("--epoch-length", type=int, default=3200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-time", default="00:00:10:00")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--horizons", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--evaluate-only", action="store_true", help="score OUT/run/checkpoints/last.ckpt again")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for train.py (the recipe)")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = (args.data or out / "data").resolve()
    make_shards(data, args)
    checkpoint, command, seconds = train(out, data, args)
    record = study(checkpoint, args)
    from phalp_lightning.models.convert_pose_transformer import VALIDATION_KEY

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    state[VALIDATION_KEY] = record
    with atomic_output(checkpoint.parent / "validated.ckpt") as temporary:
        torch.save(state, temporary)
    results = {
        "command": "python " + " ".join([os.path.relpath(__file__, REPO), *sys.argv[1:]]),
        "train_command": " ".join(["python", *command[1:]]),
        "train_seconds": seconds,
        "epochs_completed": int(state.get("epoch", -1)) + 1,
        "global_step": int(state.get("global_step", -1)),
        "record": record,
    }
    atomic_write_text(out / "results.json", json.dumps(results, indent=2))
    table = markdown(record, args.horizons)
    atomic_write_text(out / "results.md", table)
    print(json.dumps({k: v for k, v in results.items() if k != "record"}, indent=2))
    print(table)


if __name__ == "__main__":
    main()
