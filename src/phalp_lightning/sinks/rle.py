"""COCO run-length encoding of binary masks (the ``mask`` key of PHALP's results), without pycocotools.

The encoding is pycocotools' compressed RLE: counts of alternating 0/1 runs in column-major
(Fortran) order, starting with zeros, written as its LEB128-like string.
"""

from __future__ import annotations

import numpy as np


def _run_lengths(mask: np.ndarray) -> list[int]:
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return []
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    return ([0] + counts) if flat[0] else counts


def _counts_to_string(counts: list[int]) -> str:
    characters = []
    for i, count in enumerate(counts):
        value = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            chunk = value & 0x1F
            value >>= 5
            more = value != -1 if chunk & 0x10 else value != 0
            if more:
                chunk |= 0x20
            characters.append(chr(chunk + 48))
    return "".join(characters)


def _string_to_counts(text: str) -> list[int]:
    counts: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            chunk = ord(text[position]) - 48
            value |= (chunk & 0x1F) << (5 * shift)
            more = bool(chunk & 0x20)
            position += 1
            shift += 1
            if not more and chunk & 0x10:
                value |= -1 << (5 * shift)
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def encode_mask(mask: np.ndarray) -> dict:
    """(H, W) bool -> ``{'size': [H, W], 'counts': str}`` (pycocotools' compressed RLE)."""
    height, width = mask.shape
    return {"size": [int(height), int(width)], "counts": _counts_to_string(_run_lengths(mask))}


def decode_mask(rle: dict) -> np.ndarray:
    """Inverse of :func:`encode_mask` -> (H, W) bool."""
    height, width = rle["size"]
    counts = rle["counts"] if isinstance(rle["counts"], list) else _string_to_counts(rle["counts"])
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape((height, width), order="F")


def box_mask(box_xyxy: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) bool mask of an axis-aligned box (the mask stored when the detector gives none)."""
    x1, y1, x2, y2 = np.round(np.asarray(box_xyxy, dtype=np.float64)).astype(int)
    mask = np.zeros((height, width), dtype=bool)
    mask[max(y1, 0) : max(min(y2, height), 0), max(x1, 0) : max(min(x2, width), 0)] = True
    return mask
