"""PoseTransformerModule: masking helpers, losses, baselines, Hydra training runs and checkpoints."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from phalp_lightning.models.pose_transformer_module import (
    WarmupCosine,
    constant_velocity,
    future_token_mask,
    load_pose_transformer,
    pose_distance,
    random_token_mask,
    rotation_angle_deg,
)
from phalp_lightning.utils.geometry import axis_angle_to_rotmat
from phalp_lightning.utils.vectors import pose_vector

FAKE_DATA = {"_target_": "helpers.fake_tracklets.FakeTrackletDataModule", "num_train": 8, "num_val": 4, "window": 16, "batch_size": 4}


def test_random_mask_takes_floor_of_ratio_among_observed():
    observed = torch.zeros(3, 10, dtype=torch.bool)
    observed[0, :10] = True
    observed[1, 2:7] = True
    masked = random_token_mask(observed, 0.4, generator=torch.Generator().manual_seed(0))
    assert masked.sum(dim=1).tolist() == [4, 2, 0]
    assert not (masked & ~observed).any()


def test_future_mask_takes_the_last_observed_slots():
    observed = torch.tensor([[True, True, False, True, True, False], [True, True, True, True, False, False]])
    masked = future_token_mask(observed, torch.tensor([2, 0]))
    assert masked.tolist() == [[False, False, False, True, True, False], [False] * 6]


def test_warmup_cosine_schedule():
    schedule = WarmupCosine(warmup=2, total=10)
    assert [schedule(0), schedule(1)] == [0.5, 1.0]
    assert schedule(2) == pytest.approx(1.0)
    assert schedule(6) == pytest.approx(0.5)
    assert schedule(10) == pytest.approx(0.0) and schedule(50) == pytest.approx(0.0)


def test_constant_velocity_continues_a_steady_rotation():
    def pose_at(angle: float) -> torch.Tensor:
        axis_angle = torch.zeros(1, 24, 3)
        axis_angle[0, :, 2] = angle
        rotations = axis_angle_to_rotmat(axis_angle)
        return pose_vector(rotations[:, :1], rotations[:, 1:], torch.full((1, 10), angle), torch.tensor([[angle, 0.0, 40.0]]))

    predicted = constant_velocity(pose_at(0.1), pose_at(0.3), torch.tensor([2.0]))
    assert rotation_angle_deg(predicted, pose_at(0.7)).item() < 1e-3
    assert pose_distance(predicted, pose_at(0.7)).item() < 1e-8
    assert rotation_angle_deg(pose_at(0.3), pose_at(0.7)).item() == pytest.approx(math.degrees(0.4), rel=1e-4)


def _train_cfg(compose_cfg, overrides: list[str]):
    cfg = compose_cfg("train", ["model=pose_transformer", "trainer=cpu", *overrides])
    with open_dict(cfg):
        cfg.data = OmegaConf.create(FAKE_DATA)
        cfg.trainer.enable_progress_bar = False
        cfg.trainer.enable_model_summary = False
    return cfg


def test_fast_dev_run(compose_cfg):
    from phalp_lightning.pipelines.train import run

    metrics = run(_train_cfg(compose_cfg, ["debug=fdr"]))
    for key in ("train/loss", "train/loss/rotation", "train/loss/betas", "train/loss/camera", "val/loss",
                "val/future/model/pose_l2", "val/future/constant_pose/pose_l2",
                "val/future/constant_velocity/rot_deg", "val/future/model_vs_constant_pose"):  # fmt: skip
        assert key in metrics and math.isfinite(metrics[key]), key


@pytest.mark.slow
def test_checkpoint_loads_as_the_same_predictor(compose_cfg, tmp_path):
    import hydra

    from phalp_lightning.pipelines.train import run

    cfg = _train_cfg(compose_cfg, ["callbacks=ema", "trainer.max_epochs=2", "+trainer.limit_val_batches=1"])
    metrics = run(cfg)
    assert metrics["train/loss"] > 0
    checkpoint_path = tmp_path / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(checkpoint_path, weights_only=False)
    assert "current_model_state" in checkpoint  # EMA weights in state_dict, raw ones beside them
    assert all(key.startswith(("encoder.", "future_metrics.")) for key in checkpoint["state_dict"])

    network = load_pose_transformer(checkpoint_path)
    module = hydra.utils.instantiate(cfg.model)
    module.load_state_dict(checkpoint["state_dict"])
    module.eval()
    history = torch.randn(3, 7, 229)
    times = torch.arange(7).repeat(3, 1)
    gaps = torch.tensor([0, 2, 5])
    assert torch.allclose(network.predict_next(history, times, gaps), module.encoder.predict_next(history, times, gaps), atol=1e-6)
    raw = {key[len("encoder.") :]: value for key, value in checkpoint["current_model_state"].items() if key.startswith("encoder.")}
    assert any(not torch.equal(raw[key], value) for key, value in network.state_dict().items() if value.is_floating_point())
