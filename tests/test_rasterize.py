"""The CPU rasteriser: coverage, depth order, perspective depth, culling and per-mesh masks."""

import numpy as np
import pytest

from phalp_lightning.utils.rasterize import project_points, rasterize, render_meshes


def _square(x0, y0, side, depth):
    vertices = np.array([[x0, y0, depth], [x0 + side, y0, depth], [x0 + side, y0 + side, depth], [x0, y0 + side, depth]], float)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    return vertices, faces


def test_square_covers_exactly_its_pixels_with_its_colour_and_depth():
    vertices, faces = _square(2.0, 3.0, 5.0, 4.0)
    out = rasterize(vertices, faces, np.full((2, 3), [200, 10, 30]), 12, 12, background=(1, 2, 3))
    expected = np.zeros((12, 12), bool)
    expected[3:8, 2:7] = True  # pixel centres j + 0.5 inside [2, 7) x [3, 8)
    assert np.array_equal(out.mask == 0, expected)
    assert (out.image[expected] == [200, 10, 30]).all() and (out.image[~expected] == [1, 2, 3]).all()
    assert np.allclose(out.depth[expected], 4.0) and np.isinf(out.depth[~expected]).all()
    assert out.coverage.tolist() == [25]


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_nearer_mesh_wins_whatever_the_order_and_coverage_is_amodal(order):
    near = _square(0.0, 0.0, 6.0, 2.0)
    far = _square(3.0, 3.0, 6.0, 5.0)
    meshes = [near, far]
    vertices = [meshes[i][0] for i in order]
    faces = [meshes[i][1] for i in order]
    colors = [np.full((2, 3), 50 * (i + 1)) for i in order]
    out = rasterize(vertices, faces, colors, 10, 10)
    near_index = order.index(0)
    far_index = order.index(1)
    assert (out.mask[3:6, 3:6] == near_index).all()  # the overlap shows the near square
    assert out.coverage[far_index] == 36 and out.coverage[near_index] == 36
    assert out.visible_pixels()[far_index] == 36 - 9
    assert out.person_mask(far_index).sum() == 27


def test_depth_is_perspective_correct_on_a_slanted_triangle():
    # A plane z = 2 + x_cam; project with f = 10, centre 0 and compare with the ray-plane intersection.
    camera = np.array([[-1.0, -1.0, 1.0], [1.0, -1.0, 3.0], [0.0, 1.0, 2.0]])
    pixels = project_points(camera, 10.0, (10.0, 10.0))
    out = rasterize(pixels, np.array([[0, 1, 2]]), np.full((1, 3), 255.0), 20, 20)
    rows, cols = np.nonzero(out.mask == 0)
    ray_x = (cols + 0.5 - 10.0) / 10.0
    expected_depth = 2.0 / (1.0 - ray_x)  # z = 2 + x, x = ray_x * z
    assert len(rows) > 20
    assert np.allclose(out.depth[rows, cols], expected_depth, rtol=1e-5)


def test_render_meshes_projects_to_the_pinhole_size_and_culling_does_not_change_the_result(synthetic_assets):
    from phalp_lightning.datamodules.synthetic.people import BodyModelHandle, global_orientation

    body = BodyModelHandle(synthetic_assets)
    vertices, _ = body.pose(global_orientation(np.array([0.3])), np.broadcast_to(np.eye(3), (1, 23, 3, 3)), np.zeros((1, 10)))
    mesh = vertices[0] + np.array([0.0, 0.0, 4.0])
    colors = np.full((len(mesh), 3), 120.0)
    culled = render_meshes([mesh], body.faces, [colors], 100.0, (64.0, 64.0), 128, 128)
    full = render_meshes([mesh], body.faces, [colors], 100.0, (64.0, 64.0), 128, 128, cull_backfaces=False)
    assert np.array_equal(culled.mask, full.mask)
    assert np.allclose(culled.depth, full.depth)
    rows = np.nonzero((culled.mask == 0).any(axis=1))[0]
    projected = project_points(mesh, 100.0, (64.0, 64.0))
    assert abs((rows.max() + 1 - rows.min()) - np.ptp(projected[:, 1])) <= 2.0
