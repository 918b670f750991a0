"""The hand-off records carry their row operations: select, cat, empty (as detectron2's Instances)."""

from __future__ import annotations

import pytest
import torch

from phalp_lightning.structures import ROW_FIELDS, FrameDetections, FrameTracks, absent_3d


def _frame(index: int, count: int, uv: bool = True) -> FrameDetections:
    return FrameDetections(
        video="clip",
        frame_index=index,
        frame_name=f"{index:06d}.jpg",
        image_size=(64, 96),
        boxes=torch.arange(count * 4, dtype=torch.float32).reshape(count, 4) + 100 * index,
        scores=torch.full((count,), 0.5 + 0.1 * index),
        uv=torch.zeros(count, 4, 8, 8) if uv else None,
        shot=index == 2,
        extra={"index": index},
        **absent_3d(count, appearance_dim=16),
    ).validate()


def test_cat_puts_rows_one_block_after_the_other_with_the_given_frame_fields():
    first, second = _frame(1, 2), _frame(2, 3, uv=False)
    joined = FrameDetections.cat([first, second], _frame(7, 0))
    assert len(joined) == 5 and joined.validate() is joined
    assert torch.equal(joined.boxes, torch.cat([first.boxes, second.boxes]))
    assert torch.equal(joined.scores, torch.cat([first.scores, second.scores]))
    assert joined.uv is None  # missing in one block: missing in the result
    assert (joined.frame_index, joined.frame_name, joined.shot, joined.extra) == (7, "000007.jpg", False, {"index": 7})
    # Without a frame the first block's frame-level fields are kept.
    assert FrameDetections.cat([second, first]).frame_index == 2


def test_cat_of_one_block_shares_its_tensors_and_of_none_is_the_empty_frame():
    block = _frame(1, 2)
    alone = FrameDetections.cat([block], _frame(3, 1))
    assert alone.boxes is block.boxes and alone.frame_index == 3
    nothing = FrameDetections.cat([], _frame(3, 1))
    assert len(nothing) == 0 and nothing.frame_index == 3 and nothing.uv.shape == (0, 4, 8, 8)
    with pytest.raises(ValueError, match="no blocks and no frame"):
        FrameDetections.cat([])


def test_empty_keeps_the_frame_and_every_row_field_at_zero_rows():
    frame = _frame(2, 3)
    empty = frame.empty()
    assert (empty.video, empty.frame_index, empty.shot, empty.image_size) == ("clip", 2, True, (64, 96))
    for name in ROW_FIELDS:
        value, before = getattr(empty, name), getattr(frame, name)
        assert (value is None) == (before is None), name
        if value is not None:
            assert value.shape == (0, *before.shape[1:]) and value.dtype == before.dtype, name
    tracks = FrameTracks.empty(frame)
    assert len(tracks) == 0 and tracks.track_ids.dtype == torch.int64 and tracks.shot
    assert (tracks.frame_index, tracks.frame_name, len(tracks.detections)) == (2, "000002.jpg", 0)
