"""Keep BatchNorm layers in eval mode while training (frozen running statistics).

Why: with DDP every rank normalises with the statistics of its own part of the batch, so B/2 per
rank on 2 ranks is not the same computation as B on one process. On GPUs ``trainer.sync_batchnorm``
fixes that (``configs/trainer/ddp.yaml`` turns it on); torch's SyncBatchNorm runs on GPUs only, so
on CPU (and for fine-tuning from pretrained weights with small per-rank batches, where batch
statistics are noisy anyway) the statistics are frozen instead: normalisation uses the running
mean/variance, the affine weight and bias still train. Both make N ranks x B/N samples compute
what one process with B samples does.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from torch import nn


def freeze_batchnorm(module: nn.Module) -> int:
    """Put every BatchNorm layer of ``module`` in eval mode; returns how many there are."""
    layers = [layer for layer in module.modules() if isinstance(layer, nn.modules.batchnorm._BatchNorm)]
    for layer in layers:
        layer.eval()
    return len(layers)


class FreezeBatchNorm(L.Callback):
    """Lightning callback: BatchNorm layers stay in eval mode during training.

    Lightning switches the whole model to train mode at the start of fitting and after every
    validation loop, so the layers are frozen again before every training batch.
    """

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        freeze_batchnorm(pl_module)
