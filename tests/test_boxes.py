"""The shared box IoU: formats, batching, and degenerate boxes (0, never NaN)."""

import numpy as np
import pytest

from phalp_lightning.evaluation.sequences import box_iou_xywh
from phalp_lightning.utils.boxes import box_iou


def _reference_iou(a: np.ndarray, b: np.ndarray) -> float:
    """One pair of xyxy boxes, written out by hand."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    area_a = max(a[2] - a[0], 0.0) * max(a[3] - a[1], 0.0)
    area_b = max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0)
    return inter / (area_a + area_b - inter) if inter > 0 else 0.0


def test_pairwise_matrix_matches_a_per_pair_reference_in_both_formats():
    rng = np.random.default_rng(3)
    corner_a, corner_b = rng.uniform(0, 50, (5, 2)), rng.uniform(0, 50, (7, 2))
    xywh_a = np.concatenate([corner_a, rng.uniform(1, 30, (5, 2))], 1)
    xywh_b = np.concatenate([corner_b, rng.uniform(1, 30, (7, 2))], 1)
    xyxy_a = np.concatenate([xywh_a[:, :2], xywh_a[:, :2] + xywh_a[:, 2:]], 1)
    xyxy_b = np.concatenate([xywh_b[:, :2], xywh_b[:, :2] + xywh_b[:, 2:]], 1)
    expected = np.array([[_reference_iou(a, b) for b in xyxy_b] for a in xyxy_a])
    assert expected.max() > 0  # some pairs overlap
    np.testing.assert_allclose(box_iou(xyxy_a, xyxy_b), expected, rtol=1e-12)
    np.testing.assert_allclose(box_iou(xywh_a, xywh_b, box_format="xywh"), expected, rtol=1e-12)
    np.testing.assert_array_equal(box_iou_xywh(xywh_a, xywh_b), box_iou(xywh_a, xywh_b, box_format="xywh"))


def test_known_values():
    iou = box_iou(np.array([0, 0, 10, 10]), np.array([[5, 0, 15, 10], [20, 20, 21, 21], [0, 0, 10, 10]]))
    np.testing.assert_allclose(iou, [[50 / 150, 0.0, 1.0]])


def test_degenerate_boxes_have_zero_iou_and_never_nan():
    zero_width = np.array([[3.0, 3.0, 3.0, 8.0]])  # xyxy, width 0
    point = np.array([[3.0, 3.0, 3.0, 3.0]])
    inverted = np.array([[8.0, 8.0, 2.0, 2.0]])  # x2 < x1 and y2 < y1: positive product of sides
    normal = np.array([[0.0, 0.0, 10.0, 10.0]])
    for degenerate in (zero_width, point, inverted):
        for min_union in (0.0, 1e-9):
            for other in (degenerate, normal):
                iou = box_iou(degenerate, other, min_union=min_union)
                assert np.isfinite(iou).all() and (iou == 0).all(), (degenerate, other, min_union)
    # xywh: zero or negative width or height.
    for degenerate in ([[3, 3, 0, 5]], [[3, 3, 0, 0]], [[8, 8, -6, -6]]):
        iou = box_iou(np.array(degenerate, float), np.array([[0, 0, 10, 10], degenerate[0]], float), box_format="xywh")
        assert np.isfinite(iou).all() and (iou == 0).all(), degenerate


def test_min_union_floors_only_the_tiny_overlaps():
    tiny_a, tiny_b = np.array([[0.0, 0.0, 1e-5, 1e-5]]), np.array([[0.0, 0.0, 1e-5, 2e-5]])  # union 2e-10
    assert box_iou(tiny_a, tiny_b)[0, 0] == pytest.approx(0.5)
    assert box_iou(tiny_a, tiny_b, min_union=1e-9)[0, 0] == pytest.approx(1e-10 / 1e-9)
    normal_a, normal_b = np.array([[0.0, 0.0, 10.0, 10.0]]), np.array([[5.0, 0.0, 15.0, 10.0]])
    assert box_iou(normal_a, normal_b, min_union=1e-9) == box_iou(normal_a, normal_b)


def test_batched_leading_dimensions_and_empty_sets():
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 40, (3, 4, 2))
    a = np.concatenate([corners, corners + rng.uniform(1, 20, (3, 4, 2))], -1)  # (3, 4, 4)
    corners = rng.uniform(0, 40, (3, 2, 2))
    b = np.concatenate([corners, corners + rng.uniform(1, 20, (3, 2, 2))], -1)  # (3, 2, 4)
    batched = box_iou(a, b)
    assert batched.shape == (3, 4, 2)
    for frame in range(3):
        np.testing.assert_array_equal(batched[frame], box_iou(a[frame], b[frame]))
    assert box_iou(np.zeros((0, 4)), b[0]).shape == (0, 2)
    assert box_iou(a[0], np.zeros((0, 4))).shape == (4, 0)


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="box_format"):
        box_iou(np.zeros((1, 4)), np.zeros((1, 4)), box_format="cxcywh")
