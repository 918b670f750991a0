"""Pose transformer on data that looks real: pose noise, the three baselines, the validation record that
decides whether the tracker uses the network, and AVA labels (class mapping, keyframe-only supervision,
frame-level AP, names)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from phalp_lightning.datamodules.formats.ava import AVAClassMapping, frame_level_ap, read_ava_csv
from phalp_lightning.datamodules.synthetic.tracklets import PoseNoise, corrupt_poses

from phalp_lightning.models.components.pose_transformer import (
    PoseTransformer,
    baseline_prediction,
    damped_steps,
)
from phalp_lightning.models.convert_pose_transformer import (
    CONFIG_KEY,
    NORMALISATION_KEY,
    VALIDATION_KEY,
    PoseCheckpointError,
    load_pose_transformer,
)
from phalp_lightning.models.pose_transformer_module import constant_velocity, rotation_angle_deg
from phalp_lightning.utils.geometry import axis_angle_to_rotmat
from phalp_lightning.utils.vectors import pose_vector

# Three of AVA's evaluated classes with their real ids (non-contiguous, the last one is id 80).
LABEL_MAP = """item {
  name: "bend/bow (at the waist)"
  id: 1
}
item {
  name: "crouch/kneel"
  id: 3
}
item {
  name: "watch (a person)"
  id: 80
}
"""
# Ground truth in AVA's column layout: video_id, timestamp, x1, y1, x2, y2, action_id, person_id; 1 Hz keyframes.
GROUND_TRUTH = """vid_a,0902,0.10,0.10,0.30,0.80,1,0
vid_a,0902,0.10,0.10,0.30,0.80,80,0
vid_a,0902,0.50,0.10,0.70,0.80,80,1
vid_a,0903,0.12,0.10,0.32,0.80,1,0
vid_a,0903,0.52,0.10,0.72,0.80,12,1
vid_a,0904
"""
# Predictions: the last column is a score.
PREDICTIONS = """vid_a,0902,0.10,0.10,0.30,0.80,1,0.9
vid_a,0902,0.50,0.10,0.70,0.80,1,0.8
vid_a,0903,0.12,0.11,0.32,0.80,1,0.7
vid_a,0902,0.10,0.10,0.30,0.80,80,0.6
vid_a,0902,0.11,0.10,0.31,0.80,80,0.95
vid_a,0902,0.80,0.10,0.95,0.80,80,0.5
vid_a,0903,0.52,0.10,0.72,0.80,3,0.4
vid_a,0905,0.10,0.10,0.30,0.80,1,0.99
vid_a,0903,0.52,0.10,0.72,0.80,12,0.3
"""


def turning_poses(count: int, step: float = 0.05) -> torch.Tensor:
    axes = torch.nn.functional.normalize(torch.randn(24, 3, generator=torch.Generator().manual_seed(1)), dim=-1)
    angles = 0.2 + step * torch.arange(count, dtype=torch.float32)
    rotations = axis_angle_to_rotmat(angles[:, None, None] * axes)
    camera = torch.stack([angles, -angles, 40.0 + angles], dim=-1)
    return pose_vector(rotations[:, :1], rotations[:, 1:], torch.linspace(-1, 1, 10).expand(count, 10), camera)


# ------------------------------------------------------------------ noise
def test_pose_noise_has_the_stated_size_flips_misses_and_shape_jitter():
    clean = turning_poses(2000).numpy()
    valid = np.ones(2000, bool)
    noisy, still_valid = corrupt_poses(np.random.default_rng(0), clean, valid, PoseNoise(2.0))
    # Per-axis std sigma -> mean angle of a 3-D Gaussian rotation vector = sigma * 2 sqrt(2/pi).
    angle = rotation_angle_deg(torch.from_numpy(noisy), torch.from_numpy(clean)).mean().item()
    assert angle == pytest.approx(2.0 * 2 * np.sqrt(2 / np.pi), rel=0.05)
    assert still_valid.all() and np.allclose(noisy[:, 216:], clean[:, 216:])

    flipped, _ = corrupt_poses(np.random.default_rng(0), clean[:5], valid[:5], PoseNoise(0.0, flip_prob=1.0))
    body, original = flipped[:, 9:216].reshape(5, 23, 3, 3), clean[:5, 9:216].reshape(5, 23, 3, 3)
    mirror = np.diag([-1.0, 1.0, 1.0])
    assert np.allclose(body[:, 0], mirror @ original[:, 1] @ mirror, atol=1e-6)  # left hip <- mirrored right hip
    assert np.allclose(body[:, 16], mirror @ original[:, 15] @ mirror, atol=1e-6)  # right shoulder <- left
    assert np.allclose(body[:, 2], mirror @ original[:, 2] @ mirror, atol=1e-6)  # spine: mirrored in place

    level = PoseNoise.at_level(5.0)
    assert level.flip_prob > 0 and level.miss_prob > 0 and level.betas_std > 0 and PoseNoise.at_level(0.0) == PoseNoise(0.0)
    jittered, kept = corrupt_poses(np.random.default_rng(1), clean, valid, PoseNoise(0.0, miss_prob=0.3, betas_std=0.2))
    assert 0.25 < 1 - kept.mean() < 0.35 and np.all(jittered[~kept] == 0)
    assert np.std(jittered[kept, 216:226] - clean[kept, 216:226]) == pytest.approx(0.2, rel=0.1)


# ------------------------------------------------------------------ baselines
def test_constant_velocity_takes_fractional_steps_and_the_damped_one_caps_and_decays():
    poses = turning_poses(4, step=0.1)
    # Half a step: half the rotation of the last step (rounding would take a whole step).
    half = constant_velocity(poses[:1], poses[1:2], torch.tensor([0.5]))
    assert rotation_angle_deg(half, poses[1:2]).item() == pytest.approx(np.rad2deg(0.05), rel=1e-3)
    two = constant_velocity(poses[:1], poses[1:2], torch.tensor([2.0]))
    assert rotation_angle_deg(two, poses[3:4]).item() < 1e-2
    assert torch.allclose(two[:, 226:], poses[3:4, 226:], atol=1e-4)
    assert damped_steps(torch.tensor([3.0]), decay=0.5).item() == pytest.approx(1.75)
    assert damped_steps(torch.tensor([0.5, 2.0, 9.0]), max_steps=1.0).tolist() == [0.5, 1.0, 1.0]
    capped = baseline_prediction("damped_velocity", poses[:1], poses[1:2], torch.tensor([2.0]), max_steps=1.0)
    assert rotation_angle_deg(capped, poses[2:3]).item() < 1e-2
    assert torch.equal(baseline_prediction("constant_pose", poses[:1], poses[1:2], torch.tensor([5.0])), poses[1:2])


# ------------------------------------------------------------------ the validation record decides
def small_network(**kwargs) -> PoseTransformer:
    torch.manual_seed(0)
    options = dict(dim=16, depth=1, heads=2, dim_head=8, mlp_dim=32, frame_length=20, pose_hidden_dim=24,
                   num_action_classes=0, smpl_head_hidden_dim=32, smpl_head_dropout=0.0, output_anchor="last")  # fmt: skip
    network = PoseTransformer(**{**options, **kwargs})
    for parameter in network.parameters():  # non-zero corrections, so the network differs from its anchor
        parameter.data.add_(0.05 * torch.randn_like(parameter))
    return network.eval()


def record(wins_at_2: bool) -> dict:
    fallback = {"name": "damped_velocity", "max_steps": 1.0, "decay": 1.0}
    return {
        "operating_noise_deg": 2.0,
        "levels": [
            {"noise_deg": 0.0, "model_wins": True, "best_baseline": fallback},
            {"noise_deg": 2.0, "model_wins": wins_at_2, "best_baseline": fallback},
            {"noise_deg": 5.0, "model_wins": False, "best_baseline": {"name": "constant_pose", "max_steps": 0, "decay": 1}},
        ],
    }


def save(network: PoseTransformer, path, validation: dict | None):
    checkpoint = {
        "state_dict": {"encoder." + key: value for key, value in network.state_dict().items()},
        CONFIG_KEY: dict(network.config),
        NORMALISATION_KEY: {"mean": network.mean, "std": network.std},
    }
    if validation is not None:
        checkpoint[VALIDATION_KEY] = validation
    torch.save(checkpoint, path)
    return path


def test_the_validation_record_decides_network_or_baseline_and_says_so(tmp_path, caplog):
    network = small_network()
    history = turning_poses(7)[None].repeat(2, 1, 1)
    times = torch.tensor([[0, 1, 2, 3, 4, 5, 6], [0, 1, 2, 3, 4, 6, 8]])
    gaps = torch.tensor([0, 3])
    own = network.predict_next(history, times, gaps)
    steps = torch.tensor([1.0, 2.0])  # (time_since_update + 1) / last gap
    fallback = baseline_prediction("damped_velocity", history[:, -2], history[:, -1], steps, max_steps=1.0)
    assert not torch.allclose(own, fallback, atol=1e-3)

    with caplog.at_level(logging.INFO):
        losing = load_pose_transformer(save(network, tmp_path / "losing.ckpt", record(wins_at_2=False)))
    assert "NOT used at pose noise 2 deg" in caplog.text and "damped_velocity" in caplog.text
    assert torch.allclose(losing.predict_next(history, times, gaps), fallback, atol=1e-6)
    winning = load_pose_transformer(save(network, tmp_path / "winning.ckpt", record(wins_at_2=True)))
    assert torch.allclose(winning.predict_next(history, times, gaps), own, atol=1e-6)
    # A declared level picks the smallest validated level at or above it; above all of them, the largest.
    caplog.clear()
    with caplog.at_level(logging.INFO):
        quiet = load_pose_transformer(tmp_path / "losing.ckpt", noise_deg=0.0)
        noisy = load_pose_transformer(tmp_path / "winning.ckpt", noise_deg=8.0)
    assert quiet.tracking_fallback is None and "network is used" in caplog.text
    assert noisy.tracking_fallback["name"] == "constant_pose" and "above every validated level" in caplog.text
    with pytest.raises(PoseCheckpointError, match="no validation record"):
        load_pose_transformer(save(network, tmp_path / "plain.ckpt", None), noise_deg=2.0)


# ------------------------------------------------------------------ AVA
def test_class_mapping_keeps_ids_and_names(tmp_path):
    (tmp_path / "ava_action_list.pbtxt").write_text(LABEL_MAP)
    mapping = AVAClassMapping.from_label_map(tmp_path / "ava_action_list.pbtxt")
    assert mapping.ids == (1, 3, 80) and mapping.names[2] == "watch (a person)"
    labels = np.zeros((2, 80), np.uint8)
    labels[0, [0, 79]] = 1  # ids 1 and 80
    labels[1, 11] = 1  # id 12: not evaluated
    assert mapping.map_multi_hot(labels).tolist() == [[1, 0, 1], [0, 0, 0]]


def test_frame_level_ap_follows_the_pascal_protocol_on_keyframes(tmp_path):
    (tmp_path / "map.pbtxt").write_text(LABEL_MAP)
    (tmp_path / "gt.csv").write_text(GROUND_TRUTH)
    (tmp_path / "pred.csv").write_text(PREDICTIONS)
    result = frame_level_ap(
        read_ava_csv(tmp_path / "gt.csv"), read_ava_csv(tmp_path / "pred.csv", predictions=True),
        AVAClassMapping.from_label_map(tmp_path / "map.pbtxt"),
    )  # fmt: skip
    # id 1: two true boxes; TP 0.9, FP 0.8 (wrong person), TP 0.7 (IoU > 0.5); the 0.99 box is at a
    # keyframe without annotation (dropped). Precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> AP 5/6.
    assert result["bend/bow (at the waist)"] == pytest.approx(5 / 6)
    # id 80: two true boxes; 0.95 TP, 0.6 a duplicate of the same person (FP), 0.5 no overlap (FP),
    # the second person never found -> recall 1/2 at precision 1 -> AP 1/2.
    assert result["watch (a person)"] == pytest.approx(0.5)
    # id 3: no true box -> NaN and left out of the mean; id 12 is not evaluated at all.
    assert np.isnan(result["crouch/kneel"]) and len(result) == 4
    assert result["mAP"] == pytest.approx((5 / 6 + 0.5) / 2)


def ava_batch(length: int = 40) -> dict[str, torch.Tensor]:
    """Two windows of AVA-style labels: 80 ids, a label row only at the 1 Hz keyframes (every 30 frames)."""
    actions = torch.zeros(2, length, 80)
    actions[0, 5, [0, 79]] = 1.0  # keyframe: ids 1 and 80
    actions[0, 35, 11] = 1.0  # keyframe annotated with a non-evaluated id only: a real negative for the 3 classes
    actions[1, 10, 2] = 1.0  # id 3
    return {
        "pose": turning_poses(length)[None].repeat(2, 1, 1),
        "time": torch.arange(length).repeat(2, 1),
        "valid": torch.ones(2, length, dtype=torch.bool),
        "actions": actions,
        "has_actions": torch.ones(2, dtype=torch.bool),
    }


@pytest.fixture
def ava_module(compose_cfg, tmp_path):
    import hydra

    (tmp_path / "map.pbtxt").write_text(LABEL_MAP)
    cfg = compose_cfg("train", ["model=pose_transformer", "trainer=cpu", "model.net.num_action_classes=3",
                                f"model.action_label_map={tmp_path / 'map.pbtxt'}", "model.net.frame_length=40"])  # fmt: skip
    return hydra.utils.instantiate(cfg.model)


def test_ava_labels_are_mapped_and_only_keyframes_are_supervised(ava_module):
    module = ava_module
    assert module.encoder.action_names == ["bend/bow (at the waist)", "crouch/kneel", "watch (a person)"]
    batch = ava_batch()
    labels, annotated = module.action_targets(batch)
    assert annotated.sum().item() == 3 and annotated[0, 5] and annotated[0, 35] and annotated[1, 10]
    assert labels[0, 5].tolist() == [1, 0, 1] and labels[0, 35].tolist() == [0, 0, 0] and labels[1, 10].tolist() == [0, 1, 0]
    losses = module.masked_step(batch)
    assert losses["_action_labels"].shape == (3, 3)
    # The loss is the BCE over those three keyframes only: unlabelled frames are not negatives.
    decoded_logits = losses["_action_logits"]
    expected = torch.nn.functional.binary_cross_entropy_with_logits(decoded_logits, labels[annotated])
    assert losses["action"].item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(Exception, match="80"):
        module.action_targets(dict(batch, actions=batch["actions"][..., :3]))


def test_action_ap_is_scored_on_keyframes_with_every_detection_visible(ava_module):
    module = ava_module.eval()
    logged = {}
    module.log = lambda name, value, **kwargs: logged.__setitem__(name, float(value))
    with torch.no_grad():
        module.validation_step(ava_batch(), 0)
    assert module.action_ap.preds[0].shape == (3, 3)  # one row per annotated keyframe
    module.on_validation_epoch_end()
    assert {"val/action_ap/bend/bow (at the waist)", "val/action_ap/watch (a person)", "val/action_map"} <= set(logged)


def test_converted_official_head_writes_ava_names(tmp_path):
    from phalp_lightning.models.convert_pose_transformer import convert
    from phalp_lightning.sinks.actions import TrackActionsWriter

    network = small_network(num_action_classes=60, output_anchor="none")
    torch.save({"state_dict": {"encoder." + k: v for k, v in network.state_dict().items()}}, tmp_path / "official.pth")
    np.save(tmp_path / "ms.npy", np.stack([np.zeros((1, 229), np.float32), np.ones((1, 229), np.float32)]))
    items = "".join(f'item {{\n  name: "action {ident}"\n  id: {ident}\n}}\n' for ident in range(21, 81))
    (tmp_path / "map.pbtxt").write_text(items)
    config = {"heads": 2, "dim_head": 8, "conv_stride": 5, "conv_pad": 1}
    out = convert(tmp_path / "official.pth", tmp_path / "named.ckpt", config=config, mean_std=tmp_path / "ms.npy",
                  action_label_map=tmp_path / "map.pbtxt")  # fmt: skip
    writer = TrackActionsWriter(load_pose_transformer(out))
    assert writer.names[0] == "action 21" and writer.names[-1] == "action 80" and len(writer.names) == 60


def test_synthetic_cli_writes_noisy_tracklets(tmp_path, synthetic_assets):
    import json

    from phalp_lightning.datamodules.synthetic.__main__ import main

    arguments = ["tracklets", "--out", str(tmp_path / "{}"), "--assets", str(synthetic_assets), "--num-train-tracks", "2",
                 "--num-val-tracks", "1", "--track-length", "16", "--window", "16"]  # fmt: skip
    main([part.format("clean") for part in arguments])
    main([part.format("noisy") for part in arguments] + ["--noise-deg", "5"])
    manifest = json.loads((tmp_path / "noisy" / "manifest.json").read_text())
    assert manifest["splits"]["train"]["noise_deg"] == [5.0] and "noise_deg" not in json.loads((tmp_path / "clean" / "manifest.json").read_text())["splits"]["train"]
    from phalp_lightning.datamodules.shard_decoding import TrackletDecoder, iterate_shard

    def first_window(folder):
        (shard,) = sorted((tmp_path / folder).rglob("train-*.tar"))
        return TrackletDecoder()(next(iter(iterate_shard(str(shard)))))

    clean, noisy = first_window("clean"), first_window("noisy")
    both = clean["valid"].bool() & noisy["valid"].bool()
    angle = rotation_angle_deg(noisy["pose"][both], clean["pose"][both]).mean().item()
    assert 5.0 < angle < 12.0  # per-axis std 5 deg -> mean angle about 8 deg (plus the odd flip)
