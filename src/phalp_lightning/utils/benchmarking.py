"""What every benchmark under experiments/ shares: the best-of-N timer, the per-stage timer, the machine line, and writing
``results.json`` + ``results.md`` atomically.

Speed figures live in these benchmarks, never in timed tests (README, "Experiments and benchmarks"); a figure is
quoted with the command and the machine that produced it, which these helpers record the same way
in every experiment.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from phalp_lightning.utils.io import atomic_write_text


def best_of(function: Callable[[], object], repeats: int = 5, warmup: int = 0) -> float:
    """The shortest wall time (seconds) of ``repeats`` calls of ``function``, after ``warmup`` untimed calls.

    The minimum, not the mean: on a shared machine the other processes only ever add time.
    """
    if repeats < 1:
        raise ValueError(f"best_of: repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        function()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def time_stage(owner: type, name: str, times: MutableMapping[str, float], stage: str) -> None:
    """Wrap the method ``owner.name`` so that each call's wall time adds to ``times[stage]``.

    A GPU is synchronised before the clock stops, so the time is the work's, not its launch's.
    """
    import torch

    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[stage] = times.get(stage, 0.0) + time.perf_counter() - start

    setattr(owner, name, wrapper)


def machine() -> dict[str, Any]:
    """The CPU, its count, torch's threads, the 1-minute load average and the versions, for a results file."""
    import torch

    return {
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
    }


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """``python <script> <arguments>``: the command that reproduces a run (``argv`` None: this process's)."""
    return " ".join(["python", script, *(sys.argv[1:] if argv is None else argv)])


def write_results(out_dir: str | os.PathLike[str], results: Mapping[str, Any], markdown: str) -> tuple[Path, Path]:
    """Write ``results.json`` and ``results.md`` under ``out_dir`` (created), each atomically.

    Returns:
        (json path, markdown path).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    markdown_path = atomic_write_text(out / "results.md", markdown if markdown.endswith("\n") else markdown + "\n")
    return json_path, markdown_path
