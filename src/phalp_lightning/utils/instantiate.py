"""Build callbacks and loggers from config maps of ``_target_`` blocks."""

from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig


def _instantiate_map(config: DictConfig | None, kind: str) -> list[Any]:
    if not config:
        return []
    if not isinstance(config, DictConfig):
        raise TypeError(f"{kind} config must be a map of named _target_ blocks, got {type(config).__name__}")
    built = []
    for name, entry in config.items():
        if isinstance(entry, DictConfig) and "_target_" in entry:
            built.append(hydra.utils.instantiate(entry))
        elif entry is not None:
            raise ValueError(f"{kind}.{name} has no _target_; every {kind} entry must name a class")
    return built


def instantiate_callbacks(config: DictConfig | None) -> list[Any]:
    """Every ``_target_`` entry of ``cfg.callbacks``."""
    return _instantiate_map(config, "callbacks")


def instantiate_loggers(config: DictConfig | None) -> list[Any]:
    """Every ``_target_`` entry of ``cfg.logger``."""
    return _instantiate_map(config, "logger")
