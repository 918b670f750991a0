"""HMAR network: official key set, output shapes, camera geometry, eval determinism, gradients."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.fake_crops import fake_crop_batch

KEY_TABLE = Path(__file__).parent / "data" / "hmar_state_dict_keys.tsv"


def read_key_table() -> dict[str, tuple[tuple[int, ...], str]]:
    """The official HMAR state-dict table (686 keys): name -> (shape, dtype)."""
    table = {}
    for line in KEY_TABLE.read_text().splitlines():
        name, spec = line.split("\t")
        shape_text, dtype = spec.rsplit(" ", 1)
        shape = tuple(int(dim) for dim in shape_text.strip("()").split(",") if dim.strip())
        table[name] = (shape, dtype)
    return table


@pytest.fixture(scope="module")
def net(synthetic_assets):
    from phalp_lightning.models.components.hmar import HMAR

    torch.manual_seed(0)
    return HMAR(assets_dir=synthetic_assets, img_size=64)


def test_state_dict_has_exactly_the_official_keys_shapes_and_dtypes(net):
    table = read_key_table()
    assert len(table) == 686
    state = net.state_dict()
    assert list(state) == list(table)  # same names, same order as the official modules
    for name, tensor in state.items():
        shape, dtype = table[name]
        assert tuple(tensor.shape) == shape, name
        assert str(tensor.dtype).removeprefix("torch.") == dtype, name
    assert not any(name.startswith("smpl.") for name in state)


def test_forward_output_shapes(net):
    batch = fake_crop_batch(2, 64)
    net.eval()
    with torch.no_grad():
        output = net(batch["image"])
    assert output["uv_image"].shape == (2, 4, 64, 64)
    assert output["uv_vector"].shape == (2, 4, 64, 64)
    assert output["flow"].shape == (2, 2, 64, 64)
    assert output["pose_emb"].shape == (2, 2048)
    assert output["pose_smpl"]["global_orient"].shape == (2, 1, 3, 3)
    assert output["pose_smpl"]["body_pose"].shape == (2, 23, 3, 3)
    assert output["pose_smpl"]["betas"].shape == (2, 10)
    assert output["pred_cam"].shape == (2, 3)
    # Double tanh bounds the flow; the UV mask channel is binarised to +-1 in both UV outputs.
    assert output["flow"].abs().max() <= torch.tanh(torch.tensor(1.0)) + 1e-6
    assert set(output["uv_vector"][:, 3].unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal(output["uv_image"][:, 3], output["uv_vector"][:, 3])
    rotations = torch.cat([output["pose_smpl"]["global_orient"], output["pose_smpl"]["body_pose"]], 1)
    identity = torch.eye(3).expand_as(rotations)
    assert torch.allclose(rotations @ rotations.transpose(-1, -2), identity, atol=1e-5)
    code = net.encode_appearance(output["uv_vector"])
    assert code.shape == (2, 16 * 4 * 4) and (code >= 0).all()


def test_wrong_crop_size_is_refused(net):
    with pytest.raises(ValueError, match="64 px crops"):
        net(torch.zeros(1, 4, 96, 96))


def test_untrained_prediction_starts_at_mean_parameters(net):
    from phalp_lightning.utils.geometry import rot6d_to_rotmat

    net.eval()
    with torch.no_grad():
        output = net(fake_crop_batch(2, 64)["image"])
    mean_rotations = rot6d_to_rotmat(net.smpl_head.init_body_pose.reshape(24, 6))
    # Decoder layers start with gain 0.01, so the first prediction is close to the mean body.
    assert torch.allclose(
        output["pose_smpl"]["global_orient"][:, 0], mean_rotations[0].expand(2, 3, 3), atol=0.15
    )
    assert torch.allclose(output["pred_cam"], net.smpl_head.init_cam.expand(2, 3), atol=0.15)


def test_get_3d_parameters_projects_the_origin_to_the_box_centre(net):
    pose = {
        "global_orient": torch.eye(3).expand(2, 1, 3, 3),
        "body_pose": torch.eye(3).expand(2, 23, 3, 3),
        "betas": torch.zeros(2, 10),
    }
    pred_cam = torch.tensor([[0.9, 0.0, 0.0], [1.2, 0.0, 0.0]])
    center = torch.tensor([[100.0, 140.0], [30.0, 200.0]])
    scale = torch.tensor([80.0, 50.0])
    result = net.get_3d_parameters(pose, pred_cam, center, scale)
    assert result["joints_3d"].shape == (2, 45, 3) and result["joints_2d"].shape == (2, 45, 2)
    assert torch.equal(result["joints_3d"][:, 44], torch.zeros(2, 3))
    assert torch.allclose(result["joints_2d"][:, 44], center, atol=1e-3)
    assert torch.allclose(result["pred_cam_t"][:, 2], 2 * 5000.0 / (pred_cam[:, 0] * scale), rtol=1e-5)


def test_eval_mode_is_deterministic_and_keeps_spectral_norm_state(net):
    net.eval()
    image = fake_crop_batch(2, 64, seed=3)["image"]
    u_before = net.texture_head.decoder.G_middle_0.conv_0.weight_u.clone()
    with torch.no_grad():
        first, second = net(image), net(image)
    for key in ("uv_image", "uv_vector", "flow", "pose_emb", "pred_cam"):
        assert torch.equal(first[key], second[key]), key
    assert torch.equal(first["pose_smpl"]["body_pose"], second["pose_smpl"]["body_pose"])
    assert torch.equal(u_before, net.texture_head.decoder.G_middle_0.conv_0.weight_u)


def test_batched_forward_equals_per_person_forward(net):
    net.eval()
    image = fake_crop_batch(2, 64, seed=4)["image"]
    with torch.no_grad():
        together = net(image)
        alone = net(image[1:])
    assert torch.allclose(together["pred_cam"][1:], alone["pred_cam"], atol=1e-5)
    assert torch.allclose(together["flow"][1:], alone["flow"], atol=1e-5)


def test_feat_mask_gates_the_pose_feature(net):
    net.eval()
    image = fake_crop_batch(1, 64)["image"]
    empty = image.clone()
    empty[:, 3] = 0
    with torch.no_grad():
        assert net(image)["pose_emb"].abs().sum() > 0
        assert net(empty)["pose_emb"].abs().sum() == 0


def test_every_head_receives_gradients(synthetic_assets):
    from phalp_lightning.models.components.hmar import HMAR
    from phalp_lightning.models.hmar_module import HMARModule

    torch.manual_seed(0)
    module = HMARModule(HMAR(assets_dir=synthetic_assets, img_size=64), assets_dir=synthetic_assets)
    module.train()
    terms, _ = module._losses(fake_crop_batch(2, 64))
    module._total(terms).backward()
    unused = {"net.backbone.conv1m.weight"}  # the 4-channel stem is idle with mask_type "feat"
    for name, parameter in module.named_parameters():
        if name in unused:
            assert parameter.grad is None
            continue
        assert parameter.grad is not None, f"{name} received no gradient"
        assert torch.isfinite(parameter.grad).all(), name
    for head in ("backbone", "smpl_head", "texture_head", "encoding_head"):
        total = sum(
            p.grad.abs().sum()
            for n, p in module.net.named_parameters()
            if n.startswith(head) and p.grad is not None
        )
        assert total > 0, f"{head} got all-zero gradients"
    decoder_grad = sum(
        p.grad.abs().sum() for n, p in module.net.encoding_head.named_parameters() if n.startswith("t_")
    )
    assert decoder_grad > 0


def test_appearance_loss_does_not_train_the_texture_head(synthetic_assets):
    from phalp_lightning.models.components.hmar import HMAR
    from phalp_lightning.models.hmar_module import HMARModule

    weights = {
        name: 0.0 for name in ("keypoints_2d", "keypoints_3d", "smpl_pose", "smpl_betas", "camera", "uv_flow")
    }
    module = HMARModule(
        HMAR(assets_dir=synthetic_assets, img_size=64),
        loss_weights={**weights, "appearance": 1.0},
        assets_dir=synthetic_assets,
    )
    terms, _ = module._losses(fake_crop_batch(2, 64))
    assert set(terms) == {"appearance"}
    module._total(terms).backward()
    assert all(p.grad is None for p in module.net.texture_head.parameters())
    assert all(p.grad is not None for p in module.net.encoding_head.parameters())
