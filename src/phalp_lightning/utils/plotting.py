"""Saving figures: matplotlib (the ``plot`` extra) with the file-only Agg backend, written atomically.

Experiments call :func:`save_curves` / :func:`save_bars` to put a PNG of their curves or table next
to their JSON; the other plotting modules (:mod:`phalp_lightning.evaluation.plots`,
:mod:`phalp_lightning.tracking.plots`) draw on axes and save through :func:`save_figure`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from phalp_lightning.errors import UserError
from phalp_lightning.utils.io import atomic_output


class PlottingUnavailableError(UserError, ImportError):
    """matplotlib is not installed."""


def pyplot() -> Any:
    """``matplotlib.pyplot``; a script without a display gets the Agg backend (notebooks keep theirs).

    Raises:
        PlottingUnavailableError: matplotlib is missing (install the ``plot`` extra).
    """
    try:
        import matplotlib
    except ImportError:
        raise PlottingUnavailableError("matplotlib is not installed (plots were asked for)",
                                       'pip install -e ".[plot]" (or pip install matplotlib)') from None
    # Inside Jupyter the kernel sets MPLBACKEND (inline figures): keep it; scripts only write files.
    if "MPLBACKEND" not in os.environ:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure: Any, path: str | os.PathLike[str], dpi: int = 110, close: bool = True) -> Path:
    """Write ``figure`` to ``path`` (format from the suffix, e.g. ``.png``) atomically; close it."""
    path = Path(path)
    with atomic_output(path) as temporary:
        figure.savefig(temporary, dpi=dpi, bbox_inches="tight")
    if close:
        pyplot().close(figure)
    return path


def save_curves(path: str | os.PathLike[str], x: Sequence[float], series: Mapping[str, Sequence[float]],
                xlabel: str, ylabel: str, title: str = "", log_y: bool = False,
                x_by_series: Mapping[str, Sequence[float]] | None = None) -> Path:
    """One line per entry of ``series`` against ``x`` (or its own x in ``x_by_series``), saved to ``path``."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    for name, values in series.items():
        xs = list((x_by_series or {}).get(name, x))
        axis.plot(xs, list(values), marker="o" if len(xs) <= 40 else None, label=name)
    axis.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if log_y:
        axis.set_yscale("log")
    axis.grid(alpha=0.3)
    if len(series) > 1:
        axis.legend()
    return save_figure(figure, path)


def bar_axes(axis: Any, categories: Sequence[str], series: Mapping[str, Sequence[float]],
             ylabel: str = "", title: str = "", value_format: str = "{:.3g}") -> Any:
    """Grouped bars on ``axis``: one group per category, one bar per series, values written on top."""
    import numpy as np

    positions = np.arange(len(categories))
    width = 0.8 / max(len(series), 1)
    for number, (name, values) in enumerate(series.items()):
        offsets = positions - 0.4 + width * (number + 0.5)
        bars = axis.bar(offsets, [float(v) for v in values], width, label=name)
        axis.bar_label(bars, labels=[value_format.format(float(v)) for v in values], fontsize=7, padding=1)
    axis.set_xticks(positions, list(categories), rotation=20 if max(map(len, categories), default=0) > 8 else 0,
                    ha="right" if max(map(len, categories), default=0) > 8 else "center")
    axis.set(ylabel=ylabel, title=title)
    axis.grid(axis="y", alpha=0.3)
    if len(series) > 1:
        axis.legend(fontsize=8)
    return axis


def save_bars(path: str | os.PathLike[str], categories: Sequence[str], series: Mapping[str, Sequence[float]],
              ylabel: str = "", title: str = "", value_format: str = "{:.3g}", log_y: bool = False) -> Path:
    """A grouped bar chart (a table's rows as groups, its columns as bars), saved to ``path``."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(max(5.0, 1.1 * len(categories) * max(len(series), 1) ** 0.5 + 2), 4))
    bar_axes(axis, categories, series, ylabel=ylabel, title=title, value_format=value_format)
    if log_y:
        axis.set_yscale("log")
    return save_figure(figure, path)
