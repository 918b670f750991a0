"""Logging helpers: a plain named logger, one console line per record, and a wrapper that always closes W&B runs.

The logger is not rank-aware: in a multi-process run every rank logs. Messages that should appear
once go through ``lightning.pytorch.utilities.rank_zero_info`` / ``rank_zero_warn`` (or a function
decorated with ``rank_zero_only``).

One handler per line: the ``lightning`` package attaches its own console handler (``INFO: ...``) to
its logger on import and still lets records propagate, so under Hydra, whose root handler prints
every record too, each Lightning line appeared twice. :func:`one_handler_per_line` removes Lightning's
console handlers when the root logger has one, and drops Lightning's advertising tips.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


# Loggers on which Lightning installs console handlers of its own, and the one its rank-zero messages use.
LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")
LIGHTNING_RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


class DropLightningTips(logging.Filter):
    """Drops Lightning's "💡 Tip: ... try installing ..." advertisements (they are not about the run)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).lstrip().startswith("💡 Tip")


def one_handler_per_line() -> None:
    """Print each log record once: Lightning's own console handlers go when the root logger has a handler.

    Without a root handler (a notebook, a plain script) Lightning's handler stays, being then the only
    one. Idempotent; call it after Lightning is imported (the pipelines call it at start).
    """
    root_has_handler = bool(logging.getLogger().handlers)
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if not root_has_handler:
            continue
        for handler in list(logger.handlers):
            # Only console handlers: a file handler someone added on purpose stays.
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        logger.propagate = True
    for name in LIGHTNING_RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, DropLightningTips) for existing in logger.filters):
            logger.addFilter(DropLightningTips())


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)``: a standard logger, one per module, that logs on every rank."""
    return logging.getLogger(name)


def close_wandb() -> None:
    """Finish an active W&B run, if wandb was imported at all (never imports it)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


def task_wrapper(function: F) -> F:
    """Run a pipeline with one console line per log record, and always close W&B (no hanging process)."""

    @functools.wraps(function)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        one_handler_per_line()
        try:
            return function(*args, **kwargs)
        finally:
            close_wandb()

    return wrapped  # type: ignore[return-value]
