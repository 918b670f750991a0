"""Compose a primary config outside ``@hydra.main``, as a real run of the entry point would see it."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig


def compose_run_config(
    config_dir: str | os.PathLike[str],
    config_name: str,
    overrides: list[str],
    output_dir: str | os.PathLike[str],
    working_dir: str | os.PathLike[str] | None = None,
) -> DictConfig:
    """Compose ``config_name`` with ``overrides``; ``${hydra:...}`` interpolations resolve as in a run.

    Tests, experiments and notebooks use this to call ``pipelines.*.run(cfg)`` directly.

    Args:
        config_dir: the project's ``configs/`` folder.
        config_name: "train", "predict" or "evaluate".
        overrides: command-line style overrides.
        output_dir: what ``${hydra:runtime.output_dir}`` (and so ``paths.output_dir``) resolves to.
        working_dir: what ``${hydra:runtime.cwd}`` resolves to (default: the parent of ``config_dir``).

    Returns:
        The config without its ``hydra`` node, as a ``@hydra.main`` task receives it.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    config_dir = Path(config_dir).resolve()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.runtime.cwd = str(working_dir if working_dir is not None else config_dir.parent)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg
