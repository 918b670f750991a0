import numpy as np
import torch

from phalp_lightning.utils import vectors
from phalp_lightning.utils.geometry import axis_angle_to_rotmat


def test_pose_vector_layout_and_round_trip():
    generator = torch.Generator().manual_seed(1)
    global_orient = axis_angle_to_rotmat(torch.randn(3, 1, 3, generator=generator))
    body_pose = axis_angle_to_rotmat(torch.randn(3, 23, 3, generator=generator))
    betas = torch.randn(3, 10, generator=generator)
    cam_t = torch.tensor([[0.1, 0.2, 50.0], [0.0, 0.0, 100.0], [1.0, -1.0, 20.0]])
    pose = vectors.pose_vector(global_orient, body_pose, betas, cam_t)
    assert pose.shape == (3, 229)
    np.testing.assert_allclose(pose[:, 0:9].numpy(), global_orient.reshape(3, 9).numpy())
    # Row-major: element 1 is R[0, 1].
    np.testing.assert_allclose(pose[:, 1].numpy(), global_orient[:, 0, 0, 1].numpy())
    np.testing.assert_allclose(pose[:, 9:18].numpy(), body_pose[:, 0].reshape(3, 9).numpy())
    np.testing.assert_allclose(pose[:, 216:226].numpy(), betas.numpy())
    np.testing.assert_allclose(pose[:, 228].numpy(), cam_t[:, 2].numpy() / 200.0)
    smpl, cam_back = vectors.split_pose_vector(pose)
    np.testing.assert_allclose(smpl.body_pose.numpy(), body_pose.numpy())
    np.testing.assert_allclose(cam_back.numpy(), cam_t.numpy(), rtol=1e-6)


def test_location_vector_layout():
    joints = torch.arange(90, dtype=torch.float32).reshape(1, 45, 2)
    cam_t = torch.tensor([[1.0, 2.0, 3.0]])
    location = vectors.location_vector(joints, cam_t)
    assert location.shape == (1, 99)
    # Interleaved x, y per joint, divided by 256.
    np.testing.assert_allclose(location[0, :4].numpy(), np.array([0, 1, 2, 3]) / 256)
    np.testing.assert_allclose(location[0, 90:].numpy(), [1, 2, 3] * 3)
    np.testing.assert_allclose(vectors.location_point(location)[0].numpy(), np.array([88, 89]) / 256)
