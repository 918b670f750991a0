"""Throughput of the crop and tracklet DataModules (samples/s) with 0, 1 and 2 DataLoader workers.

    python experiments/loader_benchmark/run.py [--data DIR] [--batches 30] [--crop-size 256]

Writes synthetic shards under DIR (default: a temporary folder) unless they are there, then times
full training epochs of each DataModule, side by side in one run. Prints a table and writes
``results.json``, ``results.md`` and ``results.png`` (bars; needs matplotlib) next to this file (or
to --out). ``--plot-only`` redraws ``results.png`` from the ``results.json`` in --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from phalp_lightning.utils.io import atomic_write_text


def _time_loader(module, batches: int, warmup: int = 2) -> dict:
    module.setup("fit")
    loader = module.train_dataloader()
    started = None
    seen = 0
    for index, batch in enumerate(loader):
        if index == warmup:
            started = time.perf_counter()  # worker start-up and first decodes are excluded
        elif index > warmup:
            seen += len(next(iter(batch.values())))
        if index == warmup + batches:
            break
    elapsed = time.perf_counter() - started
    return {"samples": seen, "seconds": round(elapsed, 3), "samples_per_s": round(seen / elapsed, 1)}


GPU_NOTE = ['',
    '## Expected on a GPU machine (roofline note)',
    '',
    'Loading is CPU work (tar reading, PNG decode, resize, normalisation), so a GPU does not speed it up; it sets',
    'what the loader must deliver. HMAR at 256 px costs 15.9 GFLOP per crop forward (experiments/hmar_throughput),',
    '~48 GFLOP with the backward: one H100 at 40 % of 990 TFLOP/s bf16 trains ~8,000 crops/s, i.e. ~40x the', "2-worker CPU figure above -- plan ~1 worker per ~100 crops/s (this CPU's per-worker rate at 256 px; faster", 'cores do better) -- i.e. dozens of workers per GPU, or pre-resized crops / GPU-side decoding (DALI, nvJPEG).',
    'A 256 px crop is 4 x 256 x 256 x 4 B = 1 MiB as fp32 on the host (0.5 MiB as bf16): host-to-device copies at',
    '~25 GB/s (PCIe 4) carry ~25,000 crops/s with pin_memory=true, so the copy is not the bound. Tracklet windows are',
    '~40 kB and the pose transformer is small: its loader (>1,300 samples/s) keeps up with a GPU at small batch.']


def plot(report: dict, path: Path) -> Path | None:
    """Samples/s per loader (groups) and worker count (bars), log scale: the loaders differ 30x."""
    from phalp_lightning.utils.plotting import PlottingUnavailableError, save_bars

    loaders = list(dict.fromkeys(row["loader"] for row in report["results"]))
    workers = list(dict.fromkeys(row["workers"] for row in report["results"]))
    rate = {(row["loader"], row["workers"]): row["samples_per_s"] for row in report["results"]}
    series = {f"{count} worker{'s' if count != 1 else ''}": [rate.get((loader, count), float("nan")) for loader in loaders]
              for count in workers}
    threads = report.get("machine", {}).get("torch_threads_main")
    try:
        return save_bars(path, loaders, series, ylabel="samples/s (log)", log_y=True, value_format="{:.0f}",
                         title=f"DataModule throughput ({report.get('machine', {}).get('cpus')} shared CPUs, "
                               f"torch threads {threads})")
    except PlottingUnavailableError as error:
        print(f"warning: no {path.name}: {error}", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="folder for the synthetic shards (kept)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--batches", type=int, default=30, help="timed batches per setting")
    parser.add_argument("--crop-size", type=int, default=256, help="crop size of the batches (stored crops are 128 px)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads in the main process (collation with workers=0)")
    parser.add_argument("--plot-only", action="store_true", help="redraw results.png from OUT/results.json")
    args = parser.parse_args(argv)
    if args.plot_only:
        report = json.loads((args.out / "results.json").read_text())
        print("wrote", plot(report, args.out / "results.png"))
        return report
    import torch

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    from phalp_lightning.datamodules.crops import CropDataModule
    from phalp_lightning.datamodules.synthetic import write_synthetic_crops, write_synthetic_tracklets
    from phalp_lightning.datamodules.tracklets import TrackletDataModule

    data = args.data or Path(tempfile.mkdtemp(prefix="loader_benchmark_"))
    if not (data / "crops" / "manifest.json").is_file():
        write_synthetic_crops(data / "crops", num_train=256, num_val=16, crop_size=128, shard_size=32)
    if not (data / "tracklets" / "manifest.json").is_file():
        write_synthetic_tracklets(data / "tracklets", num_train_tracks=32, num_val_tracks=4, track_length=64, window=32, shard_size=32)

    results = []
    for workers in args.workers:
        crops = CropDataModule(str(data / "crops" / "train-*.tar"), None, batch_size=16, num_workers=workers,
                               crop_size=args.crop_size, epoch_length=16 * (args.batches + 3), shuffle_buffer=64)
        results.append({"loader": f"CropDataModule ({args.crop_size} px)", "workers": workers, **_time_loader(crops, args.batches)})
        tracklets = TrackletDataModule(str(data / "tracklets" / "train-*.tar"), None, batch_size=64, num_workers=workers,
                                       epoch_length=64 * (args.batches + 3), shuffle_buffer=256)
        results.append({"loader": "TrackletDataModule (T=32)", "workers": workers, **_time_loader(tracklets, args.batches)})
        for row in results[-2:]:
            print(f"{row['loader']:<30} workers={row['workers']}  {row['samples_per_s']:>8.1f} samples/s")

    report = {
        "command": "python experiments/loader_benchmark/run.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch_threads_main": torch.get_num_threads()},
        "note": "cores are shared with other jobs; compare rows of one run only",
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "results.json", json.dumps(report, indent=2))
    lines = ["| loader | workers | samples/s |", "|---|---|---|"]
    lines += [f"| {row['loader']} | {row['workers']} | {row['samples_per_s']} |" for row in results]
    lines += ["", "![samples/s per loader and worker count](results.png)", *GPU_NOTE]
    atomic_write_text(args.out / "results.md", f"Command: `{report['command'].strip()}` ({report['machine']['cpus']} CPUs, shared; torch threads in the main process: {torch.get_num_threads()})\n\n" + "\n".join(lines) + "\n")
    plot(report, args.out / "results.png")
    return report


if __name__ == "__main__":
    main()
