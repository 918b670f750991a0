import pickle

import numpy as np
import pytest
import torch
from phalp_lightning.datamodules.synthetic.mannequin import (
    JOINTS_REST,
    NUM_FACES,
    NUM_VERTICES,
    SELECTED_VERTICES,
)

from phalp_lightning.assets import AssetMissingError, is_synthetic, resolve
from phalp_lightning.body_model import BodyModel
from phalp_lightning.utils.geometry import axis_angle_to_rotmat


@pytest.fixture(scope="module")
def body_model(synthetic_assets):
    return BodyModel(synthetic_assets / "3D/models/smpl", synthetic_assets / "3D/SMPL_to_J19.pkl")


def rest_pose(batch: int):
    return torch.eye(3).expand(batch, 1, 3, 3).clone(), torch.eye(3).expand(batch, 23, 3, 3).clone(), torch.zeros(batch, 10)


def test_generated_smpl_has_smpl_array_names_and_shapes(synthetic_assets):
    with (synthetic_assets / "3D/models/smpl/SMPL_NEUTRAL.pkl").open("rb") as handle:
        smpl = pickle.load(handle)
    expected = {
        "v_template": (NUM_VERTICES, 3), "shapedirs": (NUM_VERTICES, 3, 10), "posedirs": (NUM_VERTICES, 3, 207),
        "J_regressor": (24, NUM_VERTICES), "weights": (NUM_VERTICES, 24), "kintree_table": (2, 24), "f": (NUM_FACES, 3),
    }
    assert {key: smpl[key].shape for key in expected} == expected
    np.testing.assert_allclose(smpl["weights"].sum(1), 1.0)
    np.testing.assert_allclose(smpl["J_regressor"].sum(1), 1.0)
    assert smpl["f"].max() == NUM_VERTICES - 1
    with (synthetic_assets / "3D/SMPL_to_J19.pkl").open("rb") as handle:
        assert pickle.load(handle).shape == (19, NUM_VERTICES)
    mean = np.load(synthetic_assets / "3D/smpl_mean_params.npz")
    assert mean["pose"].shape == (144,) and mean["shape"].shape == (10,) and mean["cam"].shape == (3,)
    texture = np.load(synthetic_assets / "3D/texture.npz")
    assert texture["smpl_faces"].shape == (NUM_FACES, 3) and texture["ft"].shape == (NUM_FACES, 3)
    assert texture["vt"].min() >= 0 and texture["vt"].max() <= 1
    assert np.load(synthetic_assets / "3D/mean_std.npy").shape == (2, 1, 229)
    fmap = np.load(synthetic_assets / "3D/fmap_256.npy")
    assert fmap.shape == (256, 256) and fmap.max() < NUM_FACES and (fmap >= 0).mean() > 0.3
    assert np.load(synthetic_assets / "3D/bmap_256.npy").shape == (256, 256, 3)
    assert is_synthetic(synthetic_assets)


def test_forward_shapes_and_rest_joints_where_a_person_has_them(body_model):
    output = body_model(*rest_pose(2))
    assert output.vertices.shape == (2, NUM_VERTICES, 3)
    assert output.joints.shape == (2, 44, 3)
    vertices = output.vertices[0].numpy()
    height = vertices[:, 1].max() - vertices[:, 1].min()
    assert 1.6 < height < 1.9, height  # an adult's stature in metres
    global_orient, body_pose, betas = rest_pose(1)
    smpl_joints = body_model.smpl(global_orient=global_orient, body_pose=body_pose, betas=betas, pose2rot=False).joints[0, :24].detach().numpy()
    assert np.abs(smpl_joints - JOINTS_REST).max() < 0.05
    # BODY-25 order: 0 nose above 1 neck above 8 mid-hip; left wrist (7) at +x, right wrist (4) at -x.
    joints = output.joints[0].numpy()
    assert joints[0, 1] > joints[1, 1] > joints[8, 1]
    assert joints[7, 0] > 0.5 and joints[4, 0] < -0.5


def test_joints_lie_inside_the_mesh_extent(body_model):
    output = body_model(*rest_pose(1))
    vertices, joints = output.vertices[0].numpy(), output.joints[0].numpy()
    distance = np.linalg.norm(joints[:, None] - vertices[None], axis=-1).min(1)
    assert distance.max() < 0.12  # every joint within 12 cm of the skin


def test_landmark_vertices_sit_on_their_spots(synthetic_assets):
    with (synthetic_assets / "3D/models/smpl/SMPL_NEUTRAL.pkl").open("rb") as handle:
        template = pickle.load(handle)["v_template"]
    for vertex_id, target in SELECTED_VERTICES.items():
        assert np.linalg.norm(template[vertex_id] - np.asarray(target)) < 0.06, vertex_id


def test_posing_moves_the_arm_and_shape_changes_size(body_model):
    global_orient, body_pose, betas = rest_pose(1)
    # Left shoulder is SMPL joint 16 -> body_pose index 15; rotate the arm down by 90 degrees about z.
    body_pose[0, 15] = axis_angle_to_rotmat(torch.tensor([0.0, 0.0, -np.pi / 2]))
    posed = body_model(global_orient, body_pose, betas).joints[0].numpy()
    rest = body_model(*rest_pose(1)).joints[0].numpy()
    assert posed[7, 1] < rest[7, 1] - 0.3  # left wrist dropped
    np.testing.assert_allclose(posed[4], rest[4], atol=1e-5)  # right wrist unchanged
    tall = torch.zeros(1, 10)
    tall[0, 0] = 2.0
    tall_vertices = body_model(*rest_pose(1)[:2], tall).vertices[0].numpy()
    assert np.ptp(tall_vertices[:, 1]) > np.ptp(body_model(*rest_pose(1)).vertices[0].numpy()[:, 1]) * 1.05


def test_batch_forward_equals_single(body_model):
    generator = torch.Generator().manual_seed(0)
    pose = axis_angle_to_rotmat(0.3 * torch.randn(3, 23, 3, generator=generator))
    orient = axis_angle_to_rotmat(0.3 * torch.randn(3, 1, 3, generator=generator))
    betas = torch.randn(3, 10, generator=generator)
    batch = body_model(orient, pose, betas).joints
    single = torch.cat([body_model(orient[i : i + 1], pose[i : i + 1], betas[i : i + 1]).joints for i in range(3)])
    torch.testing.assert_close(batch, single)


def test_missing_asset_error_names_file_and_remedy(tmp_path, monkeypatch):
    monkeypatch.setenv("PHALP_ASSETS", str(tmp_path))
    with pytest.raises(AssetMissingError) as error:
        BodyModel()
    message = str(error.value)
    assert str(tmp_path / "3D/models/smpl/SMPL_NEUTRAL.pkl") in message
    assert "PHALP_ASSETS" in message and "python -m phalp_lightning.assets generate" in message
    with pytest.raises(AssetMissingError, match="hmar_v2_weights.pth"):
        resolve("hmar_weights")
