"""Shared fixtures: the generated body-model assets and composed, tiny Hydra configs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from phalp_lightning.utils.config import compose_run_config

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = PROJECT_ROOT / "configs"


@pytest.fixture(scope="session")
def synthetic_assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the generated body-model asset set (written once per test session)."""
    from phalp_lightning.datamodules.synthetic.mannequin import write_synthetic_assets

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
    return compose_run_config(CONFIG_DIR, config_name, overrides, output_dir, working_dir=PROJECT_ROOT)


@pytest.fixture()
def compose_cfg(tmp_path: Path) -> Iterator:
    """``compose_cfg("train", ["model=hmar"])`` -> composed config with outputs under tmp_path."""

    def _compose(config_name: str, overrides: list[str] | None = None) -> DictConfig:
        return compose_config(config_name, list(overrides or []), tmp_path)

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture(autouse=True)
def fresh_rendezvous_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's DDP run picks its own free port.

    Lightning's spawn launcher writes MASTER_PORT into the test process's environment; a later DDP
    test in the same xdist worker would reuse that port, which the other worker's processes may have
    taken in between (a gloo rank then aborts on the wrong rendezvous).
    """
    monkeypatch.delenv("MASTER_PORT", raising=False)
