"""DDP on CPU (2 processes, gloo): the same global batch gives the same parameters as 1 process,
and training resumes from ``last.ckpt`` with its step count and data stream.

Equivalence setup (documented in docs/scaling.md): one training shard read without a shuffle buffer,
so 1 process reads samples 0,1,2,... and rank r of 2 reads r, r+2, ... -- step k's global batch is
the same set of samples; dropout off; BatchNorm frozen (SyncBatchNorm is GPU-only); only loss terms
whose normaliser is the same on every rank for HMAR (per-rank weighted means average to the global
mean only then); the pose transformer normalises by the slot count over all ranks.
"""

from __future__ import annotations

import copy
from functools import partial
from pathlib import Path

import pytest
import torch
from helpers import synthetic_data

synthetic_crop_shards = synthetic_data.synthetic_crop_shards

pytestmark = pytest.mark.slow


def _fit(model, datamodule, root: Path, devices: int, max_steps: int, callbacks=(), find_unused_parameters: bool = False):
    """Fit on CPU with 1 process or ``devices`` spawned gloo processes (the trained weights come back)."""
    import lightning as L
    from lightning.pytorch.strategies import DDPStrategy

    strategy = DDPStrategy(start_method="spawn", find_unused_parameters=find_unused_parameters) if devices > 1 else "auto"
    trainer = L.Trainer(
        accelerator="cpu", devices=devices, strategy=strategy, max_steps=max_steps,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=root, limit_val_batches=0, num_sanity_val_steps=0, callbacks=list(callbacks),
    )
    trainer.fit(model, datamodule=datamodule)
    return trainer


def _assert_same_training(start: torch.nn.Module, single: torch.nn.Module, distributed: torch.nn.Module, atol: float) -> None:
    moved = max(
        (a - b).abs().max().item()
        for (name, a), (_, b) in zip(start.named_parameters(), single.named_parameters(), strict=True)
    )
    assert moved > 10 * atol, f"training barely moved the parameters ({moved}); the comparison would be vacuous"
    for (name, a), (_, b) in zip(single.state_dict().items(), distributed.state_dict().items(), strict=True):
        if a.is_floating_point():
            assert torch.allclose(a, b, atol=atol, rtol=1e-4), f"{name}: 1 process vs 2 ranks differ by {(a - b).abs().max().item()}"


def test_hmar_two_ranks_match_one_process_on_the_same_global_batch(synthetic_crop_shards, synthetic_assets, tmp_path):
    from phalp_lightning.datamodules.crops import CropDataModule

    from phalp_lightning.models.batchnorm import FreezeBatchNorm
    from phalp_lightning.models.components.hmar import HMAR
    from phalp_lightning.models.hmar_module import HMARModule

    torch.manual_seed(0)
    net = HMAR(assets_dir=synthetic_assets, img_size=64, smpl_dropout=0.0)
    # Terms with a per-sample normaliser that is equal on both ranks (see the module doc).
    weights = {"keypoints_2d": 0.0, "appearance": 0.0, "keypoints_3d": 1.0, "smpl_pose": 1.0, "smpl_betas": 0.001,
               "camera": 0.1, "uv_flow": 0.1}
    start = HMARModule(net, optimizer=partial(torch.optim.AdamW, lr=1e-4), loss_weights=weights, assets_dir=synthetic_assets)
    shard = sorted(Path(synthetic_crop_shards["train"]["pattern"]).parent.glob("train-*.tar"))[0]
    global_batch, steps = 4, 2

    def data(per_rank: int) -> CropDataModule:
        return CropDataModule(str(shard), None, batch_size=per_rank, crop_size=64, epoch_length=global_batch * steps, shuffle_buffer=0)

    single = copy.deepcopy(start)
    _fit(single, data(global_batch), tmp_path / "one", 1, steps, [FreezeBatchNorm()])
    distributed = copy.deepcopy(start)
    # The texture/appearance heads get no gradient from the chosen terms, hence find_unused_parameters.
    _fit(distributed, data(global_batch // 2), tmp_path / "two", 2, steps, [FreezeBatchNorm()], find_unused_parameters=True)
    _assert_same_training(start, single, distributed, atol=1e-5)


def _pose_transformer_module():
    """The configured (small) pose transformer with dropout and random masking off."""
    import hydra
    from omegaconf import OmegaConf

    from phalp_lightning.models.pose_transformer_module import PoseTransformerModule

    net_cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "configs" / "model" / "pose_transformer.yaml").net
    torch.manual_seed(0)
    net = hydra.utils.instantiate(net_cfg, dropout=0.0, drop_path=0.0, smpl_head_dropout=0.0)
    # mask_ratio / future_mask_prob 0: the masks are random per rank, so they would differ from 1 process.
    return PoseTransformerModule(net, optimizer=partial(torch.optim.AdamW, lr=1e-3), mask_ratio=0.0, future_mask_prob=0.0)


def _write_full_tracklets(folder: Path, count: int = 12, length: int = 8) -> Path:
    """One shard of tracklet windows with random gaps (so the ranks' valid-slot counts differ)."""
    import numpy as np
    from phalp_lightning.datamodules.shard_writing import ShardWriter, encode_tracklet_sample

    rng = np.random.default_rng(0)
    with ShardWriter(folder / "train", max_count=count) as writer:
        for index in range(count):
            start = int(rng.integers(0, 100))
            writer.write(encode_tracklet_sample(
                f"track{index}", rng.normal(size=(length, 229)).astype(np.float32),
                rng.normal(size=(length, 99)).astype(np.float32), np.arange(start, start + length),
                np.r_[True, rng.random(length - 1) > 0.4], {"dataset": "test", "sequence": "s", "track_id": index, "start_frame": start},
            ))
    return writer.shards[0]


def test_pose_transformer_two_ranks_match_one_process_on_the_same_global_batch(tmp_path):
    from phalp_lightning.datamodules.tracklets import TrackletDataModule

    start = _pose_transformer_module()
    shard = _write_full_tracklets(tmp_path / "shards")
    global_batch, steps = 4, 3

    def data(per_rank: int) -> TrackletDataModule:
        return TrackletDataModule(str(shard), None, batch_size=per_rank, epoch_length=global_batch * steps, shuffle_buffer=0)

    single = copy.deepcopy(start)
    _fit(single, data(global_batch), tmp_path / "one", 1, steps)
    distributed = copy.deepcopy(start)
    _fit(distributed, data(global_batch // 2), tmp_path / "two", 2, steps)
    _assert_same_training(start, single, distributed, atol=1e-5)


def _train_run(shard: Path, output_dir: Path, max_epochs: int, ckpt_path: str | None = None) -> Path:
    """``python train.py model=pose_transformer ...`` through pipelines.train.run; returns last.ckpt."""
    from conftest import compose_config

    from phalp_lightning.pipelines import train

    overrides = [
        "model=pose_transformer", f"data.train_shards={shard}", f"data.val_shards={shard}", "+trainer.limit_val_batches=0", "data.batch_size=4",
        "data.epoch_length=12", "data.shuffle_buffer=4", f"trainer.max_epochs={max_epochs}", "trainer.accelerator=cpu",
        "+trainer.enable_progress_bar=false", "model.mask_ratio=0.0", "model.future_mask_prob=0.0",
        "model.scheduler.lr_lambda.total=4", "+trainer.num_sanity_val_steps=0",
    ]
    if ckpt_path:
        overrides.append(f"ckpt_path={ckpt_path}")
    train.run(compose_config("train", overrides, output_dir))
    return output_dir / "checkpoints" / "last.ckpt"


def test_resume_from_last_continues_steps_and_data_stream(tmp_path):
    """1 epoch + resume for a 2nd == 2 epochs straight: same step count, same (epoch-reshuffled) data."""
    shard = _write_full_tracklets(tmp_path / "shards")
    straight = torch.load(_train_run(shard, tmp_path / "straight", 2), map_location="cpu", weights_only=False)
    _train_run(shard, tmp_path / "resumed", 1)
    first_epoch = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    resumed = torch.load(_train_run(shard, tmp_path / "resumed", 2, ckpt_path="last"), map_location="cpu", weights_only=False)
    assert first_epoch["global_step"] == 3
    assert resumed["global_step"] == straight["global_step"] == 6 and resumed["epoch"] == straight["epoch"]
    for name, value in straight["state_dict"].items():
        assert torch.allclose(value, resumed["state_dict"][name], atol=1e-6), f"{name} differs after resuming"
