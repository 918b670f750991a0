"""Every config group option composes, and the primary configs resolve."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
TRAIN_GROUPS = ["model", "data", "trainer", "logger", "callbacks", "debug", "experiment"]


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONFIG_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("group", TRAIN_GROUPS)
def test_every_train_group_option_composes(compose_cfg, group):
    for option in options(group):
        cfg = compose_cfg("train", [f"{group}={option}"])
        OmegaConf.resolve(cfg)
        assert cfg.model._target_.endswith("Module")
        assert cfg.data._target_.endswith("DataModule")


def test_model_choice_carries_its_data(compose_cfg):
    assert compose_cfg("train", ["model=hmar"]).data._target_.endswith("CropDataModule")
    assert compose_cfg("train", ["model=pose_transformer"]).data._target_.endswith("TrackletDataModule")
    explicit = compose_cfg("train", ["model=pose_transformer", "data=hmar"])
    assert explicit.data._target_.endswith("CropDataModule")


def test_debug_fdr_runs_one_batch_without_logger_or_callbacks(compose_cfg):
    cfg = compose_cfg("train", ["debug=fdr"])
    assert cfg.trainer.limit_train_batches == 1 and cfg.trainer.limit_val_batches == 1 and cfg.trainer.max_steps == 1
    assert not cfg.logger and not cfg.callbacks


@pytest.mark.parametrize("preset", options("debug"))
@pytest.mark.parametrize("order", ["logger first", "debug first"])
def test_debug_presets_keep_an_explicit_logger_and_callbacks(compose_cfg, preset, order):
    chosen = ["logger=wandb", "callbacks=default"]
    cfg = compose_cfg("train", [*chosen, f"debug={preset}"] if order == "logger first" else [f"debug={preset}", *chosen])
    assert list(cfg.logger) == ["wandb"] and "model_checkpoint" in cfg.callbacks
    # and Lightning would not silence it: fast_dev_run replaces every logger with a dummy
    assert not cfg.trainer.get("fast_dev_run", False)


def test_predict_renders_a_boxes_video_by_default(compose_cfg):
    # A user running predict.py video=... expects a video to look at, as the demo makes.
    cfg = compose_cfg("predict", ["video=x.mp4"])
    assert cfg.render.enabled and cfg.render.writer.mode == "boxes"
    assert not compose_cfg("predict", ["video=x.mp4", "render=none"]).render.enabled


@pytest.mark.parametrize("group", ["detector", "tracker", "render"])
def test_every_predict_group_option_composes(compose_cfg, group):
    for option in options(group):
        cfg = compose_cfg("predict", [f"{group}={option}", "video=x.mp4"])
        OmegaConf.resolve(cfg)
        assert cfg[group] is not None


def test_predict_requires_a_video(compose_cfg):
    cfg = compose_cfg("predict", [])
    assert OmegaConf.is_missing(cfg, "video")


def test_trainer_and_callbacks_instantiate(compose_cfg):
    import hydra

    from phalp_lightning.utils.instantiate import instantiate_callbacks, instantiate_loggers

    cfg = compose_cfg("train", ["trainer=cpu"])
    callbacks = instantiate_callbacks(cfg.callbacks)
    loggers = instantiate_loggers(cfg.logger)
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers, enable_progress_bar=False)
    assert trainer.max_epochs == cfg.trainer.max_epochs
    assert {type(c).__name__ for c in callbacks} == {"ModelCheckpoint", "LearningRateMonitor"}
    assert [type(logger).__name__ for logger in loggers] == ["CSVLogger"]
