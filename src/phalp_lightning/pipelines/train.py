"""``python train.py``: instantiate datamodule, model, callbacks, loggers and trainer; fit; test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig, OmegaConf

from phalp_lightning.errors import UserError
from phalp_lightning.models.checkpoints import load_checkpoint
from phalp_lightning.utils.instantiate import instantiate_callbacks, instantiate_loggers
from phalp_lightning.utils.logging import get_logger, task_wrapper

log = get_logger(__name__)


def _resolve_ckpt_path(ckpt_path: str | None, output_dir: str, trusted: bool = False) -> str | None:
    """The checkpoint to resume from, read once with the safe reader so a bad file is named now."""
    if ckpt_path in (None, ""):
        return None
    if ckpt_path == "last":
        last = Path(output_dir) / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise UserError(f"ckpt_path=last: {last} does not exist", "run without ckpt_path to start fresh, or name a checkpoint file")
        ckpt_path = str(last)
    load_checkpoint(ckpt_path, map_location="cpu", trusted=trusted, what="checkpoint to resume (ckpt_path)")
    return ckpt_path


def _drop_unloggable_callbacks(callbacks: list[Any], loggers: list[Any]) -> list[Any]:
    """Without a logger a learning-rate monitor has nowhere to write (Lightning refuses it): drop it, saying so."""
    if loggers:
        return callbacks
    kept = [callback for callback in callbacks if not isinstance(callback, LearningRateMonitor)]
    if len(kept) != len(callbacks):
        log.warning("no logger configured (logger=none): the learning-rate monitor is dropped, learning rates are not logged")
    return kept


def _logging_off_reason() -> str:
    """Why this run has no logger: the debug preset's choice, or the user's ``logger=none``."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return "logger=none"
    hydra_cfg = HydraConfig.get()
    debug = hydra_cfg.runtime.choices.get("debug")
    chose_logger = any(str(item).lstrip("+~").startswith("logger=") for item in hydra_cfg.overrides.task)
    if debug not in (None, "null") and not chose_logger:
        return f"the debug={debug} preset turned it off"
    return "logger=none"


@task_wrapper
def run(cfg: DictConfig) -> dict[str, Any]:
    """Train (and optionally test) the configured model; returns the trainer's metrics as floats."""
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    # A missing released file stops here naming the download command; assets.download=true fetches it.
    from phalp_lightning.pipelines.assets.for_run import prepare_run_assets

    prepare_run_assets(cfg, groups=("3d",))
    log.info("Instantiating datamodule <%s>", cfg.data._target_)
    datamodule: L.LightningDataModule = hydra.utils.instantiate(cfg.data)
    log.info("Instantiating model <%s>", cfg.model._target_)
    model: L.LightningModule = hydra.utils.instantiate(cfg.model)
    loggers = instantiate_loggers(cfg.get("logger"))
    if not loggers:
        log.info("Logging is off (%s): no metrics are written; add logger=csv or logger=wandb to keep them",
                 _logging_off_reason())
    callbacks = _drop_unloggable_callbacks(instantiate_callbacks(cfg.get("callbacks")), loggers)
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]

    ckpt_path = _resolve_ckpt_path(cfg.get("ckpt_path"), cfg.paths.output_dir, bool(cfg.get("ckpt_trusted", False)))
    if cfg.get("train", True):
        # The file passed the safe reader above (or the user trusted it), so Lightning may unpickle
        # the same contents fully (its hyperparameters hold Hydra partials).
        trainer.fit(model=model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=False if ckpt_path else None)
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
    if cfg.get("test", False):
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
        trainer.test(model=model, datamodule=datamodule, ckpt_path=best)
        metrics.update({name: float(value) for name, value in trainer.callback_metrics.items()})
    return metrics
