"""HMAR CPU training study: does validation MPJPE fall over a short run on synthetic crop shards?

    python experiments/hmar_cpu_training/run.py [--out DIR] [--epochs 6] [--img-size 64]

1. writes small synthetic crop shards (``python -m phalp_lightning.datamodules.synthetic crops``)
   unless ``--shards DIR`` points at existing ones;
2. validates the untrained network (same config and seed as the run, so the same initial weights)
   for the starting point of the curve (epoch -1);
3. runs ``python train.py model=hmar`` on CPU (CSV logger, validation every epoch);
4. reads ``val/mpjpe``, ``val/pa_mpjpe``, ``val/pck`` per epoch from the CSV log and writes
   ``results.json``, ``results.md`` and, when matplotlib is installed (the ``plot`` extra),
   ``mpjpe.png`` and ``pck.png`` to ``--out``.

``--plot-only`` redraws the PNGs from an earlier run's ``results.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

from phalp_lightning.utils.io import atomic_write_text

ROOT = Path(__file__).resolve().parents[2]
METRICS = ("val/mpjpe", "val/pa_mpjpe", "val/pck", "val/loss")


def make_shards(out: Path, img_size: int, train_samples: int, val_samples: int, seed: int) -> Path:
    shards = out / "shards"
    command = [
        sys.executable, "-m", "phalp_lightning.datamodules.synthetic", "crops", "--out", str(shards),
        "--crop-size", str(img_size), "--num-train", str(train_samples), "--num-val", str(val_samples),
        "--seed", str(seed),
    ]  # fmt: skip
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=ROOT)
    return shards


def shard_pattern(shards: Path, split: str) -> str:
    if not sorted(shards.glob(f"{split}-*.tar")):
        raise FileNotFoundError(f"no {split}-*.tar shards in {shards}")
    return str(shards / f"{split}-*.tar")


def initial_validation(overrides: list[str], run_dir: Path) -> dict[str, float]:
    """Validation metrics of the untrained network, built exactly as ``pipelines.train.run`` builds it."""
    import hydra
    import lightning as L
    from hydra.core.global_hydra import GlobalHydra

    from phalp_lightning.utils.config import compose_run_config

    cfg = compose_run_config(
        ROOT / "configs", "train", [o for o in overrides if not o.startswith("hydra.")], run_dir / "initial"
    )
    L.seed_everything(cfg.seed, workers=True)  # same order as pipelines.train.run: seed, data, model
    datamodule = hydra.utils.instantiate(cfg.data)
    model = hydra.utils.instantiate(cfg.model)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    (metrics,) = trainer.validate(model, datamodule=datamodule, verbose=False)
    GlobalHydra.instance().clear()
    return {"epoch": -1, "step": 0} | {name: float(metrics[name]) for name in METRICS if name in metrics}


def read_curve(run_dir: Path) -> list[dict[str, float]]:
    """Per-epoch validation metrics from the CSVLogger's metrics.csv."""
    files = sorted(run_dir.glob("csv/**/metrics.csv"))
    if not files:
        raise FileNotFoundError(f"no metrics.csv under {run_dir}/csv")
    curve: dict[int, dict[str, float]] = {}
    with files[-1].open() as handle:
        for row in csv.DictReader(handle):
            if row.get("val/mpjpe"):
                epoch = int(row["epoch"])
                curve[epoch] = {"epoch": epoch, "step": int(row["step"])} | {
                    name: float(row[name]) for name in METRICS if row.get(name)
                }
    return [curve[epoch] for epoch in sorted(curve)]


def markdown(curve: list[dict[str, float]], summary: dict[str, object]) -> str:
    lines = [
        "# HMAR CPU training: validation curve",
        "",
        f"Command: `{summary['command']}`",
        "",
        f"Crops {summary['img_size']} px, {summary['train_samples']} train / {summary['val_samples']} val samples, "
        f"{summary['epochs']} epochs, training wall time {summary['wall_seconds']:.0f} s. Epoch -1 is the untrained network.",
        "",
        "| epoch | step | val MPJPE (mm) | val PA-MPJPE (mm) | val PCK@0.05 | val loss |",
        "|---|---|---|---|---|---|",
    ]
    for row in curve:
        lines.append(
            f"| {row['epoch']} | {row['step']} | {row.get('val/mpjpe', float('nan')):.1f} | "
            f"{row.get('val/pa_mpjpe', float('nan')):.1f} | {row.get('val/pck', float('nan')):.3f} | {row.get('val/loss', float('nan')):.4f} |"
        )
    lines += ["", f"MPJPE first -> last epoch: {summary['mpjpe_first']:.1f} -> {summary['mpjpe_last']:.1f} mm "
              f"({summary['mpjpe_ratio']:.2f} x)."]  # fmt: skip
    return "\n".join(lines) + "\n"


def plot(curve: list[dict[str, float]], out: Path) -> list[Path]:
    """``mpjpe.png`` (MPJPE and PA-MPJPE per epoch) and ``pck.png`` next to the JSON; [] without matplotlib."""
    from phalp_lightning.utils.plotting import PlottingUnavailableError, save_curves

    epochs = [row["epoch"] for row in curve]
    try:
        return [
            save_curves(out / "mpjpe.png", epochs, {
                "MPJPE": [row["val/mpjpe"] for row in curve],
                "PA-MPJPE": [row.get("val/pa_mpjpe", float("nan")) for row in curve],
            }, xlabel="epoch (-1 = untrained)", ylabel="validation error (mm)", title="HMAR CPU training: 3D joint error"),
            save_curves(out / "pck.png", epochs, {"PCK@0.05": [row.get("val/pck", float("nan")) for row in curve]},
                        xlabel="epoch (-1 = untrained)", ylabel="fraction of 2D joints within 0.05",
                        title="HMAR CPU training: 2D keypoints"),
        ]
    except PlottingUnavailableError as error:
        print(f"warning: no plots: {error}", file=sys.stderr)
        return []


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument(
        "--shards", type=Path, default=None, help="existing crop shards (train-*.tar, val-*.tar)"
    )
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--train-samples", type=int, default=256)
    parser.add_argument("--val-samples", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot-only", action="store_true", help="redraw the PNGs from OUT/results.json")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for train.py")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.plot_only:
        written = plot(json.loads((args.out / "results.json").read_text())["curve"], args.out)
        print("wrote", ", ".join(str(path) for path in written) or "nothing")
        return
    shards = args.shards or make_shards(
        args.out, args.img_size, args.train_samples, args.val_samples, args.seed
    )

    run_dir = args.out / "run"
    overrides = [
        "model=hmar", "trainer=cpu", "callbacks=none", "logger=csv", f"seed={args.seed}",
        f"data.crop_size={args.img_size}", f"model.optimizer.lr={args.lr}", "model.net.smpl_dropout=0.0",
        f"data.train_shards={shard_pattern(shards, 'train')}", f"data.val_shards={shard_pattern(shards, 'val')}",
        f"data.batch_size={args.batch_size}", f"trainer.max_epochs={args.epochs}", "trainer.log_every_n_steps=1",
        "+trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}", *args.overrides,
    ]  # fmt: skip
    initial = initial_validation(overrides, run_dir)
    print(f"untrained network: val/mpjpe {initial['val/mpjpe']:.1f} mm", flush=True)
    command = [sys.executable, "train.py", *overrides]
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    wall = time.perf_counter() - start

    curve = [initial, *read_curve(run_dir)]
    first, last = curve[0]["val/mpjpe"], curve[-1]["val/mpjpe"]
    summary = {
        "command": " ".join(["python experiments/hmar_cpu_training/run.py", *(argv if argv is not None else sys.argv[1:])]),
        "img_size": args.img_size, "train_samples": args.train_samples, "val_samples": args.val_samples,
        "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "wall_seconds": wall,
        "mpjpe_first": first, "mpjpe_last": last, "mpjpe_ratio": last / first,
        "mpjpe_best": min(row["val/mpjpe"] for row in curve),
    }  # fmt: skip
    atomic_write_text(args.out / "results.json", json.dumps({"summary": summary, "curve": curve}, indent=2))
    atomic_write_text(args.out / "results.md", markdown(curve, summary))
    plotted = plot(curve, args.out)
    print(markdown(curve, summary))
    print(f"wrote {args.out / 'results.json'}, {args.out / 'results.md'}" + "".join(f", {path}" for path in plotted))


if __name__ == "__main__":
    main()
