"""Random ground truth / tracker output pairs for metric cross-checks and benchmarks (no hand values)."""

from __future__ import annotations

import numpy as np

from phalp_lightning.track_sequence import TrackSequence


def random_tracking_scene(seed: int, num_frames: int = 25, num_people: int = 6, name: str | None = None,
                          miss_rate: float = 0.15, clutter_rate: float = 0.3) -> tuple[TrackSequence, TrackSequence]:
    """Boxes walking in straight lines, and a noisy tracker with misses, one id switch and clutter.

    Args:
        seed: random seed.
        num_frames: frames of the sequence.
        num_people: ground-truth tracks.
        name: sequence name (default ``s<seed>``).
        miss_rate: probability that a person is not annotated in a frame.
        clutter_rate: probability of a false-positive box per frame.

    Returns:
        (ground truth, prediction) of one sequence.
    """
    rng = np.random.default_rng(seed)
    start, velocity = rng.uniform(0, 400, (num_people, 2)), rng.normal(0, 5, (num_people, 2))
    size = rng.uniform(40, 120, (num_people, 2))
    pred_ids = rng.permutation(max(100, num_people))[:num_people]
    frames = np.repeat(np.arange(num_frames), num_people)
    people = np.tile(np.arange(num_people), num_frames)
    annotated = rng.random(frames.shape[0]) >= miss_rate
    xy = start[people] + velocity[people] * frames[:, None]
    gt_rows = np.column_stack([frames, people, xy, size[people]])[annotated]

    detected = annotated & (rng.random(frames.shape[0]) < 0.9)
    track = np.where((people == 0) & (frames > num_frames // 2), 10**6, pred_ids[people])  # one id switch
    noisy_xy = xy + rng.normal(0, 8, xy.shape)
    noisy_size = size[people] * rng.uniform(0.8, 1.2, (frames.shape[0], 2))
    pred_rows = np.column_stack([frames, track, noisy_xy, noisy_size])[detected]
    clutter_frames = np.nonzero(rng.random(num_frames) < clutter_rate)[0]
    clutter = np.column_stack([clutter_frames, 10**6 + 1 + rng.integers(0, 3, clutter_frames.shape[0]),
                               rng.uniform(0, 400, (clutter_frames.shape[0], 2)),
                               np.tile([50.0, 80.0], (clutter_frames.shape[0], 1))])
    name = name or f"s{seed}"
    return TrackSequence.from_rows(name, gt_rows), TrackSequence.from_rows(name, np.concatenate([pred_rows, clutter]))
