"""COCO RLE of masks: round trip, and the exact pycocotools string of a known mask."""

import numpy as np

from phalp_lightning.sinks.rle import box_mask, decode_mask, encode_mask


def test_round_trip_of_random_masks():
    rng = np.random.default_rng(1)
    for shape in [(7, 5), (64, 48), (1, 1)]:
        mask = rng.random(shape) > 0.6
        assert np.array_equal(decode_mask(encode_mask(mask)), mask)
    full = np.ones((4, 3), bool)
    assert np.array_equal(decode_mask(encode_mask(full)), full)


def test_known_pycocotools_string():
    # Column-major runs: 1 zero, 2 ones, 5 zeros, 1 one, 3 zeros. From the 4th count on, pycocotools
    # stores the difference to the count two back (1 - 2 = -1 -> "O", 3 - 5 = -2 -> "N").
    mask = np.zeros((3, 4), bool)
    mask[1:3, 0] = True
    mask[2, 2] = True
    rle = encode_mask(mask)
    assert rle == {"size": [3, 4], "counts": "125ON"}


def test_box_mask_is_clipped_to_the_frame():
    mask = box_mask(np.array([-5, 2, 3, 50]), 10, 10)
    assert mask.sum() == 3 * 8 and mask[2:, :3].all()
