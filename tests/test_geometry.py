import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from phalp_lightning.utils import geometry


def random_axis_angles(n: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    axes = torch.nn.functional.normalize(torch.randn(n, 3, generator=generator, dtype=torch.float64), dim=-1)
    angles = torch.rand(n, 1, generator=generator, dtype=torch.float64) * math.pi * 0.999
    return axes * angles


def test_axis_angle_to_rotmat_matches_scipy():
    axis_angle = random_axis_angles(64)
    expected = Rotation.from_rotvec(axis_angle.numpy()).as_matrix()
    np.testing.assert_allclose(geometry.axis_angle_to_rotmat(axis_angle).numpy(), expected, atol=1e-10)


def test_axis_angle_known_value_quarter_turn_about_z():
    rotmat = geometry.axis_angle_to_rotmat(torch.tensor([[0.0, 0.0, math.pi / 2]], dtype=torch.float64))
    np.testing.assert_allclose(rotmat[0].numpy(), [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)


def test_zero_rotation_is_identity_with_finite_gradient():
    axis_angle = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    rotmat = geometry.axis_angle_to_rotmat(axis_angle)
    np.testing.assert_allclose(rotmat.detach().numpy(), np.broadcast_to(np.eye(3), (2, 3, 3)), atol=1e-12)
    rotmat.sum().backward()
    assert torch.isfinite(axis_angle.grad).all()


def test_rotmat_to_axis_angle_round_trip_including_near_pi():
    axis_angle = random_axis_angles(64)
    axis_angle[0] = torch.tensor([math.pi - 1e-7, 0.0, 0.0], dtype=torch.float64)
    recovered = geometry.rotmat_to_axis_angle(geometry.axis_angle_to_rotmat(axis_angle))
    np.testing.assert_allclose(
        geometry.axis_angle_to_rotmat(recovered).numpy(), geometry.axis_angle_to_rotmat(axis_angle).numpy(), atol=1e-6
    )
    np.testing.assert_allclose(recovered[1:].numpy(), axis_angle[1:].numpy(), atol=1e-8)


def test_rot6d_round_trip_and_column_convention():
    rotmat = geometry.axis_angle_to_rotmat(random_axis_angles(32))
    rot6d = geometry.rotmat_to_rot6d(rotmat)
    # The 6-D vector is the first column followed by the second column.
    np.testing.assert_allclose(rot6d[:, :3].numpy(), rotmat[:, :, 0].numpy())
    np.testing.assert_allclose(rot6d[:, 3:].numpy(), rotmat[:, :, 1].numpy())
    np.testing.assert_allclose(geometry.rot6d_to_rotmat(rot6d).numpy(), rotmat.numpy(), atol=1e-10)


def test_rot6d_to_rotmat_orthonormalises_any_input():
    rot6d = torch.tensor([[2.0, 0.0, 0.0, 1.0, 3.0, 0.0]])
    rotmat = geometry.rot6d_to_rotmat(rot6d)[0]
    np.testing.assert_allclose(rotmat.numpy(), np.eye(3), atol=1e-6)
    batch = geometry.rot6d_to_rotmat(torch.randn(100, 6))
    eye = batch @ batch.transpose(1, 2)
    np.testing.assert_allclose(eye.numpy(), np.broadcast_to(np.eye(3), eye.shape), atol=1e-5)
    np.testing.assert_allclose(torch.linalg.det(batch).numpy(), np.ones(100), atol=1e-5)


def test_perspective_projection_known_values():
    points = torch.tensor([[[1.0, 2.0, 10.0], [0.0, 0.0, 0.0]]])
    translation = torch.tensor([[0.0, 0.0, 10.0]])
    projected = geometry.perspective_projection(points, translation, focal_length=5000.0, camera_center=128.0)
    np.testing.assert_allclose(projected[0].numpy(), [[128 + 5000 * 1 / 20, 128 + 5000 * 2 / 20], [128.0, 128.0]])


def test_crop_camera_to_full_translation_formula():
    # s = 0.9, scale = 100 px, centred box: t_z = 2 * 5000 / (0.9 * 100).
    cam = torch.tensor([[0.9, 0.1, -0.2], [0.9, 0.1, -0.2]])
    center = torch.tensor([[128.0, 128.0], [178.0, 28.0]])
    scale = torch.tensor([100.0, 100.0])
    cam_t = geometry.crop_cam_to_full_translation(cam, center, scale)
    tz = 2 * 5000 / (0.9 * 100 + 1e-9)
    np.testing.assert_allclose(cam_t[0].numpy(), [0.1, -0.2, tz], rtol=1e-6)
    np.testing.assert_allclose(cam_t[1].numpy(), [0.1 + 50 * tz / 5000, -0.2 - 100 * tz / 5000, tz], rtol=1e-6)


def test_root_projects_to_box_centre():
    """The SMPL origin with the converted translation lands on the box centre (PHALP's location point)."""
    cam = torch.tensor([[0.8, 0.0, 0.0]])
    center = torch.tensor([[90.0, 170.0]])
    cam_t = geometry.crop_cam_to_full_translation(cam, center, torch.tensor([60.0]))
    pixel = geometry.project_to_padded_frame(torch.zeros(1, 1, 3), cam_t)
    # x_n = (f/256) * t_x / t_z = (center - 128) / 256, so u = center.
    np.testing.assert_allclose(pixel[0, 0].numpy(), [90.0, 170.0], rtol=1e-5)


@pytest.mark.parametrize("height,width", [(480, 640), (720, 400)])
def test_box_centre_scale_in_padded_frame_and_back(height, width):
    boxes = torch.tensor([[100.0, 50.0, 200.0, 250.0]])
    center, scale = geometry.box_center_scale_in_padded_frame(boxes, height, width)
    side = max(height, width)
    ratio = 256 / side
    top, left = (side - height) // 2, (side - width) // 2
    np.testing.assert_allclose(center[0].numpy(), [(150 + left) * ratio, (150 + top) * ratio], rtol=1e-6)
    np.testing.assert_allclose(scale.numpy(), [200 * ratio], rtol=1e-6)
    back = geometry.padded_frame_to_image(center, height, width)
    np.testing.assert_allclose(back[0].numpy(), [150.0, 150.0], rtol=1e-5)
