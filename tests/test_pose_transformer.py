"""PoseTransformer network: official key layout, loader, masking, predict_next semantics."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from phalp_lightning.models.components.pose_transformer import (
    MASKED_LOGIT,
    Attention,
    PoseTransformer,
    attention_block_mask,
    read_mean_std,
)
from phalp_lightning.models.convert_pose_transformer import (
    CheckpointKeyError,
    build_from_state_dict,
    convert,
    infer_architecture,
    load_pose_transformer,
    strip_encoder_prefix,
)

# Key -> shape table of the official network for the candidate config D=128, L=16, H=16, Dh=64,
# M=512, T=125, k=7, mid_dim=229, A=60 (398 keys; derived from the module definitions).
KEY_TABLE = Path(__file__).parent / "data" / "pose_predictor_keys_D128_L16_H16.tsv"
OFFICIAL_SPLITS = {"heads": 16, "dim_head": 64, "conv_stride": 5, "conv_pad": 1}
SMALL = dict(dim=16, depth=2, heads=2, dim_head=8, mlp_dim=32, frame_length=20, conv_stride=5, conv_pad=1,
             pose_hidden_dim=24, num_action_classes=3, smpl_head_hidden_dim=32, smpl_head_dropout=0.0)  # fmt: skip


def official_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with the official names and shapes, under the checkpoint's ``encoder.`` prefix."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for line in KEY_TABLE.read_text().splitlines():
        key, shape = line.split("\t")[:2]
        state["encoder." + key] = torch.randn(ast.literal_eval(shape), generator=generator)
    return state


def small_network(**overrides) -> PoseTransformer:
    torch.manual_seed(0)
    return PoseTransformer(**{**SMALL, **overrides}).eval()


def write_mean_std(path: Path, width: int = 226) -> Path:
    array = np.stack([np.full((1, width), 0.5, np.float32), np.full((1, width), 2.0, np.float32)])
    np.save(path, array)
    return path


@pytest.fixture(scope="module")
def official_checkpoint(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    state = official_state_dict()
    extras = {
        "smpl.v_template": torch.zeros(3),  # training-module buffers outside the network
        "encoder.action_head_kinetics.0.0.weight": torch.zeros(400, 128),  # a head PHALP's network lacks
    }
    path = tmp_path_factory.mktemp("official") / "pose_predictor.pth"
    torch.save({"state_dict": {**state, **extras}, "epoch": 3, "hyper_parameters": {"cfg": {}}}, path)
    return path, state


def test_key_table_is_the_official_layout():
    keys = [line.split("\t")[0] for line in KEY_TABLE.read_text().splitlines()]
    assert len(keys) == len(set(keys)) == 398


def test_official_checkpoint_loads_strictly_with_every_tensor(official_checkpoint, tmp_path):
    path, state = official_checkpoint
    mean_std = write_mean_std(tmp_path / "mean_std.npy")
    network = load_pose_transformer(path, config=OFFICIAL_SPLITS, mean_std=mean_std)
    loaded = network.state_dict()
    assert len(loaded) == 398
    for key, value in state.items():
        assert torch.equal(loaded[key[len("encoder.") :]], value), key
    # The pose encoder is loaded (PHALP master's replace("encoder.", "") loses it).
    assert torch.equal(network.pose_shape_encoder[0].weight, state["encoder.pose_shape_encoder.0.weight"])
    assert not network.training
    assert (network.dim, network.frame_length) == (128, 125)
    assert network.transformer1.layers[0][0].fn.heads == 16
    # mean/std: not in the checkpoint, padded from K=226 to 229 with 0 and 1.
    assert torch.all(network.mean[:226] == 0.5) and torch.all(network.mean[226:] == 0)
    assert torch.all(network.std[:226] == 2.0) and torch.all(network.std[226:] == 1)
    output = network.predict_next(torch.randn(2, 7, 229), torch.arange(7).repeat(2, 1), torch.tensor([0, 3]))
    assert output.shape == (2, 229) and torch.isfinite(output).all()


def test_official_yaml_supplies_heads_and_conv(official_checkpoint, tmp_path):
    path, _ = official_checkpoint
    yaml = tmp_path / "pose_predictor.yaml"
    yaml.write_text(
        "configs:\n  in_feat: 128\n  frame_length: 125\n  mask_type_test: zero\n"
        "  transformer:\n    depth: 16\n    heads: 8\n    dim_head: 128\n    mlp_dim: 512\n"
        "    dropout: 0.1\n    droppath: 0.4\n    conv: {pad: 1, stride: 5}\n"
    )
    network = load_pose_transformer(path, config=yaml, mean_std=write_mean_std(tmp_path / "ms.npy"))
    attention = network.transformer1.layers[0][0].fn
    assert (attention.heads, attention.scale) == (8, 128**-0.5)


def test_prefix_strip_removes_only_the_leading_encoder():
    state = {
        "encoder.pose_shape_encoder.0.weight": torch.zeros(1),
        "encoder.conv_en.bias": torch.zeros(1),
        "smpl.x": torch.zeros(1),
    }
    kept, dropped = strip_encoder_prefix(state)
    assert sorted(kept) == ["conv_en.bias", "pose_shape_encoder.0.weight"]
    assert dropped == ["smpl.x"]


def test_skip_pose_encoder_reproduces_master_loader(official_checkpoint, tmp_path):
    path, state = official_checkpoint
    network = load_pose_transformer(
        path, config=OFFICIAL_SPLITS, mean_std=write_mean_std(tmp_path / "ms.npy"), skip_pose_encoder=True
    )
    assert not torch.equal(network.pose_shape_encoder[0].weight, state["encoder.pose_shape_encoder.0.weight"])
    assert torch.equal(network.conv_en.weight, state["encoder.conv_en.weight"])


def test_missing_and_unknown_keys_are_listed():
    state = small_network().state_dict()
    state.pop("conv_en.bias")
    state["loca_head.0.9.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointKeyError) as error:
        build_from_state_dict(state, {"heads": 2, "conv_stride": 5}, source="bad.ckpt")
    message = str(error.value)
    assert "bad.ckpt" in message and "conv_en.bias" in message and "loca_head.0.9.weight" in message
    assert "missing keys (1)" in message and "unexpected keys (1)" in message


def test_wrong_shape_names_the_file():
    state = small_network().state_dict()
    state["loca_head.0.4.weight"] = torch.zeros(4, 16)
    with pytest.raises(ValueError, match="(?s)bad.ckpt.*loca_head.0.4.weight"):
        build_from_state_dict(state, {"heads": 2, "conv_stride": 5}, source="bad.ckpt")


def test_architecture_is_inferred_from_shapes():
    network = small_network(with_unused_transformer=True, with_sinusoidal_table=True, sinusoidal_length=50)
    inferred = infer_architecture(network.state_dict(), {"heads": 2, "conv_stride": 5})
    for key, value in inferred.items():
        assert network.config[key] == value, key
    assert inferred["with_unused_transformer"] and inferred["sinusoidal_length"] == 50
    inferred = infer_architecture(small_network().state_dict(), {"heads": 2, "conv_stride": 5})
    assert not inferred["with_unused_transformer"] and not inferred["with_sinusoidal_table"]


def test_bad_heads_split_is_rejected():
    with pytest.raises(ValueError, match="heads\\*dim_head"):
        infer_architecture(small_network().state_dict(), {"heads": 3, "dim_head": 8, "conv_stride": 5})


def test_converted_checkpoint_round_trips(official_checkpoint, tmp_path):
    path, _ = official_checkpoint
    out = convert(
        path, tmp_path / "converted.ckpt", config=None, mean_std=write_mean_std(tmp_path / "ms.npy")
    )
    # No config needed any more: the split and normalisation travel with the converted file.
    network = load_pose_transformer(out)
    reference = load_pose_transformer(path, config=OFFICIAL_SPLITS, mean_std=tmp_path / "ms.npy")
    history = torch.randn(3, 7, 229)
    times = torch.arange(7).repeat(3, 1)
    gaps = torch.tensor([0, 1, 4])
    assert torch.allclose(
        network.predict_next(history, times, gaps), reference.predict_next(history, times, gaps)
    )


def test_mean_std_shape_is_checked(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((3, 229), np.float32))
    with pytest.raises(ValueError, match="bad.npy.*\\(2, 1, K\\)"):
        read_mean_std(tmp_path / "bad.npy")


# ---------------------------------------------------------------------------- masking
def test_block_mask_excludes_masked_keys_and_absent_tokens():
    has = torch.tensor([[True, True, True, False]])
    masked = torch.tensor([[False, True, False, False]])
    blocked = attention_block_mask(has, masked)[0]
    assert blocked[:, 1].all()  # a masked token is never a key ...
    assert not blocked[1, 0] and not blocked[1, 2]  # ... but it still queries the visible ones
    assert blocked[3].all() and blocked[:, 3].all()  # an absent token neither asks nor answers
    assert not blocked[0, 0] and not blocked[0, 2]


def test_masked_key_content_does_not_reach_other_tokens():
    torch.manual_seed(0)
    attention = Attention(dim=8, heads=2, dim_head=4).eval()
    tokens = torch.randn(1, 5, 8)
    has = torch.ones(1, 5, dtype=torch.bool)
    masked = torch.tensor([[False, False, True, False, False]])
    changed = tokens.clone()
    changed[0, 2] += 10.0
    before, after = attention(tokens, has, masked), attention(changed, has, masked)
    others = [0, 1, 3, 4]
    assert torch.allclose(before[0, others], after[0, others], atol=1e-6)
    assert not torch.allclose(before[0, 2], after[0, 2])


def test_blocked_logits_are_assigned_minus_1000_not_minus_inf():
    torch.manual_seed(0)
    attention = Attention(dim=8, heads=1, dim_head=4).eval()
    tokens = torch.randn(1, 4, 8)
    has = torch.tensor([[True, True, True, False]])
    out = attention(tokens, has, torch.zeros_like(has))
    # The absent token's row is all -1000: a uniform average over every value, not NaN.
    values = attention.to_qkv(tokens).chunk(3, dim=-1)[2]
    assert MASKED_LOGIT == -1000.0
    assert torch.allclose(out[0, 3], attention.to_out(values[0].mean(dim=0)), atol=1e-6)


def test_masked_slots_become_the_mask_token():
    network = small_network()
    pose = torch.randn(1, 20, 229)
    has = torch.ones(1, 20, dtype=torch.bool)
    masked = torch.zeros(1, 20, dtype=torch.bool)
    masked[0, 5:] = True
    noisy = pose.clone()
    noisy[0, 5:] = 1e3 * torch.randn(15, 229)  # content under a mask must not matter
    assert torch.allclose(network(pose, has, masked), network(noisy, has, masked), atol=1e-5)


# ---------------------------------------------------------------------------- predict_next
def histories(num_tracks: int = 4, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    poses = torch.randn(num_tracks, 7, 229, generator=generator)
    gaps = torch.randint(1, 4, (num_tracks, 7), generator=generator)
    times = 100 + gaps.cumsum(dim=1)
    times[0] = torch.arange(7) + 50  # track 0: consecutive frames, read at the last slot (clamped)
    time_since_update = torch.tensor([12, 3, 1, 6])[:num_tracks]
    return poses, times, time_since_update


def test_batched_equals_per_track():
    network = small_network()
    poses, times, since = histories()
    batched = network.predict_next(poses, times, since)
    single = torch.cat(
        [network.predict_next(poses[i : i + 1], times[i : i + 1], since[i : i + 1]) for i in range(4)]
    )
    assert batched.shape == (4, 229)
    assert torch.allclose(batched, single, atol=1e-5)


def test_reference_quirks_reads_every_track_at_track_0s_slot():
    correct, quirky = small_network(), small_network(reference_quirks=True)
    poses, times, since = histories()
    own = correct.target_slots(times, since)
    assert len(set(own.tolist())) > 1  # the tracks really have different slots
    assert torch.equal(quirky.target_slots(times, since), own[:1].expand(4))
    quirk_out, correct_out = (
        quirky.predict_next(poses, times, since),
        correct.predict_next(poses, times, since),
    )
    assert torch.allclose(quirk_out[0], correct_out[0], atol=1e-6)
    assert (own[1:] != own[0]).sum() >= 2
    for track in range(1, 4):
        if own[track] != own[0]:
            assert not torch.allclose(quirk_out[track], correct_out[track], atol=1e-4)
        # Quirk output = the track's own decode at track 0's slot: pick a gap that lands there.
        newest = correct.history_slots(times[track : track + 1])[0, -1]
        gap = own[0] - newest - 1
        assert gap >= 0
        alone = correct.predict_next(poses[track : track + 1], times[track : track + 1], gap.reshape(1))
        assert torch.allclose(quirk_out[track], alone[0], atol=1e-5)


def test_reference_quirks_invisible_with_equal_gaps():
    correct, quirky = small_network(), small_network(reference_quirks=True)
    poses = torch.randn(3, 7, 229)
    times = torch.arange(7).repeat(3, 1) + torch.tensor([[0], [40], [90]])
    since = torch.zeros(3, dtype=torch.long)
    assert torch.allclose(
        quirky.predict_next(poses, times, since), correct.predict_next(poses, times, since), atol=1e-6
    )


def test_duplicate_times_keep_the_newest_entry():
    network = small_network()
    poses = torch.randn(1, 7, 229)
    times = torch.tensor([[10, 10, 11, 12, 13, 14, 15]])  # a new track repeats its first detection
    overwritten = poses.clone()
    overwritten[0, 0] = poses[0, 1]
    since = torch.tensor([0])
    assert torch.allclose(
        network.predict_next(poses, times, since), network.predict_next(overwritten, times, since), atol=1e-6
    )


def test_target_slot_is_clamped_to_the_last_slot():
    network = small_network()
    times = torch.arange(7)[None]
    assert network.target_slots(times, torch.tensor([2])).item() == 6 + 2 + 1
    assert network.target_slots(times, torch.tensor([100])).item() == 19


def test_predict_next_rejects_bad_shapes_and_handles_no_tracks():
    network = small_network()
    with pytest.raises(ValueError, match="pose_history"):
        network.predict_next(
            torch.zeros(2, 7, 228), torch.zeros(2, 7, dtype=torch.long), torch.zeros(2, dtype=torch.long)
        )
    empty = network.predict_next(
        torch.zeros(0, 7, 229), torch.zeros(0, 7, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    )
    assert empty.shape == (0, 229)


def test_readout_is_a_valid_pose_vector():
    network = small_network()
    pose = network.readout(torch.randn(5, 16))["pose"]
    rotations = pose[:, :216].reshape(5, 24, 3, 3)
    identity = torch.eye(3).expand(5, 24, 3, 3)
    assert torch.allclose(rotations @ rotations.transpose(-1, -2), identity, atol=1e-5)
    assert torch.allclose(torch.linalg.det(rotations), torch.ones(5, 24), atol=1e-5)


def test_frame_length_must_divide_by_stride():
    with pytest.raises(ValueError, match="divisible"):
        PoseTransformer(**{**SMALL, "frame_length": 21})


@pytest.mark.parametrize("reference_mode", [False, True])
def test_drives_the_phalp_tracker(reference_mode):
    """The network is a PosePredictor for PHALPTracker; reference_mode switches its quirk on."""
    from phalp_lightning.datamodules.synthetic.scenes import StandInAppearanceEncoder, detection_stream

    from phalp_lightning.tracking.phalp_tracker import PHALPTracker

    network = small_network()
    calls = []
    original = network.predict_next

    def recording(pose_history, time_history, time_since_update):
        calls.append(len(pose_history))
        return original(pose_history, time_history, time_since_update)

    network.predict_next = recording
    tracker = PHALPTracker(
        appearance_encoder=StandInAppearanceEncoder(), pose_predictor=network, reference_mode=reference_mode
    )
    assert network.reference_quirks is reference_mode
    emitted = []
    for frame in detection_stream(3, 8, seed=1, uv_size=16, miss_probability=0.1):
        emitted += tracker.update(frame)
    emitted += tracker.finalize()
    assert len(emitted) == 8 and calls and max(calls) >= 2


def test_official_experiment_config_has_the_official_key_layout(compose_cfg, assets_env):
    import hydra

    cfg = compose_cfg("train", ["experiment=pose_transformer_official"])
    network = hydra.utils.instantiate(cfg.model.net)
    expected = {
        line.split("\t")[0]: tuple(ast.literal_eval(line.split("\t")[1]))
        for line in KEY_TABLE.read_text().splitlines()
    }
    assert {key: tuple(value.shape) for key, value in network.state_dict().items()} == expected
    # The SMPL head starts from the smpl_mean_params asset (global orient: pi about x).
    assert torch.allclose(network.smpl_head[0].init_cam, torch.tensor([[0.9, 0.0, 0.0]]))


# Outputs of a converted official-layout checkpoint (weights 0.05 * randn with the official names),
# computed with the code before the anchored read-out existed (commit c260771^) and unchanged since.
PINNED_ORIENT = [
    [0.0513525, -0.9862899, -0.1568289, 0.9423791, 0.0998382, -0.3193027, 0.3305825, -0.1313953, 0.9345859],
    [-0.2786674, -0.9029917, -0.3270328, 0.8874101, -0.1119009, -0.447193, 0.3672163, -0.4148303, 0.8325071],
    [-0.0873997, -0.9574206, -0.2751489, 0.996007, -0.0789392, -0.0416965, 0.018201, -0.2776945, 0.9604968],
]
PINNED_BETAS_CAMERA = [
    [-1.040176, 0.3012541, 0.8336545, -0.2333663, 0.4652909, 1.9366263, 0.9162661, 0.6301276, -1.0892891, 0.3720076, -0.024589, -0.0281209, 0.0825042],
    [-1.2609675, 0.1018685, 0.8423789, -0.3046021, 0.9981062, 1.6181397, 0.1764499, 1.0599236, -0.2315137, 0.0149797, -0.0116194, -0.0441433, 0.0812342],
    [-1.247574, -0.0556902, 1.0740725, -0.1391856, 0.9087573, 1.5166352, 0.6832695, 0.8478967, -0.5799786, 0.2343492, -0.013159, -0.0396996, 0.0727533],
]  # fmt: skip
PINNED_SQUARED_NORMS = [80.4589255, 79.2344715, 79.4426906]


def test_converted_official_checkpoint_keeps_the_pre_anchor_outputs(tmp_path):
    generator = torch.Generator().manual_seed(0)
    state = {
        "encoder." + key: 0.05 * torch.randn(ast.literal_eval(shape), generator=generator)
        for key, shape in (line.split("\t")[:2] for line in KEY_TABLE.read_text().splitlines())
    }
    torch.save({"state_dict": state}, tmp_path / "pose_predictor.pth")
    mean_std = write_mean_std(tmp_path / "ms.npy")
    out = convert(tmp_path / "pose_predictor.pth", tmp_path / "converted.ckpt", config=OFFICIAL_SPLITS, mean_std=mean_std)
    network = load_pose_transformer(out)
    assert network.output_anchor == "none" and "output_anchor" not in network.config
    generator = torch.Generator().manual_seed(1)
    history = torch.randn(3, 7, 229, generator=generator)
    times = torch.tensor([[0, 1, 2, 3, 4, 5, 6], [0, 2, 3, 5, 6, 8, 9], [10, 11, 12, 13, 14, 15, 16]])
    predicted = network.predict_next(history, times, torch.tensor([0, 2, 5])).double()
    # 1e-6: the pins are rounded to 7 decimals; float32 sums may differ in the last bits across BLAS builds.
    torch.testing.assert_close(predicted[:, :9], torch.tensor(PINNED_ORIENT, dtype=torch.float64), rtol=0, atol=2e-6)
    torch.testing.assert_close(predicted[:, 216:], torch.tensor(PINNED_BETAS_CAMERA, dtype=torch.float64), rtol=0, atol=2e-6)
    torch.testing.assert_close(predicted.pow(2).sum(dim=1), torch.tensor(PINNED_SQUARED_NORMS, dtype=torch.float64), rtol=1e-6, atol=0)
