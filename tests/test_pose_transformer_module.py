"""PoseTransformerModule: masking helpers, losses, baselines, Hydra training runs and checkpoints."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from phalp_lightning.models.convert_pose_transformer import load_pose_transformer
from phalp_lightning.models.pose_transformer_data import future_token_mask, random_token_mask
from phalp_lightning.models.pose_transformer_module import (
    constant_velocity,
    pose_distance,
    rotation_angle_deg,
)
from phalp_lightning.models.schedules import WarmupCosine
from phalp_lightning.utils.geometry import axis_angle_to_rotmat
from phalp_lightning.utils.vectors import pose_vector

FAKE_DATA = {
    "_target_": "helpers.fake_tracklets.FakeTrackletDataModule",
    "num_train": 8,
    "num_val": 4,
    "window": 16,
    "batch_size": 4,
}


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
        return pose_vector(
            rotations[:, :1], rotations[:, 1:], torch.full((1, 10), angle), torch.tensor([[angle, 0.0, 40.0]])
        )

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
                "val/future1/model/pose_l2", "val/future1/constant_pose/pose_l2",
                "val/future1/constant_velocity/rot_deg", "val/future1/model_vs_constant_pose"):  # fmt: skip
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
    assert torch.allclose(
        network.predict_next(history, times, gaps),
        module.encoder.predict_next(history, times, gaps),
        atol=1e-6,
    )
    raw = {
        key[len("encoder.") :]: value
        for key, value in checkpoint["current_model_state"].items()
        if key.startswith("encoder.")
    }
    assert any(
        not torch.equal(raw[key], value)
        for key, value in network.state_dict().items()
        if value.is_floating_point()
    )


def small_module(**kwargs):
    from functools import partial

    from phalp_lightning.models.components.pose_transformer import PoseTransformer
    from phalp_lightning.models.pose_transformer_module import PoseTransformerModule

    torch.manual_seed(0)
    net = PoseTransformer(dim=16, depth=1, heads=2, dim_head=8, mlp_dim=32, frame_length=20, pose_hidden_dim=24,
                          num_action_classes=0, smpl_head_hidden_dim=32, smpl_head_dropout=0.0)  # fmt: skip
    return PoseTransformerModule(net, optimizer=partial(torch.optim.AdamW, lr=1e-3), **kwargs).eval()


def test_future_history_skips_missed_detections():
    module = small_module(history_length=3)
    pose = torch.randn(2, 8, 229)
    time = torch.arange(8).repeat(2, 1) + 100
    valid = torch.ones(2, 8, dtype=torch.bool)
    valid[0, 2] = False  # track 0 missed a detection inside its history
    valid[1, 6] = False  # track 1's target at horizon 4 is missing: not scored
    predictions = module.future_predictions({"pose": pose, "time": time, "valid": valid}, horizon=2)
    # Track 0's history is steps 0, 1, 3 (target 5); track 1's is 0, 1, 2 (target 4).
    assert torch.equal(predictions["constant_pose"], torch.stack([pose[0, 3], pose[1, 2]]))
    assert torch.equal(predictions["target"], torch.stack([pose[0, 5], pose[1, 4]]))
    batched = module.future_predictions({"pose": pose, "time": time, "valid": valid}, horizon=4)
    assert torch.equal(batched["target"], pose[:1, 7])
    expected = module.encoder.predict_next(pose[:1, [0, 1, 3]], time[:1, [0, 1, 3]], torch.tensor([3]))
    assert torch.allclose(batched["model"], expected, atol=1e-6)


def test_training_masks_keep_one_visible_slot_and_mask_the_future():
    module = small_module(mask_ratio=0.0, future_mask_prob=1.0, max_future_frames=50)
    observed = torch.zeros(64, 20, dtype=torch.bool)
    observed[:, :6] = True
    masked = module.training_masks(observed)
    assert not (masked & ~observed).any()
    assert (masked.sum(dim=1) >= 1).all() and (masked.sum(dim=1) <= 5).all()
    assert (observed & ~masked)[:, 0].all()  # the future is at the end: the oldest slot stays visible


def test_pose_statistics_and_mean_std_file(tmp_path):
    from phalp_lightning.models.components.pose_transformer import read_mean_std
    from phalp_lightning.models.pose_transformer_data import pose_statistics, write_mean_std

    pose = torch.zeros(2, 3, 229)
    pose[0, :, 0] = torch.tensor([1.0, 3.0, 100.0])
    valid = torch.tensor([[True, True, False], [True, True, True]])
    mean, std = pose_statistics([{"pose": pose, "valid": valid}], min_std=0.05)
    assert mean[0].item() == pytest.approx(4.0 / 5) and std[0].item() == pytest.approx(
        math.sqrt(10 / 5 - 0.64)
    )
    assert std[1].item() == pytest.approx(0.05)
    loaded_mean, loaded_std = read_mean_std(write_mean_std(tmp_path / "mean_std.npy", mean, std))
    assert torch.allclose(loaded_mean, mean) and torch.allclose(loaded_std, std)


from helpers import synthetic_data  # noqa: E402

synthetic_tracklet_shards = synthetic_data.synthetic_tracklet_shards


def test_train_py_fast_dev_run_on_tracklet_shards(compose_cfg, synthetic_tracklet_shards):
    """`python train.py model=pose_transformer debug=fdr` with the real TrackletDataModule and shards."""
    from phalp_lightning.pipelines.train import run

    train, val = synthetic_tracklet_shards["train"]["pattern"], synthetic_tracklet_shards["val"]["pattern"]
    cfg = compose_cfg(
        "train",
        ["model=pose_transformer", "debug=fdr", "trainer=cpu", f"data.train_shards='{train}'", f"data.val_shards='{val}'",
         "data.batch_size=4", "model.history_length=3", "model.future_horizons=[1,2]"],
    )  # fmt: skip
    metrics = run(cfg)
    assert math.isfinite(metrics["train/loss"]) and math.isfinite(metrics["val/loss"])
    assert math.isfinite(metrics["val/future1/model/pose_l2"]) and "val/future2/model_vs_constant_pose" in metrics
