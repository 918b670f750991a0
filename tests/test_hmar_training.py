"""HMARModule: losses, metrics, a fast_dev_run fit, and checkpoints that carry the network config."""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch
from helpers import synthetic_data
from helpers.fake_crops import FakeCropDataModule, fake_crop_batch

synthetic_crop_shards = synthetic_data.synthetic_crop_shards


def test_losses_vanish_without_supervision_and_keep_the_graph():
    from phalp_lightning.models import losses

    pred = torch.randn(2, 44, 3, requires_grad=True)
    target = torch.zeros(2, 44, 4)
    loss = losses.keypoint_3d_loss(pred, target, torch.zeros(2))
    assert loss.item() == 0.0
    loss.backward()
    assert pred.grad is not None and torch.equal(pred.grad, torch.zeros_like(pred))
    camera = losses.camera_loss(torch.ones(2, 3), torch.zeros(2, 3), torch.tensor([1.0, 0.0]))
    assert camera.item() == pytest.approx(1.0)


def test_keypoint_2d_loss_weights_by_confidence():
    from phalp_lightning.models.losses import keypoint_2d_loss

    target = torch.zeros(1, 2, 3)
    target[0, 0, 2] = 1.0  # only joint 0 is visible
    pred = torch.tensor([[[0.1, 0.0], [5.0, 5.0]]])
    assert keypoint_2d_loss(pred, target).item() == pytest.approx(0.1)


def test_mpjpe_and_pa_mpjpe():
    from phalp_lightning.models.keypoint_metrics import MPJPE, PCK2D
    from phalp_lightning.utils.geometry import axis_angle_to_rotmat

    torch.manual_seed(0)
    gt = torch.randn(2, 44, 3)
    target = torch.cat([gt, torch.ones(2, 44, 1)], -1)
    shifted = gt + torch.tensor([0.01, 0.0, 0.0])  # 10 mm off, except after pelvis alignment
    mpjpe = MPJPE()
    mpjpe.update(shifted, target, torch.ones(2))
    assert mpjpe.compute().item() == pytest.approx(0.0, abs=1e-3)
    rotation = axis_angle_to_rotmat(torch.tensor([0.3, -0.5, 0.2]))
    similar = 1.7 * gt @ rotation.T + 0.4
    pa = MPJPE(procrustes=True)
    pa.update(similar, target, torch.ones(2))
    assert pa.compute().item() == pytest.approx(0.0, abs=1e-2)
    plain = MPJPE()
    plain.update(similar, target, torch.ones(2))
    assert plain.compute().item() > 100.0
    pck = PCK2D(threshold=0.05)
    pck.update(torch.zeros(1, 2, 2), torch.tensor([[[0.01, 0.0, 1.0], [0.2, 0.0, 1.0]]]))
    assert pck.compute().item() == pytest.approx(0.5)
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert math.isnan(MPJPE().compute().item())  # nothing seen: NaN, not 0


def test_unknown_loss_name_is_refused(synthetic_assets):
    from phalp_lightning.models.hmar_module import HMARModule

    with pytest.raises(ValueError, match="keypoint_2d"):
        HMARModule({"img_size": 64}, loss_weights={"keypoint_2d": 1.0}, assets_dir=synthetic_assets)


def test_batch_missing_a_key_names_it(synthetic_assets):
    from phalp_lightning.models.hmar_module import HMARModule

    module = HMARModule({"img_size": 64}, assets_dir=synthetic_assets)
    batch = fake_crop_batch(2, 64)
    del batch["has_smpl"]
    with pytest.raises(KeyError, match="has_smpl"):
        module.training_step(batch, 0)


def test_fast_dev_run_fit_and_checkpoint_round_trip(tmp_path, synthetic_assets):
    from phalp_lightning.models.components.hmar import HMAR
    from phalp_lightning.models.hmar_module import HMARModule, load_hmar

    torch.manual_seed(0)
    scheduler = partial(torch.optim.lr_scheduler.StepLR, step_size=1)
    module = HMARModule(
        HMAR(assets_dir=synthetic_assets, img_size=64),
        optimizer=partial(torch.optim.AdamW, lr=1e-4),
        scheduler=scheduler,
        assets_dir=synthetic_assets,
    )
    before = module.net.smpl_head.deccam.weight.detach().clone()
    trainer = L.Trainer(
        fast_dev_run=True,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=FakeCropDataModule(size=2, img_size=64, batch_size=2))
    assert not torch.equal(before, module.net.smpl_head.deccam.weight)
    metrics = trainer.callback_metrics
    assert {"train/loss", "val/loss", "val/mpjpe", "val/pa_mpjpe", "val/pck"} <= set(metrics)
    assert torch.isfinite(metrics["val/mpjpe"])

    path = tmp_path / "trained.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["hmar_config"]["img_size"] == 64
    loaded = load_hmar(path, assets_dir=synthetic_assets)
    assert not loaded.training and loaded.img_size == 64
    for key, value in module.net.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    rebuilt = HMARModule.load_from_checkpoint(path, map_location="cpu", assets_dir=synthetic_assets)
    assert rebuilt.net.img_size == 64 and rebuilt.loss_weights == module.loss_weights


def test_train_pipeline_runs_model_hmar_fast_dev_run(compose_cfg, assets_env, synthetic_crop_shards):
    """``python train.py model=hmar debug=fdr`` on real synthetic crop shards through CropDataModule."""
    from phalp_lightning.pipelines.train import run

    folder = Path(synthetic_crop_shards["train"]["shards"][0]).parent
    train_pattern, val_pattern = folder / "train-*.tar", folder / "val-*.tar"
    overrides = [
        "model=hmar",
        "debug=fdr",
        "trainer=cpu",
        "callbacks=none",
        "data.crop_size=64",
        "data.batch_size=2",
    ]
    cfg = compose_cfg(
        "train", [*overrides, f"data.train_shards={train_pattern}", f"data.val_shards={val_pattern}"]
    )
    assert cfg.model.net.img_size == 64  # follows data.crop_size
    metrics = run(cfg)
    assert {"train/loss", "val/loss", "val/mpjpe", "val/pa_mpjpe", "val/pck"} <= set(metrics)
    assert all(math.isfinite(value) for value in metrics.values())
