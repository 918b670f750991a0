"""FreezeBatchNorm: BatchNorm layers normalise with their running statistics while the rest trains."""

from __future__ import annotations

import torch


def test_freeze_batchnorm_keeps_running_stats_and_trains_affine():
    from phalp_lightning.models.batchnorm import FreezeBatchNorm

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Dropout(0.5))
    model.train()
    FreezeBatchNorm().on_train_batch_start(None, model, None, 0)  # type: ignore[arg-type]
    assert not model[1].training and model[0].training and model[2].training
    before = model[1].running_mean.clone()
    images = torch.randn(2, 3, 8, 8) * 5 + 3
    model[1](model[0](images)).sum().backward()
    assert torch.equal(model[1].running_mean, before), "frozen BatchNorm must not update its running statistics"
    assert model[1].weight.grad is not None and model[1].weight.grad.abs().sum() > 0
    # Normalisation uses the running statistics (here mean 0, var 1), not the batch's.
    features = model[0](images)
    expected = (features - before[None, :, None, None]) / torch.sqrt(torch.ones(4) + model[1].eps)[None, :, None, None]
    assert torch.allclose(model[1](features), expected * model[1].weight[None, :, None, None] + model[1].bias[None, :, None, None], atol=1e-5)
