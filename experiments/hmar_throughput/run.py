"""HMAR inference throughput (crops/s) on this machine, and the roofline figure expected on an H100.

What is timed is what the predict pipeline runs per person crop (``TrackingSystem.hmar_features``):
``HMAR.forward`` on (B, 4, S, S) crops plus ``encode_appearance`` of the UV map, under
``torch.inference_mode``, for batch sizes 1, 8, 32 in fp32, fp32 + channels_last and bf16 autocast
(+ channels_last; on CPUs with AVX512-BF16/AMX). All settings are measured side by side in one run
on the same network. FLOPs per crop are counted with ``torch.utils.flop_counter.FlopCounterMode``.
The network is untrained (weights do not change the cost) and built on the generated body model.

    python experiments/hmar_throughput/run.py            # 256 px crops (the official size)
    python experiments/hmar_throughput/run.py --quick    # 128 px, batches 1 and 8, 1 repetition

Writes results.json and results.md next to this file (or --out) and prints the table.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from phalp_lightning.utils.benchmarking import write_results

# H100 SXM figures used for the roofline (dense, no sparsity).
H100_BF16_FLOPS = 990e12
H100_FP32_FLOPS = 67e12  # non-tensor-core fp32
H100_HBM_BYTES_PER_S = 3.35e12
KERNEL_LAUNCH_S = 5e-6  # order of one kernel's launch + tail latency at batch 1


def build_hmar(crop_size: int, assets_dir: str | None) -> torch.nn.Module:
    from phalp_lightning.models.components.hmar import HMAR

    if assets_dir is None:
        from phalp_lightning.datamodules.synthetic.mannequin import write_synthetic_assets

        assets_dir = tempfile.mkdtemp(prefix="hmar_throughput_assets_")
        write_synthetic_assets(Path(assets_dir))
    torch.manual_seed(0)
    return HMAR(assets_dir=assets_dir, img_size=crop_size).eval()


def per_crop(hmar: torch.nn.Module, crops: torch.Tensor) -> torch.Tensor:
    """What the predict pipeline computes per crop: the forward and the appearance code."""
    out = hmar(crops)
    return hmar.encode_appearance(out["uv_vector"])


def count_flops(hmar: torch.nn.Module, crop_size: int) -> tuple[float, int]:
    """(FLOPs per crop, leaf-module calls per forward = a lower bound on GPU kernel launches)."""
    from torch.utils.flop_counter import FlopCounterMode

    calls = 0

    def hook(*_):
        nonlocal calls
        calls += 1

    handles = [m.register_forward_hook(hook) for m in hmar.modules() if not list(m.children())]
    crops = torch.randn(2, 4, crop_size, crop_size)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        per_crop(hmar, crops)
    for handle in handles:
        handle.remove()
    return counter.get_total_flops() / 2, calls


def time_setting(hmar: torch.nn.Module, crop_size: int, batch: int, mode: str, repeats: int) -> float:
    """Median seconds per batch (after one warm-up batch).

    ``bf16 weights channels_last`` is what ``system.precision=bf16 system.channels_last=true`` runs
    (TrackingSystem converts HMAR's convolutions to bfloat16); ``bf16 autocast channels_last`` keeps
    float32 weights under ``torch.autocast``.
    """
    import copy

    from phalp_lightning.detection.base import NoDetector
    from phalp_lightning.models.tracking_system import TrackingSystem

    crops = torch.randn(batch, 4, crop_size, crop_size)
    model = hmar.to(memory_format=torch.contiguous_format)
    if mode == "bf16 weights channels_last":
        model = TrackingSystem(NoDetector(), copy.deepcopy(hmar), precision="bf16", channels_last=True).hmar
        crops = crops.to(torch.bfloat16)
    elif mode != "fp32":
        model = hmar.to(memory_format=torch.channels_last)
    if mode != "fp32":
        crops = crops.contiguous(memory_format=torch.channels_last)
    times = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16 autocast channels_last"):
        for index in range(repeats + 1):
            start = time.perf_counter()
            per_crop(model, crops)
            if index:
                times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def bf16_supported() -> bool:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


def gpu_expectation(flops_per_crop: float, params_bytes: float, launches: int, crop_size: int) -> dict:
    """Roofline crops/s on an H100: compute bound at large batch, launch/weight bound at batch 1."""
    input_bytes = 4 * crop_size * crop_size * 2  # bf16 crop
    return {
        "bf16_peak_crops_per_s": H100_BF16_FLOPS / flops_per_crop,
        "bf16_expected_crops_per_s_at_40pct_mfu": 0.4 * H100_BF16_FLOPS / flops_per_crop,
        "fp32_peak_crops_per_s": H100_FP32_FLOPS / flops_per_crop,
        "batch1_latency_floor_ms": 1e3 * max(launches * KERNEL_LAUNCH_S, params_bytes / H100_HBM_BYTES_PER_S),
        "weight_read_ms_per_batch": 1e3 * params_bytes / H100_HBM_BYTES_PER_S,
        "input_bytes_per_crop": input_bytes,
    }


def markdown(result: dict) -> str:
    gpu = result["gpu_expectation"]
    lines = [
        f"# HMAR throughput ({result['crop_size']} px crops, forward + appearance code, inference_mode)",
        "",
        f"Command: `{result['command']}`. CPU: {result['cpu']} ({result['threads']} torch threads, machine shared with "
        "other jobs: absolute figures vary by tens of percent; compare rows of this run only).",
        "",
        "| batch | " + " | ".join(result["modes"]) + " |",
        "|---:|" + "---:|" * len(result["modes"]),
    ]
    for batch in result["batches"]:
        cells = [f"{result['crops_per_s'][mode][str(batch)]:.2f}" for mode in result["modes"]]
        lines.append(f"| {batch} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "crops/s (median of the timed repetitions).",
        "",
        f"FLOPs per crop (FlopCounterMode, at {result['crop_size']} px): {result['gflops_per_crop']:.2f} GFLOP "
        f"({result['gflops_per_crop_256']:.2f} GFLOP at 256 px); parameters {result['parameters_m']:.1f} M; "
        f"{result['leaf_module_calls']} leaf-module calls per forward.",
        "",
        "## Expected on one H100 (roofline, 256 px)",
        "",
        f"- bf16 tensor cores, 990 TFLOP/s dense: at most {gpu['bf16_peak_crops_per_s']:.0f} crops/s; "
        f"at a typical 40 % of peak for a ResNet-50-style network ~{gpu['bf16_expected_crops_per_s_at_40pct_mfu']:.0f} crops/s "
        "(batch >= 32, channels_last, bf16 autocast).",
        f"- fp32 without tensor cores (67 TFLOP/s): at most {gpu['fp32_peak_crops_per_s']:.0f} crops/s (TF32 matmuls are faster).",
        f"- batch 1 is latency bound: ~{result['leaf_module_calls']} kernels x ~5 us = {gpu['batch1_latency_floor_ms']:.2f} ms "
        f"per forward (weights read once: {gpu['weight_read_ms_per_batch']:.3f} ms at 3.35 TB/s), i.e. <= "
        f"{1e3 / gpu['batch1_latency_floor_ms']:.0f} crops/s at batch 1 without CUDA graphs / torch.compile.",
        f"- input: {gpu['input_bytes_per_crop'] / 1e3:.0f} kB per crop in bf16 -- negligible against HBM bandwidth.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crop-size", type=int, default=256)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions per setting (after a warm-up)")
    parser.add_argument("--quick", action="store_true", help="128 px, batches 1 and 8, 1 repetition")
    parser.add_argument("--assets-dir", default=os.environ.get("PHALP_ASSETS"), help="body-model assets (default: generate)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    if args.quick:
        args.crop_size, args.batches, args.repeats = 128, [1, 8], 1
    if args.threads:
        torch.set_num_threads(args.threads)
    hmar = build_hmar(args.crop_size, args.assets_dir)
    flops, calls = count_flops(hmar, args.crop_size)
    flops_256 = flops if args.crop_size == 256 else count_flops(build_hmar(256, args.assets_dir), 256)[0]
    parameters = sum(p.numel() for p in hmar.parameters())
    modes = ["fp32", "fp32 channels_last"] + (["bf16 autocast channels_last", "bf16 weights channels_last"] if bf16_supported() else [])
    crops_per_s: dict[str, dict[str, float]] = {mode: {} for mode in modes}
    for batch in args.batches:
        for mode in modes:
            seconds = time_setting(hmar, args.crop_size, batch, mode, args.repeats)
            crops_per_s[mode][str(batch)] = batch / seconds
            print(f"batch {batch:>3} {mode:<20} {batch / seconds:8.2f} crops/s", flush=True)
    result = {
        "command": "python experiments/hmar_throughput/run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "crop_size": args.crop_size,
        "batches": args.batches,
        "modes": modes,
        "crops_per_s": crops_per_s,
        "gflops_per_crop": flops / 1e9,
        "gflops_per_crop_256": flops_256 / 1e9,
        "parameters_m": parameters / 1e6,
        "leaf_module_calls": calls,
        "gpu_expectation": gpu_expectation(flops_256, parameters * 2, calls, 256),
    }
    text = markdown(result)
    write_results(args.out, result, text)
    print(text)
    return result


if __name__ == "__main__":
    main()
