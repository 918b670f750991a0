"""2-D drawing of tracks on a frame (boxes, ids, 2-D joints): the renderer that needs no GL."""

from __future__ import annotations

import numpy as np
import torch

from phalp_lightning.structures import FrameTracks
from phalp_lightning.utils.colours import track_colours
from phalp_lightning.utils.geometry import IMG_SIZE, padded_frame_to_image
from phalp_lightning.utils.vectors import LOCATION_JOINTS_2D, NUM_LOCATION_JOINTS


def joints_in_image(tracks: FrameTracks) -> np.ndarray:
    """(M, 44, 2) 2-D body joints in frame pixels (the appended location joint left out)."""
    height, width = tracks.image_size
    normalised = tracks.detections.location[:, LOCATION_JOINTS_2D].reshape(-1, NUM_LOCATION_JOINTS, 2)
    pixels = padded_frame_to_image(normalised.float() * IMG_SIZE, height, width, IMG_SIZE)
    return pixels[:, : NUM_LOCATION_JOINTS - 1].cpu().numpy()


def draw_tracks(image: np.ndarray, tracks: FrameTracks, draw_joints: bool = True, detected_only: bool = True) -> np.ndarray:
    """Draw box, "id <n>" label and joints of every (detected) entry on a copy of ``image`` (H, W, 3) RGB."""
    import cv2

    canvas = np.ascontiguousarray(image.copy())
    keep = tracks.detected if detected_only else torch.ones(len(tracks), dtype=torch.bool)
    ids = tracks.track_ids[keep].cpu().numpy()
    boxes = tracks.detections.boxes[keep].cpu().numpy()
    colours = track_colours(ids)
    joints = joints_in_image(tracks)[keep.cpu().numpy()] if draw_joints and len(tracks) else np.zeros((0, 44, 2))
    for k, track_id in enumerate(ids):
        colour = tuple(int(c) for c in colours[k])
        x1, y1, x2, y2 = (int(round(v)) for v in boxes[k])
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, 2)
        label = f"id {int(track_id)}"
        (text_w, text_h), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 2)
        cv2.rectangle(canvas, (x1, max(y1 - text_h - 6, 0)), (x1 + text_w + 4, max(y1, text_h + 6)), colour, -1)
        cv2.putText(canvas, label, (x1 + 2, max(y1 - 4, text_h + 2)), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
        if draw_joints:
            for x, y in joints[k]:
                if np.isfinite(x) and np.isfinite(y):
                    cv2.circle(canvas, (int(round(x)), int(round(y))), 2, colour, -1)
    cv2.putText(canvas, str(tracks.frame_index), (20, 40), cv2.FONT_HERSHEY_TRIPLEX, 1.0, (255, 255, 0), 1)
    return canvas
