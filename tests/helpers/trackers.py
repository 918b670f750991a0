"""Trackers built the way ``predict.py`` builds them: the composed predict config's ``tracker`` node."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from phalp_lightning.tracking.phalp_tracker import PHALPTracker, tracker_from_config

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


@functools.lru_cache(maxsize=32)
def tracker_config(overrides: tuple[str, ...] = ()) -> DictConfig:
    """The composed ``tracker`` node of ``predict`` with command-line style ``overrides`` (``tracker.x=...``)."""
    from hydra.core.global_hydra import GlobalHydra

    from phalp_lightning.utils.config import compose_run_config

    with tempfile.TemporaryDirectory() as out:
        cfg = compose_run_config(CONFIG_DIR, "predict", list(overrides), out)
    GlobalHydra.instance().clear()
    return cfg.tracker


def composed_tracker(*overrides: str, hmar_checkpoint: bool | None = False, **objects: Any) -> PHALPTracker:
    """``predict.py``'s tracker: no checkpoint by default (HMAR's 3D cues known untrained)."""
    return tracker_from_config(tracker_config(tuple(overrides)), hmar_checkpoint=hmar_checkpoint, **objects)
