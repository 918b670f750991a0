"""Logging helpers: a plain named logger and a wrapper that always closes W&B runs.

The logger is not rank-aware: in a multi-process run every rank logs. Messages that should appear
once go through ``lightning.pytorch.utilities.rank_zero_info`` / ``rank_zero_warn`` (or a function
decorated with ``rank_zero_only``).
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)``: a standard logger, one per module, that logs on every rank."""
    return logging.getLogger(name)


def close_wandb() -> None:
    """Finish an active W&B run, if wandb was imported at all (never imports it)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


def task_wrapper(function: F) -> F:
    """Run a pipeline and always close W&B, so a failed run does not leave a hanging process."""

    @functools.wraps(function)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        finally:
            close_wandb()

    return wrapped  # type: ignore[return-value]
