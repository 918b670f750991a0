"""Send evaluation results and sample frames to Lightning loggers (W&B, CSV, anything else).

wandb is never imported here at module level: only W&B loggers the user configured touch it.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from phalp_lightning.evaluation.evaluator import EvaluationResult
from phalp_lightning.utils.io import atomic_output, atomic_write_text
from phalp_lightning.utils.logging import get_logger

log = get_logger(__name__)

_OFFLINE_MODES = ("offline", "dryrun")


def wandb_offline(offline: bool | None = None) -> bool:
    """Whether a W&B run should be offline.

    Args:
        offline: True / False force the mode; None = offline unless the environment variable
            ``WANDB_MODE`` is set to another mode (``online``, ``disabled``).
    """
    if offline is not None:
        return bool(offline)
    mode = os.environ.get("WANDB_MODE")
    return mode is None or mode.strip().lower() in _OFFLINE_MODES


def make_wandb_logger(project: str = "phalp_lightning", name: str | None = None, save_dir: str = ".",
                      offline: bool | None = None, log_model: bool | str = False,
                      tags: Sequence[str] | None = None, group: str | None = None, **kwargs: Any):
    """A ``lightning.pytorch.loggers.WandbLogger`` that is offline unless asked otherwise.

    Offline runs are written under ``<save_dir>/wandb/offline-run-*`` and can be uploaded later with
    ``wandb sync <that folder>``.

    Args:
        project: W&B project.
        name: run name.
        save_dir: run folder (the Hydra output dir).
        offline: see :func:`wandb_offline`.
        log_model: upload checkpoints (needs online mode).
        tags: run tags.
        group: run group ("" or None: none).
        **kwargs: passed to ``wandb.init`` (entity, notes, ...).
    """
    from lightning.pytorch.loggers import WandbLogger

    Path(save_dir).mkdir(parents=True, exist_ok=True)
    return WandbLogger(project=project, name=name, save_dir=save_dir, offline=wandb_offline(offline),
                       log_model=log_model, tags=list(tags or []), group=group or None, **kwargs)


class ScalarCSVLogger:
    """Writes the scalars to ``<save_dir>/<name>/version_<n>/metrics.csv`` like Lightning's ``CSVLogger``.

    Same folder layout and columns (sorted metric keys and ``step``), without importing Lightning and
    torch: ``evaluate.py`` uses it for ``logger=csv`` so that writing one CSV row costs no heavy import.
    The file is written atomically on :meth:`save`.
    """

    def __init__(self, save_dir: str | os.PathLike[str], name: str = "lightning_logs", version: int | str | None = None,
                 **_: Any) -> None:
        self.save_dir = str(save_dir)
        self.name = name
        root = Path(self.save_dir) / name
        if version is None:
            existing = [int(folder.name.split("_", 1)[1]) for folder in root.glob("version_*")
                        if folder.is_dir() and folder.name.split("_", 1)[1].isdigit()]
            version = max(existing, default=-1) + 1
        self.version = version
        self._rows: list[dict[str, Any]] = []

    @property
    def log_dir(self) -> str:
        version = self.version if isinstance(self.version, str) else f"version_{self.version}"
        return str(Path(self.save_dir) / self.name / version)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self._rows.append({**metrics, "step": len(self._rows) if step is None else step})

    def log_hyperparams(self, *_: Any, **__: Any) -> None:
        """Hyperparameters are not recorded (the run folder holds the Hydra config)."""

    def save(self) -> None:
        import csv

        if not self._rows:
            return
        keys = sorted(set().union(*self._rows))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(self._rows)
        folder = Path(self.log_dir)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "metrics.csv", buffer.getvalue())

    def finalize(self, status: str) -> None:  # noqa: ARG002 - the logger interface
        self.save()


def _is_wandb(logger: Any) -> bool:
    # Compare by class name so that no lightning/wandb import is needed for other loggers.
    return any(cls.__name__ == "WandbLogger" for cls in type(logger).__mro__)


def log_evaluation(result: EvaluationResult, loggers: Sequence[Any], prefix: str = "eval/",
                   step: int | None = None) -> None:
    """Log overall metrics as scalars to every logger, and the per-sequence table to W&B loggers.

    Args:
        result: the evaluation result.
        loggers: Lightning loggers (``CSVLogger`` writes the scalars to its ``metrics.csv``).
        prefix: metric key prefix, e.g. ``eval/HOTA``.
        step: logging step.
    """
    scalars = result.scalars(prefix)
    for logger in loggers:
        logger.log_metrics(scalars, step=step)
        if _is_wandb(logger):
            columns = ["sequence", *result.columns]
            data = [[row.get(column, float("nan")) for column in columns] for row in result.rows()]
            logger.log_table(key=f"{prefix}per_sequence", columns=columns, data=data, step=step)
            logger.experiment.config.update({"eval_protocol": result.protocol.to_dict()}, allow_val_change=True)
        logger.save()


def log_frames(frames: Sequence[np.ndarray], loggers: Sequence[Any], key: str = "eval/frames",
               captions: Sequence[str] | None = None, output_dir: str | os.PathLike[str] | None = None,
               step: int | None = None) -> list[Path]:
    """Log sample rendered frames: images on W&B loggers, PNG files otherwise.

    Args:
        frames: images (H, W, 3) uint8 RGB (or float in [0, 1]).
        loggers: Lightning loggers; W&B loggers get ``log_image``.
        key: image key (also the folder name of the PNG files, "/" replaced by "_").
        captions: one caption per frame.
        output_dir: where PNGs are written when no W&B logger is given (None: not written).
        step: logging step.

    Returns:
        Paths of the PNG files written (empty when every frame went to W&B).
    """
    images = [_as_uint8_rgb(frame, index) for index, frame in enumerate(frames)]
    if captions is not None and len(captions) != len(images):
        raise ValueError(f"log_frames: {len(captions)} captions for {len(images)} frames")
    wandb_loggers = [logger for logger in loggers if _is_wandb(logger)]
    for logger in wandb_loggers:
        logger.log_image(key=key, images=images, step=step, **({"caption": list(captions)} if captions else {}))
    if wandb_loggers or output_dir is None:
        return []
    import cv2

    folder = Path(output_dir) / key.replace("/", "_")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index, image in enumerate(images):
        path = folder / f"{index:04d}.png"
        with atomic_output(path) as temporary:
            if not cv2.imwrite(str(temporary), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
                raise OSError(f"log_frames: could not write {temporary}")
        written.append(path)
    return written


def _as_uint8_rgb(frame: np.ndarray, index: int) -> np.ndarray:
    image = np.asarray(frame)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"log_frames: frame {index} must be (H, W, 3) RGB, got shape {image.shape}")
    if image.dtype != np.uint8:
        image = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)
