"""Train the small pose transformer on synthetic labelled-motion tracklets (CPU) and compare with baselines.

Question: after a short CPU training run, does the pose transformer predict a held-out track's
future pose better than the constant-pose baseline (what the tracker uses without a predictor)?

Steps (all written under --out):
1. synthetic tracklet shards (``python -m phalp_lightning.datamodules.synthetic tracklets``) unless
   --data points at existing ones; the val split holds other tracks than the train split;
2. ``mean_std.npy`` from the training windows (``pose_statistics``);
3. ``python train.py model=pose_transformer ...`` (the real entry point, in a subprocess);
4. the last checkpoint is re-loaded with ``load_pose_transformer`` (the tracker's loader) and scored
   on every held-out window with ``predict_next`` against the constant-pose and constant-velocity
   baselines, for each horizon;
5. results.json, results.md and (if matplotlib is installed) val_curves.png.

Usage:
    python experiments/pose_transformer_cpu_training/run.py --out experiments/pose_transformer_cpu_training/results
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from phalp_lightning.utils.io import atomic_output, atomic_write_text

REPO = Path(__file__).resolve().parents[2]
BASELINES = ("model", "constant_pose", "constant_velocity")


def make_data(out: Path, args: argparse.Namespace) -> Path:
    data = out / "data"
    if (data / "manifest.json").is_file() or list(data.glob("train*.tar")):
        return data
    command = [
        sys.executable,
        "-m",
        "phalp_lightning.datamodules.synthetic",
        "tracklets",
        "--out",
        str(data),
        "--seed",
        str(args.seed),
        "--num-train-tracks",
        str(args.num_train_tracks),
        "--num-val-tracks",
        str(args.num_val_tracks),
        "--track-length",
        str(args.track_length),
        "--window",
        str(args.window),
        *(["--motions", *args.motions] if args.motions else []),
    ]
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=REPO)
    return data


def shard_pattern(data: Path, split: str) -> str:
    """A glob over the split's shards (one dataset for TrackletDataModule)."""
    shards = sorted(data.rglob(f"{split}-*.tar"))
    if not shards:
        raise FileNotFoundError(f"no {split}-*.tar shards under {data}")
    return str(shards[0].parent / f"{split}-*.tar")


def datamodule(train: str, val: str, batch_size: int, num_actions: int = 0):
    from phalp_lightning.datamodules.tracklets import TrackletDataModule

    module = TrackletDataModule(
        train_shards=train, val_shards=val, batch_size=batch_size, num_workers=0,
        load_actions=num_actions > 0, num_actions=max(num_actions, 1),
    )  # fmt: skip
    module.setup("fit")
    return module


def evaluate_checkpoint(checkpoint: Path, val_loader, history_length: int, horizons: list[int]) -> dict:
    """Score the re-loaded checkpoint on every held-out window (the tracker's path: predict_next)."""
    from phalp_lightning.models.convert_pose_transformer import load_pose_transformer
    from phalp_lightning.models.pose_transformer_module import (
        PoseTransformerModule,
        pose_distance,
        rotation_angle_deg,
    )

    network = load_pose_transformer(checkpoint)
    scorer = PoseTransformerModule(
        network, optimizer=None, history_length=history_length, future_horizons=horizons
    ).eval()
    measures = ("pose_l2", "rot_deg", "rotation_l2", "betas_l2")
    from torchmetrics.classification import MultilabelAveragePrecision

    num_actions = network.config.get("num_action_classes", 0)
    action_ap = MultilabelAveragePrecision(num_labels=num_actions, average=None) if num_actions else None
    sums = {h: {name: dict.fromkeys(measures, 0.0) for name in BASELINES} for h in horizons}
    counts = {h: 0 for h in horizons}
    for batch in val_loader:
        if action_ap is not None and "actions" in batch:
            with torch.no_grad():
                _, observed = scorer.layout_windows(batch)
                # The history only (first history_length observed steps), as the tracker has it.
                masked = observed & (observed.long().cumsum(dim=1) > history_length)
                losses = scorer.masked_step(batch, masked=masked)
            if "_action_logits" in losses and len(losses["_action_logits"]):
                action_ap.update(losses["_action_logits"].sigmoid(), losses["_action_labels"].round().long())
        for horizon in horizons:
            predictions = scorer.future_predictions(batch, horizon)
            if predictions is None:
                continue
            counts[horizon] += len(predictions["target"])
            for name in BASELINES:
                sums[horizon][name]["pose_l2"] += (
                    pose_distance(predictions[name], predictions["target"]).sum().item()
                )
                sums[horizon][name]["rot_deg"] += (
                    rotation_angle_deg(predictions[name], predictions["target"]).sum().item()
                )
                # The two parts of pose_l2: rotation-matrix entries (0:216) and betas (216:226).
                error = (predictions[name] - predictions["target"]).pow(2)
                sums[horizon][name]["rotation_l2"] += error[:, :216].sum().item()
                sums[horizon][name]["betas_l2"] += error[:, 216:226].sum().item()
    results = {}
    for horizon in horizons:
        n = max(counts[horizon], 1)
        entry = {name: {k: v / n for k, v in values.items()} for name, values in sums[horizon].items()}
        entry["num_windows"] = counts[horizon]
        entry["model_vs_constant_pose"] = entry["model"]["pose_l2"] / max(
            entry["constant_pose"]["pose_l2"], 1e-12
        )
        entry["model_vs_constant_velocity"] = entry["model"]["pose_l2"] / max(
            entry["constant_velocity"]["pose_l2"], 1e-12
        )
        entry["model_beats_both"] = {
            measure: entry["model"][measure]
            < min(entry["constant_pose"][measure], entry["constant_velocity"][measure])
            for measure in ("pose_l2", "rotation_l2", "rot_deg")
        }
        results[f"h{horizon}"] = entry
    if action_ap is not None and action_ap.update_count:
        per_class = action_ap.compute()
        names = network.action_names or [str(i) for i in range(num_actions)]
        results["actions"] = {
            "ap": {name: float(value) for name, value in zip(names, per_class, strict=True)},
            "map": float(per_class[~per_class.isnan()].mean()),
        }
    return results


def val_curves(metrics_csv: Path, horizons: list[int]) -> dict[str, list]:
    import pandas as pd

    frame = pd.read_csv(metrics_csv)
    val = frame[frame["val/loss"].notna()].groupby("epoch").last().reset_index()
    curves: dict[str, list] = {
        "epoch": val["epoch"].astype(int).tolist(),
        "val/loss": val["val/loss"].tolist(),
    }
    for horizon in horizons:
        for name in BASELINES:
            key = f"val/future{horizon}/{name}/pose_l2"
            if key in val:
                curves[key] = val[key].tolist()
    train = frame[frame["train/loss"].notna()] if "train/loss" in frame.columns else None
    curves["train_step"] = [] if train is None else train["step"].astype(int).tolist()
    curves["train/loss"] = [] if train is None else train["train/loss"].tolist()
    return curves


def plot(curves: dict[str, list], horizons: list[int], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axes = plt.subplots(1, len(horizons) + 1, figsize=(5 * (len(horizons) + 1), 4))
    axes[0].plot(curves["train_step"], curves["train/loss"])
    axes[0].set(title="train/loss", xlabel="step", yscale="log")
    for axis, horizon in zip(axes[1:], horizons, strict=True):
        for name in BASELINES:
            key = f"val/future{horizon}/{name}/pose_l2"
            if key in curves:
                axis.plot(curves["epoch"], curves[key], marker="o", label=name)
        axis.set(title=f"held-out pose_l2, {horizon} frame(s) ahead", xlabel="epoch", yscale="log")
        axis.legend()
    figure.tight_layout()
    with atomic_output(path) as temporary:
        figure.savefig(temporary, dpi=100)
    return True


def markdown(results: dict) -> str:
    lines = [
        "# Pose transformer: CPU training on synthetic labelled-motion tracklets",
        "",
        f"Command: `{results['command']}`",
        "",
        f"Train command: `{results['train_command']}`",
        "",
        f"Data: {results['data']['train_windows']} train windows, {results['data']['val_windows']} held-out windows "
        f"(other tracks) of {results['data']['window']} frames; motions {results['data'].get('motions')}. Training: "
        f"{results['epochs_completed']} of {results['max_epochs']} scheduled epochs of {results['epoch_length']} windows "
        f"(batch {results.get('batch_size', 32)}), {results['train_seconds']:.0f} s wall"
        + (f" ({results['train_cpu_seconds']:.0f} s CPU)" if results.get("train_cpu_seconds") else "")
        + f" on {results['machine']}, shared with other jobs.",
        "",
        "Held-out windows, re-loaded checkpoint (`load_pose_transformer` + `predict_next`); history = first "
        f"{results['history_length']} valid steps. Means per window, lower is better: `pose_l2` = the tracker's "
        "pose distance (squared L2 over rotations and betas, dims 0:226), `rotation_l2` = its rotation part "
        "(dims 0:216), `rot_deg` = mean joint rotation error in degrees. CP = constant pose, CV = constant velocity. "
        "**bold** = the model beats the better baseline.",
        "",
        "| horizon | windows | model pose_l2 | CP pose_l2 | CV pose_l2 | model rotation_l2 | CP rotation_l2 | CV rotation_l2 | model rot_deg | CP rot_deg | CV rot_deg | model betas_l2 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    def table_row(key: str, entry: dict) -> str:
        cells = [key[1:], str(entry["num_windows"])]
        for measure, digits in (("pose_l2", 4), ("rotation_l2", 4), ("rot_deg", 2)):
            model = f"{entry['model'][measure]:.{digits}f}"
            cells.append(f"**{model}**" if entry["model_beats_both"][measure] else model)
            cells += [f"{entry[name][measure]:.{digits}f}" for name in ("constant_pose", "constant_velocity")]
        cells.append(f"{entry['model']['betas_l2']:.4f}")
        return "| " + " | ".join(cells) + " |"

    header_at = len(lines) - 2
    lines += [table_row(key, entry) for key, entry in results["held_out"].items() if key.startswith("h")]
    if results.get("also_scored"):
        lines += ["", f"The same checkpoint on other held-out windows (`{results['also_scored']['val']}`):", ""]
        lines += lines[header_at : header_at + 2]
        lines += [table_row(key, entry) for key, entry in results["also_scored"]["held_out"].items() if key.startswith("h")]
    actions = results["held_out"].get("actions")
    if actions:
        lines += [
            "",
            "Action head, held-out windows (history slots only, per-slot sigmoid scores), average precision "
            "(torchmetrics `MultilabelAveragePrecision`):",
            "",
            "| " + " | ".join(actions["ap"]) + " | mAP |",
            "|" + "---|" * (len(actions["ap"]) + 1),
            "| " + " | ".join(f"{value:.3f}" for value in actions["ap"].values()) + f" | {actions['map']:.3f} |",
        ]
    lines += [
        "",
        "Per-epoch validation curves: results.json (`curves`)"
        + (" and val_curves.png." if results["plot"] else "."),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument(
        "--data", type=Path, default=None, help="existing tracklet shards (default: generate under OUT/data)"
    )
    parser.add_argument("--max-epochs", type=int, default=12)
    parser.add_argument("--epoch-length", type=int, default=8000, help="training windows drawn per epoch")
    parser.add_argument(
        "--max-time", default="00:00:28:00", help="Lightning trainer.max_time (DD:HH:MM:SS): the CPU budget"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the training process")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--num-train-tracks", type=int, default=768)
    parser.add_argument("--num-val-tracks", type=int, default=128)
    parser.add_argument(
        "--motions", nargs="*", default=["walk", "run", "stand", "turn", "wave"],
        help="labelled motions of the generated tracks (none: walking only, no action labels)",
    )  # fmt: skip
    parser.add_argument("--track-length", type=int, default=64)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--horizons", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument(
        "--evaluate-only",
        action="store_true",
        help="score OUT/run/checkpoints/last.ckpt of an earlier (possibly stopped) run",
    )
    parser.add_argument(
        "--also-score", type=Path, default=None,
        help="tracklet shards (a folder with val-*.tar) to score the same checkpoint on as well, e.g. walking-only tracks",
    )  # fmt: skip
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for train.py")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    data = args.data.resolve() if args.data else make_data(out, args)
    train, val = shard_pattern(data, "train"), shard_pattern(data, "val")
    from phalp_lightning.models.pose_transformer_data import pose_statistics, write_mean_std

    mean_std = out / "mean_std.npy"
    if not (args.evaluate_only and mean_std.is_file()):
        stats_module = datamodule(train, val, args.batch_size)
        write_mean_std(mean_std, *pose_statistics(stats_module.train_dataloader()))
    manifest = data / "manifest.json"
    if manifest.is_file():
        splits = json.loads(manifest.read_text())["splits"]
        train_windows, val_windows = splits["train"]["num_samples"], splits["val"]["num_samples"]
    else:
        train_windows = val_windows = None

    run_dir = out / "run"
    horizons = "[" + ",".join(str(h) for h in args.horizons) + "]"
    motions = list(args.motions or [])
    action_overrides = (
        [
            "data.load_actions=true",
            f"data.num_actions={len(motions)}",
            f"model.net.num_action_classes={len(motions)}",
            "model.net.action_names=[" + ",".join(motions) + "]",
        ]
        if motions
        else []
    )
    train_command = [
        sys.executable,
        "train.py",
        "model=pose_transformer",
        "trainer=cpu",
        "logger=csv",
        f"seed={args.seed}",
        f"data.train_shards='{train}'",
        f"data.val_shards='{val}'",
        f"data.epoch_length={args.epoch_length}",
        f"data.batch_size={args.batch_size}",
        f"model.net.mean_std={mean_std}",
        f"model.optimizer.lr={args.lr}",
        f"trainer.max_epochs={args.max_epochs}",
        f"model.future_horizons={horizons}",
        f"+trainer.max_time={args.max_time}",
        "trainer.gradient_clip_val=2.0",
        "+trainer.enable_progress_bar=false",
        *action_overrides,
        f"hydra.run.dir={run_dir}",
        *args.overrides,
    ]
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    if args.evaluate_only:
        # Scores a run that was stopped early (or finished before); wall time = run dir -> last checkpoint.
        if not checkpoint.is_file():
            raise FileNotFoundError(f"--evaluate-only: {checkpoint} does not exist; train first")
        train_seconds = checkpoint.stat().st_mtime - (run_dir / ".hydra").stat().st_mtime
        train_cpu_seconds = None
        earlier = out / "results.json"
        if earlier.is_file():  # the training run's own timings, when it wrote them
            previous = json.loads(earlier.read_text())
            train_seconds = previous.get("train_seconds", train_seconds)
            train_cpu_seconds = previous.get("train_cpu_seconds")
    else:
        print("+", " ".join(train_command), flush=True)
        started = time.time()
        # One thread: on a shared, oversubscribed CPU two OpenMP threads wait on each other (measured
        # ~10x slower per step here while other jobs ran).
        environment = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        subprocess.run(train_command, check=True, cwd=REPO, env=environment)
        train_seconds = time.time() - started
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        train_cpu_seconds = usage.ru_utime + usage.ru_stime
    epochs_completed = int(torch.load(checkpoint, map_location="cpu", weights_only=False)["epoch"]) + 1

    held_out = evaluate_checkpoint(
        checkpoint, datamodule(train, val, args.batch_size, len(motions)).val_dataloader(), 7, args.horizons
    )
    also_scored = None
    if args.also_score is not None:
        other_val = shard_pattern(args.also_score.resolve(), "val")
        also_scored = {
            "val": other_val,
            "held_out": evaluate_checkpoint(checkpoint, datamodule(other_val, other_val, args.batch_size).val_dataloader(), 7, args.horizons),
        }
    curves = val_curves(run_dir / "csv" / "version_0" / "metrics.csv", args.horizons)
    plotted = plot(curves, args.horizons, out / "val_curves.png")
    results = {
        "command": "python " + " ".join([os.path.relpath(__file__, REPO), *sys.argv[1:]]),
        "train_command": " ".join(["python", *train_command[1:]]),
        "data": {
            "train": train,
            "val": val,
            "train_windows": train_windows,
            "val_windows": val_windows,
            "window": args.window,
            "motions": motions,
        },
        "batch_size": args.batch_size,
        "max_epochs": args.max_epochs,
        "epochs_completed": epochs_completed,
        "evaluate_only": args.evaluate_only,
        "epoch_length": args.epoch_length,
        "history_length": 7,
        "train_seconds": train_seconds,
        "train_cpu_seconds": train_cpu_seconds,
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.__version__}",
        "held_out": held_out,
        "also_scored": also_scored,
        "curves": curves,
        "plot": plotted,
    }
    atomic_write_text(out / "results.json", json.dumps(results, indent=2))
    atomic_write_text(out / "results.md", markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
