"""Shared fixtures: the generated body-model assets and composed, tiny Hydra configs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = PROJECT_ROOT / "configs"


@pytest.fixture(scope="session")
def synthetic_assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the generated body-model asset set (written once per test session)."""
    from phalp_lightning.assets.synthetic import write_synthetic_assets

    root = tmp_path_factory.mktemp("assets")
    write_synthetic_assets(root)
    return root


@pytest.fixture()
def assets_env(synthetic_assets: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point PHALP_ASSETS at the generated assets for one test."""
    monkeypatch.setenv("PHALP_ASSETS", str(synthetic_assets))
    return synthetic_assets


def compose_config(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose a primary config with the Hydra runtime fields a real run would have."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.runtime.cwd = str(PROJECT_ROOT)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    # A real @hydra.main task receives the config without its hydra node.
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


@pytest.fixture()
def compose_cfg(tmp_path: Path) -> Iterator:
    """``compose_cfg("train", ["model=hmar"])`` -> composed config with outputs under tmp_path."""

    def _compose(config_name: str, overrides: list[str] | None = None) -> DictConfig:
        return compose_config(config_name, list(overrides or []), tmp_path)

    yield _compose
    GlobalHydra.instance().clear()
