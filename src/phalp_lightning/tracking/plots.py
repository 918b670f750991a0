"""Pictures of a tracking result (:class:`phalp_lightning.api.Tracks`): paths, 3D positions, lifetimes.

Each function draws on a matplotlib axis (a new figure when none is given) and returns the axis;
track colours are the renderer's (:func:`~phalp_lightning.utils.colours.track_colours`), so a
track has the same colour in the plots as in the rendered video.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from phalp_lightning.utils.colours import track_colours
from phalp_lightning.utils.plotting import pyplot


class Tracks(Protocol):
    """What the plots read: a table with a row per (frame, track), as ``api.load_tracks`` returns."""

    table: Any  # pandas.DataFrame


def _axis(axis: Any, size: tuple[float, float]) -> Any:
    if axis is None:
        _, axis = pyplot().subplots(figsize=size)
    return axis


def _colour(track_id: int) -> np.ndarray:
    return track_colours(np.array([track_id]))[0] / 255.0


def plot_image_trajectories(tracks: Tracks, image: np.ndarray | None = None, axis: Any = None) -> Any:
    """Each track's path in the image: the bottom centre of its box (where it stands) per frame.

    Detected frames are joined by a line; frames where the track was only kept alive are left out.
    """
    axis = _axis(axis, (8, 4.5))
    table = tracks.table[tracks.table["detected"]]
    if image is not None:
        axis.imshow(image, alpha=0.6)
    for track_id, rows in table.groupby("track_id"):
        rows = rows.sort_values("frame")
        foot_x, foot_y = rows["x"] + rows["w"] / 2, rows["y"] + rows["h"]
        colour = _colour(int(track_id))
        axis.plot(foot_x, foot_y, "-", color=colour, lw=2, label=f"id {track_id}")
        axis.plot(foot_x.iloc[-1], foot_y.iloc[-1], "o", color=colour, ms=7)
    height, width = tracks.image_size
    if height and width:
        axis.set_xlim(0, width)
        axis.set_ylim(height, 0)
    axis.set(title="image-space trajectories (box bottom centre; dot = last frame)", xlabel="x (px)", ylabel="y (px)")
    axis.legend(fontsize=8, loc="upper right")
    return axis


def plot_top_down(tracks: Tracks, axis: Any = None) -> Any:
    """A bird's-eye view: each track's 3D position (camera translation x against depth z) over time.

    The position is PHALP's camera translation (x right, z away from the camera) in its virtual
    camera's units; marker size grows with time, so the direction of walking shows.
    """
    axis = _axis(axis, (6, 5))
    table = tracks.table[tracks.table["detected"]]
    last = max(int(table["frame"].max()), 1) if len(table) else 1
    for track_id, rows in table.groupby("track_id"):
        rows = rows.sort_values("frame")
        colour = _colour(int(track_id))
        axis.plot(rows["cam_x"], rows["cam_z"], "-", color=colour, lw=1, alpha=0.7)
        axis.scatter(rows["cam_x"], rows["cam_z"], s=6 + 30 * rows["frame"] / last, color=colour, label=f"id {track_id}")
    axis.scatter([0], [0], marker="^", s=80, color="k", label="camera")
    axis.set(title="top-down 3D location over time (marker grows with time)", xlabel="x (right)", ylabel="z (depth)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return axis


def plot_id_timeline(tracks: Tracks, axis: Any = None) -> Any:
    """Which ids are alive when: a bar per id, solid where detected, pale where only predicted."""
    axis = _axis(axis, (8, 0.6 + 0.45 * max(len(tracks.track_ids), 1)))
    table = tracks.table
    for row_number, track_id in enumerate(tracks.track_ids):
        rows = table[table["track_id"] == track_id]
        colour = _colour(track_id)
        for detected, alpha in ((True, 1.0), (False, 0.3)):
            frames = np.sort(rows.loc[rows["detected"] == detected, "frame"].to_numpy())
            axis.broken_barh(_runs(frames), (row_number - 0.35, 0.7), facecolors=[colour], alpha=alpha)
    axis.set_yticks(range(len(tracks.track_ids)), [f"id {t}" for t in tracks.track_ids])
    axis.set_ylim(-0.6, len(tracks.track_ids) - 0.4)
    axis.set_xlim(-0.5, max(tracks.num_frames, 1) - 0.5)
    axis.invert_yaxis()
    axis.set(title="id timeline (pale: alive but not detected)", xlabel="frame")
    axis.grid(axis="x", alpha=0.3)
    return axis


def _runs(frames: np.ndarray) -> list[tuple[float, float]]:
    """Consecutive frame runs as (start - 0.5, length) bars."""
    if len(frames) == 0:
        return []
    breaks = np.flatnonzero(np.diff(frames) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(frames)]])
    return [(float(frames[s]) - 0.5, float(frames[e - 1] - frames[s] + 1)) for s, e in zip(starts, ends, strict=True)]
