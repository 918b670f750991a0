"""The residual read-out (output anchors), the tracker-style masking, exact resume, finite checks and
the action head of the pose transformer's training recipe."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch

from phalp_lightning.models.components.pose_transformer import PoseTransformer, slot_anchors
from phalp_lightning.models.pose_transformer_data import history_token_mask
from phalp_lightning.models.pose_transformer_module import (
    NonFiniteTrainingError,
    PoseTransformerModule,
    constant_velocity,
    rotation_angle_deg,
)
from phalp_lightning.utils.geometry import axis_angle_to_rotmat
from phalp_lightning.utils.vectors import pose_vector


def turning_poses(count: int, step: float = 0.05, start: float = 0.2) -> torch.Tensor:
    """(count, 229) poses whose 24 joints turn about fixed axes at a constant rate; fixed betas, moving camera."""
    axes = torch.nn.functional.normalize(torch.randn(24, 3, generator=torch.Generator().manual_seed(1)), dim=-1)
    angles = start + step * torch.arange(count, dtype=torch.float32)
    rotations = axis_angle_to_rotmat(angles[:, None, None] * axes)
    betas = torch.linspace(-1, 1, 10).expand(count, 10)
    camera = torch.stack([angles, -angles, 40.0 + angles], dim=-1)
    return pose_vector(rotations[:, :1], rotations[:, 1:], betas, camera)


def small_network(**kwargs) -> PoseTransformer:
    torch.manual_seed(0)
    options = dict(dim=16, depth=1, heads=2, dim_head=8, mlp_dim=32, frame_length=20, pose_hidden_dim=24,
                   num_action_classes=0, smpl_head_hidden_dim=32, smpl_head_dropout=0.0)  # fmt: skip
    return PoseTransformer(**{**options, **kwargs})


def small_module(net: PoseTransformer | None = None, **kwargs) -> PoseTransformerModule:
    return PoseTransformerModule(net or small_network(), optimizer=partial(torch.optim.AdamW, lr=1e-3), **kwargs)


def test_slot_anchors_continue_the_last_visible_motion():
    poses = turning_poses(10)
    visible = torch.zeros(1, 10, dtype=torch.bool)
    visible[0, [1, 3, 4]] = True  # a gap, then two consecutive slots
    last, distance = slot_anchors(poses[None], visible, "last")
    assert torch.equal(last[0, 0], poses[1])  # before the first visible slot: the first visible pose
    assert torch.equal(last[0, 2], poses[1]) and torch.equal(last[0, 9], poses[4])
    assert distance[0].tolist() == [0, 0, 1, 0, 0, 1, 2, 3, 4, 5]
    moving, _ = slot_anchors(poses[None], visible, "velocity")
    # From slots 3 and 4 the steady turn continues exactly, the camera linearly, the betas stay.
    assert rotation_angle_deg(moving[0, 5:], poses[5:]).max().item() < 1e-2
    assert torch.allclose(moving[0, 5:, 226:], poses[5:, 226:], atol=1e-4)
    assert torch.equal(moving[0, 9, 216:226], poses[4, 216:226])
    held, _ = slot_anchors(poses[None], visible, "velocity", max_steps=1.0)
    assert torch.equal(held[0, 9], held[0, 5]) and torch.equal(held[0, 5], moving[0, 5])
    # Slot 2 is extrapolated from slot 1 alone (no earlier visible slot): the constant pose.
    assert torch.equal(moving[0, 2], poses[1])
    # Between slots 1 and 3 (a gap of 2), one slot on is half a step: the fractional power.
    visible2 = torch.zeros(1, 10, dtype=torch.bool)
    visible2[0, [1, 3]] = True
    half, _ = slot_anchors(poses[None], visible2, "velocity")
    assert rotation_angle_deg(half[0, 4:5], poses[4:5]).item() < 1e-2


@pytest.mark.parametrize("anchor", ["last", "velocity"])
def test_an_untrained_anchored_network_predicts_its_anchor(anchor):
    network = small_network(output_anchor=anchor, correction_horizon_power=2.0).eval()
    history = turning_poses(12)[None, :7]
    times = torch.arange(7)[None]
    predicted = network.predict_next(history, times, torch.tensor([4]))  # 5 frames after the newest
    expected = history[:, -1] if anchor == "last" else constant_velocity(history[:, -2], history[:, -1], torch.tensor([5.0]))
    assert rotation_angle_deg(predicted, expected).item() < 0.05
    assert torch.allclose(predicted[:, 216:], expected[:, 216:], atol=1e-4)


def test_the_correction_scales_with_the_distance_to_the_newest_visible_slot():
    network = small_network(output_anchor="last", correction_horizon_power=2.0).eval()
    with torch.no_grad():
        network.smpl_head[0].decpose.bias[0] = 0.0
        network.smpl_head[0].decpose.bias[1] = 0.05  # a small rotation about z of joint 0
    tokens = torch.zeros(3, 16)
    anchor = turning_poses(1).expand(3, -1)
    out = network.readout(tokens, anchor=anchor, distance=torch.tensor([0.0, 1.0, 2.0]))["pose"]
    angles = rotation_angle_deg(out, anchor) * 24  # only joint 0 turns
    assert angles[0].item() == pytest.approx(0.0, abs=1e-4)
    assert angles[2].item() == pytest.approx(4 * angles[1].item(), rel=1e-3)
    with pytest.raises(ValueError, match="anchor"):
        network.readout(tokens)
    # With a largest distance c the scale is min(d, c) ** p: constant beyond c.
    network.correction_scale_max_distance = 2.0
    far = network.readout(tokens, anchor=anchor, distance=torch.tensor([1.0, 2.0, 7.0]))["pose"]
    far_angles = rotation_angle_deg(far, anchor) * 24
    assert far_angles[2].item() == pytest.approx(far_angles[1].item(), rel=1e-4)
    assert far_angles[1].item() == pytest.approx(angles[2].item(), rel=1e-4)


def test_anchored_checkpoint_round_trip_keeps_how_the_output_is_formed(tmp_path):
    from phalp_lightning.models.convert_pose_transformer import (
        CONFIG_KEY,
        NORMALISATION_KEY,
        load_pose_transformer,
    )

    network = small_network(output_anchor="velocity", correction_horizon_power=2.0, num_action_classes=3,
                            action_names=["walk", "run", "wave"], correction_scale_max_distance=3.0,
                            anchor_max_steps=4.0)  # fmt: skip
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    path = tmp_path / "anchored.ckpt"
    torch.save(
        {
            "state_dict": {f"encoder.{k}": v for k, v in network.state_dict().items()},
            CONFIG_KEY: dict(network.config),
            NORMALISATION_KEY: {"mean": network.mean, "std": network.std},
        },
        path,
    )
    loaded = load_pose_transformer(path)
    assert loaded.output_anchor == "velocity" and loaded.correction_horizon_power == 2.0
    assert loaded.correction_scale_max_distance == 3.0 and loaded.anchor_max_steps == 4.0
    assert loaded.action_names == ["walk", "run", "wave"]
    history, times, gaps = turning_poses(7)[None].repeat(2, 1, 1), torch.arange(7).repeat(2, 1), torch.tensor([0, 3])
    assert torch.allclose(loaded.predict_next(history, times, gaps), network.eval().predict_next(history, times, gaps), atol=1e-6)
    # The original layout's config has no such entries: official checkpoints read out as before.
    assert "output_anchor" not in small_network().config


def test_anchored_output_refuses_mean_params():
    with pytest.raises(ValueError, match="smpl_mean_params"):
        small_network(output_anchor="last", smpl_mean_params="whatever.npz")
    with pytest.raises(ValueError, match="output_anchor"):
        small_network(output_anchor="sideways")


def test_history_masking_keeps_the_first_observed_slots():
    observed = torch.ones(3, 10, dtype=torch.bool)
    observed[1, 0] = False
    masked = history_token_mask(observed, torch.tensor([2, 3, 0]))
    assert (~masked[0]).nonzero().flatten().tolist() == [0, 1]
    assert (observed[1] & ~masked[1]).nonzero().flatten().tolist() == [1, 2, 3]
    assert (~masked[2]).nonzero().flatten().tolist() == [0]  # at least one stays visible


def test_masks_depend_on_seed_and_step_only(monkeypatch):
    module = small_module(history_mask_prob=0.5, mask_seed=3)
    observed = torch.rand(32, 20, generator=torch.Generator().manual_seed(0)) > 0.2
    first = module.training_masks(observed)
    torch.manual_seed(123)  # the global RNG (restored or not by a resume) plays no part
    assert torch.equal(module.training_masks(observed), first)
    assert not torch.equal(small_module(history_mask_prob=0.5, mask_seed=4).training_masks(observed), first)
    monkeypatch.setattr(PoseTransformerModule, "global_step", property(lambda self: 7))
    assert not torch.equal(module.training_masks(observed), first)


def _fit(module: PoseTransformerModule, batches: list, max_epochs: int, root, ckpt_path=None):
    import lightning as L

    trainer = L.Trainer(
        max_epochs=max_epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=root, num_sanity_val_steps=0, limit_val_batches=0,
        enable_checkpointing=False,
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(batches, batch_size=None)
    trainer.fit(module, train_dataloaders=loader, ckpt_path=ckpt_path, weights_only=False)
    return trainer


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path):
    batches = []
    for index in range(3):
        batch = _batch(num=4, length=12)
        batch["pose"] = batch["pose"] + 0.01 * index
        batches.append(batch)
    options = dict(history_mask_prob=0.5, mask_ratio=0.4, future_mask_prob=0.5, mask_seed=5)
    straight = small_module(**options)
    _fit(straight, batches, 2, tmp_path / "a")

    first = small_module(**options)
    trainer = _fit(first, batches, 1, tmp_path / "b")
    trainer.save_checkpoint(tmp_path / "epoch1.ckpt")
    resumed = small_module(**options)
    torch.manual_seed(999)  # a different global RNG state at restart
    _fit(resumed, batches, 2, tmp_path / "c", ckpt_path=tmp_path / "epoch1.ckpt")
    for (name, expected), actual in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(expected, actual), name


def _batch(num: int = 4, length: int = 12, actions: int = 0) -> dict[str, torch.Tensor]:
    poses = turning_poses(length)
    batch = {
        "pose": poses[None].repeat(num, 1, 1),
        "time": torch.arange(length).repeat(num, 1) + 50,
        "valid": torch.ones(num, length, dtype=torch.bool),
    }
    if actions:
        labels = torch.zeros(num, length, actions)
        labels[torch.arange(num), :, torch.arange(num) % actions] = 1.0
        batch["actions"], batch["has_actions"] = labels, torch.ones(num, dtype=torch.bool)
    return batch


def test_nan_in_a_window_fails_naming_the_window_or_is_skipped_and_counted(caplog):
    batch = _batch()
    batch["pose"][2, 5, 10] = float("nan")
    batch["__key__"] = ["a", "b", "synthetic~train~7~000016", "d"]
    module = small_module()
    with pytest.raises(NonFiniteTrainingError, match=r"window\(s\) \[2\].*synthetic~train~7~000016"):
        module.training_step(batch, 0)
    skipping = small_module(nonfinite="skip")
    skipping.log = lambda *args, **kwargs: None
    assert skipping.training_step(batch, 0) is None
    assert skipping.skipped_nonfinite == 1 and "skipped" in caplog.text
    # A NaN at an invalid step (a missed detection's zeros replaced by junk) is not used: fine.
    clean = _batch()
    clean["pose"][1, 3] = float("nan")
    clean["valid"][1, 3] = False
    module.log = lambda *args, **kwargs: None
    loss = module.training_step(clean, 0)
    assert loss is not None and math.isfinite(loss.item())


def test_non_finite_loss_is_not_hidden():
    module = small_module()
    module.log = lambda *args, **kwargs: None
    with torch.no_grad():
        module.encoder.loca_head[0][-1].bias.fill_(float("inf"))
    with pytest.raises(NonFiniteTrainingError, match="non-finite loss"):
        module.training_step(_batch(), 0)


def test_action_head_is_trained_and_scored_per_class():
    network = small_network(num_action_classes=3, action_names=["walk", "run", "wave"])
    module = small_module(network, history_mask_prob=1.0)
    batch = _batch(num=6, actions=3)
    losses = module.masked_step(batch)
    assert "action" in losses and losses["action"].item() > 0
    # The loss reaches the action head.
    losses["total"].backward()
    assert network.action_head_ava[0][0].weight.grad.abs().sum() > 0
    logged = {}
    module.log = lambda name, value, **kwargs: logged.__setitem__(name, float(value))
    module.eval()
    with torch.no_grad():
        module.validation_step(batch, 0)
    module.on_validation_epoch_end()
    assert {"val/action_ap/walk", "val/action_ap/run", "val/action_ap/wave", "val/action_map"} <= set(logged)
    assert 0.0 <= logged["val/action_map"] <= 1.0
    # Windows without labels do not count.
    unlabelled = dict(batch, has_actions=torch.zeros(6, dtype=torch.bool))
    assert module.masked_step(unlabelled)["action"].item() == 0.0


def test_track_actions_writer_scores_each_track_with_the_action_head(tmp_path):
    import json

    from phalp_lightning.datamodules.synthetic.scenes import detection_stream

    from phalp_lightning.sinks.actions import TrackActionsWriter
    from phalp_lightning.structures import VideoInfo
    from phalp_lightning.tracking.phalp_tracker import PHALPTracker

    network = small_network(num_action_classes=3, action_names=["walk", "run", "wave"]).eval()
    writer = TrackActionsWriter(network, windows_per_call=1)
    video = VideoInfo(name="clip", source="clip.mp4", num_frames=30, output_dir=tmp_path)
    writer.open(video)
    tracker = PHALPTracker(pose_predictor=network)
    emitted = []
    for frame in detection_stream(2, 30, seed=3, with_uv=False, miss_probability=0.1):
        emitted += tracker.update(frame)
    emitted += tracker.finalize()
    for tracks in emitted:
        writer.write(tracks)
    (path,) = writer.close()
    assert path == tmp_path / "results" / "demo_clip.actions.json"
    content = json.loads(path.read_text())
    assert content["action_names"] == ["walk", "run", "wave"] and len(content["tracks"]) == 2
    # One track recomputed by hand: its detections in windows of frame_length (20) frames.
    track_id = int(next(iter(content["tracks"])))
    entries = [(t.frame_index, t.detections.pose[k]) for t in emitted for k in range(len(t))
               if int(t.track_ids[k]) == track_id and int(t.time_since_update[k]) == 0]  # fmt: skip
    times = torch.tensor([frame for frame, _ in entries])
    poses = torch.stack([pose for _, pose in entries])
    first = times - times[0] < 20
    parts = [network.action_probabilities(poses[m][None], times[m][None], torch.ones(1, int(m.sum()), dtype=torch.bool))[0] * m.sum()
             for m in (first, ~first)]  # fmt: skip
    expected = (parts[0] + parts[1]) / len(times)
    saved = content["tracks"][str(track_id)]
    assert saved["detections"] == len(times)
    assert torch.allclose(torch.tensor(list(saved["probabilities"].values())), expected, atol=1e-5)


def test_synthetic_tracklets_carry_labelled_motions(tmp_path, synthetic_assets):
    from helpers.synthetic_data import body_model_handle
    from phalp_lightning.datamodules.shard_decoding import TrackletDecoder, iterate_shard
    from phalp_lightning.datamodules.synthetic.tracklets import simulate_tracks, write_synthetic_tracklets

    body = body_model_handle(str(synthetic_assets))
    entries = write_synthetic_tracklets(tmp_path, num_train_tracks=4, num_val_tracks=2, track_length=12, window=6,
                                        seed=1, body_model=body, motions=("walk", "stand", "wave"))  # fmt: skip
    assert entries["train"]["action_names"] == ["walk", "stand", "wave"]
    decoder = TrackletDecoder(load_actions=True, num_actions=3)
    samples = [decoder(sample) for shard in entries["train"]["shards"] for sample in iterate_shard(shard)]
    for sample in samples:
        assert sample["has_actions"] and torch.equal(sample["actions"].sum(dim=1), torch.ones(6))
    # Standing and waving people stay in place; walkers move.
    tracks = simulate_tracks(np.random.default_rng(0), 12, 20, body, motions=("walk", "stand", "wave"))
    travel = np.abs(tracks["pose"][:, -1, 226] - tracks["pose"][:, 0, 226]) * tracks["valid"][:, [0, -1]].all(1)
    still = tracks["motion"] > 0
    assert (travel[still] < 1e-6).all() and (travel[~still & tracks["valid"][:, [0, -1]].all(1)] > 0).any()
    with pytest.raises(ValueError, match="unknown motions"):
        write_synthetic_tracklets(tmp_path / "bad", num_train_tracks=1, num_val_tracks=1, track_length=6, window=6,
                                  body_model=body, motions=("moonwalk",))  # fmt: skip
