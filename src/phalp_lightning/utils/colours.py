"""One colour per track id, shared by the renderer, the overlays and the plots."""

from __future__ import annotations

import colorsys

import numpy as np


def track_colours(track_ids: np.ndarray) -> np.ndarray:
    """(M,) ids -> (M, 3) uint8 RGB, fixed per id across runs (golden-ratio hue steps)."""
    hues = (np.asarray(track_ids, dtype=np.float64) * 0.618033988749895) % 1.0
    return np.array([[round(255 * c) for c in colorsys.hsv_to_rgb(h, 0.75, 0.95)] for h in hues], dtype=np.uint8).reshape(-1, 3)
