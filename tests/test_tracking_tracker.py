"""PHALPTracker life cycle, back-filled emission, id stability and the reference mode."""

from __future__ import annotations

import pytest
import torch
from helpers.trackers import composed_tracker
from phalp_lightning.datamodules.synthetic.scenes import (
    StandInAppearanceEncoder,
    detection_stream,
    frame_detections,
    make_people,
)

from phalp_lightning.structures import FrameDetections, FrameTracks
from phalp_lightning.tracking.phalp_tracker import PHALPTracker


def _people(count: int, seed: int = 0):
    return make_people(count, uv_size=16, seed=seed)


def _frame(people, points, present, t: int, noise: float = 0.0) -> FrameDetections:
    generator = torch.Generator().manual_seed(1000 + t)
    return frame_detections(people, points, torch.as_tensor(present), t, generator, noise=noise)


def _run(tracker: PHALPTracker, frames) -> list[FrameTracks]:
    out: list[FrameTracks] = []
    for frame in frames:
        out += tracker.update(frame)
    return out + tracker.finalize()


def _static_frames(people, presence: list[list[bool]]):
    """Frames where people stand still at their starting points; presence[t][p] = detected."""
    return [_frame(people, people.position, present, t) for t, present in enumerate(presence)]


def _tracker(*overrides: str, **objects) -> PHALPTracker:
    """predict.py's tracker with PHALP's own association rule (this file tests the original's life cycle)."""
    return composed_tracker(
        "tracker/association=eq019", *overrides, appearance_encoder=StandInAppearanceEncoder(), **objects
    )


def _detected_ids(frames: list[FrameTracks]) -> dict[int, set[int]]:
    """True person id -> track ids given to its detections."""
    ids: dict[int, set[int]] = {}
    for frame_tracks in frames:
        detected = frame_tracks.detected
        for track_id, person in zip(
            frame_tracks.track_ids[detected].tolist(),
            frame_tracks.detections.gt_track_ids[detected].tolist(),
            strict=True,
        ):
            ids.setdefault(person, set()).add(track_id)
    return ids


def test_no_detections_emits_empty_frames_with_delay():
    people = _people(2)
    tracker = _tracker()
    frames = _static_frames(people, [[False, False]] * 6)
    returned = [tracker.update(frame) for frame in frames]
    assert [len(r) for r in returned] == [0, 0, 0, 0, 1, 1]  # n_init - 1 = 4 frames late
    rest = tracker.finalize()
    emitted = [f for r in returned for f in r] + rest
    assert [f.frame_index for f in emitted] == list(range(6))
    assert all(len(f) == 0 and len(f.detections) == 0 for f in emitted)
    assert tracker.next_id == 1


def test_all_detections_new_get_ids_in_detection_order():
    people = _people(6)
    tracker = _tracker()
    first = _frame(people, people.position, [True, True, True, False, False, False], 0)
    tracker.update(first)
    assert tracker.next_id == 4
    bank = tracker.tracks
    rows = bank.rows()
    # ids 1..3 follow the detection order (descending score), not the person order.
    assert bank.track_id[rows].tolist() == [1, 2, 3]
    torch.testing.assert_close(bank.predicted_location[rows], first.location)
    # Next frame: only the other three people -> the tentative tracks die, ids 4..6 are new.
    tracker.update(_frame(people, people.position, [False, False, False, True, True, True], 1))
    assert bank.track_id[bank.rows()].tolist() == [4, 5, 6]


def test_back_fill_emits_complete_frames():
    people = _people(1)
    tracker = _tracker()
    frames = _static_frames(people, [[True]] * 7)
    returned = [tracker.update(frame) for frame in frames]
    assert [len(r) for r in returned] == [0, 0, 0, 0, 1, 1, 1]
    first = returned[4][0]
    assert first.frame_index == 0
    assert first.track_ids.tolist() == [1] and first.time_since_update.tolist() == [0]
    # The back-filled entry carries frame 0's own detection, not the confirming one.
    torch.testing.assert_close(first.detections.boxes, frames[0].boxes)
    assert first.detections.frame_index == 0 and first.detections.uv is None
    assert first.predicted_pose.shape == (1, 229) and first.predicted_location.shape == (1, 99)
    rest = tracker.finalize()
    assert [f.frame_index for f in rest] == [3, 4, 5, 6]
    assert all(f.track_ids.tolist() == [1] for f in rest)


def test_tentative_track_never_reported():
    people = _people(1)
    out = _run(_tracker(), _static_frames(people, [[True]] * 4 + [[False]] * 2))
    assert all(len(f) == 0 for f in out)


@pytest.mark.parametrize("missed, same_id", [(50, True), (51, False)])
def test_confirmed_track_survives_exactly_max_age_missed_frames(missed, same_id):
    people = _people(1)
    presence = [[True]] * 5 + [[False]] * missed + [[True]] * 2
    frames = _static_frames(people, presence)
    out = _run(_tracker("tracker.max_age=50"), frames)
    # A ghost carries the stale data of its last matched detection (frame 4).
    torch.testing.assert_close(out[7].detections.boxes, frames[4].boxes)
    assert out[7].detected.tolist() == [False]
    ghost_ages = [f.time_since_update.tolist() for f in out[5 : 5 + missed]]
    assert ghost_ages[:3] == [[1], [2], [3]]
    if same_id:
        assert ghost_ages[-1] == [50]
        assert _detected_ids(out) == {1: {1}}
    else:
        assert ghost_ages[-1] == []  # deleted when time_since_update reached 51
        assert _detected_ids(out) == {1: {1}}  # the new track is tentative and never reported
        assert out[-1].track_ids.tolist() == []


def test_reidentification_after_occlusion_while_moving():
    people = _people(2, seed=2)
    people.position[:] = torch.tensor([[0.3, 0.4], [0.7, 0.6]])
    people.velocity[:] = torch.tensor([[0.003, 0.0], [-0.002, 0.001]])
    frames = []
    for t in range(30):
        points = people.position + t * people.velocity
        occluded = 10 <= t < 20
        frames.append(_frame(people, points, [not occluded, True], t, noise=0.0005))
    out = _run(_tracker(), frames)
    ids = _detected_ids(out)
    assert len(ids[1]) == 1 and len(ids[2]) == 1 and ids[1] != ids[2]
    # During the occlusion person 1's track is a ghost with growing time_since_update.
    ghost = [f for f in out if f.frame_index == 15][0]
    assert sorted(ghost.time_since_update.tolist()) == [0, 6]


def test_crossing_people_with_distinct_appearance_keep_ids():
    people = _people(2, seed=5)
    people.position[:] = torch.tensor([[0.3, 0.5], [0.7, 0.5]])
    people.velocity[:] = torch.tensor([[0.01, 0.0], [-0.01, 0.0]])
    people.depth[:] = 40.0
    frames = [
        _frame(people, people.position + t * people.velocity, [True, True], t, noise=0.001) for t in range(40)
    ]
    out = _run(_tracker(), frames)
    ids = _detected_ids(out)
    assert len(ids[1]) == 1 and len(ids[2]) == 1 and ids[1] != ids[2]
    assert all(len(f) == 2 for f in out)


def test_synthetic_stream_ids_stable_in_both_modes():
    frames = list(detection_stream(8, 40, seed=3, uv_size=16, miss_probability=0.05))
    per_frame_ids = {}
    for reference_mode in (False, True):
        out = _run(_tracker(f"tracker.reference_mode={reference_mode}"), frames)
        ids = _detected_ids(out)
        assert len(ids) == 8
        assert all(len(track_ids) == 1 for track_ids in ids.values()), ids
        per_frame_ids[reference_mode] = [f.track_ids.tolist() for f in out]
    # With a constant pose predictor and finite costs no quirk applies: both modes agree exactly.
    assert per_frame_ids[False] == per_frame_ids[True]


def test_shot_frame_resets_location_history():
    people = _people(1)
    frames = _static_frames(people, [[True]] * 3)
    frames[2].shot = True
    tracker = _tracker()
    for frame in frames:
        tracker.update(frame)
    row = tracker.tracks.order[0]
    history = tracker.tracks.history_location[row]
    torch.testing.assert_close(history, frames[2].location.expand(7, -1))


def test_use_gt_matches_by_ids_and_confirms_immediately():
    people = _people(2)
    frames = _static_frames(people, [[True, True]] * 3)
    for frame in frames:  # swap the given ids: the tracker must follow ids, not positions
        frame.gt_track_ids = torch.tensor([7, 9]) if frame.frame_index != 1 else torch.tensor([9, 7])
    tracker = _tracker("tracker.use_gt=true")
    out = _run(tracker, frames)
    assert [f.track_ids.tolist() for f in out] == [[1, 2]] * 3
    assert out[1].detections.gt_track_ids.tolist() == [7, 9]


def test_frame_index_must_increase():
    people = _people(1)
    tracker = _tracker()
    tracker.update(_frame(people, people.position, [True], 3))
    with pytest.raises(ValueError, match="frame_index 3 does not increase"):
        tracker.update(_frame(people, people.position, [True], 3))


class _RecordingPredictor:
    """Returns the newest pose and records each batch's first pose (identifies the first track)."""

    def __init__(self) -> None:
        self.reference_quirks = False
        self.batches: list[torch.Tensor] = []

    def predict_next(self, pose_history, time_history, time_since_update):
        self.batches.append(pose_history[:, -1].clone())
        return pose_history[:, -1].clone()


def test_reference_mode_batches_pose_predictor_in_set_order():
    people = _people(13, seed=7)
    grid = torch.stack([torch.linspace(0.1, 0.9, 13), torch.full((13,), 0.5)], dim=1)
    people.position[:] = grid
    missing = {3, 9, 12}  # list indices of tracks 4, 10, 13 (people sorted by creation order)
    outputs = {}
    for reference_mode in (True, False):
        predictor = _RecordingPredictor()
        tracker = _tracker(f"tracker.reference_mode={reference_mode}", pose_predictor=predictor)
        assert predictor.reference_quirks is reference_mode
        frames = _static_frames(people, [[True] * 13] * 5)
        for frame in frames:
            tracker.update(frame)
        creation_order = frames[0].gt_track_ids.tolist()  # person of track id k + 1 at list index k
        predictor.batches.clear()
        absent = [creation_order[k] - 1 for k in missing]
        tracker.update(_frame(people, people.position, [p not in absent for p in range(13)], 5))
        outputs[reference_mode] = (
            tracker.last_assignment.unmatched_tracks,
            predictor.batches,
            creation_order,
        )
    unmatched, batches, creation_order = outputs[True]
    assert unmatched == [9, 3, 12]
    assert [len(b) for b in batches] == [10, 3]  # matched batch, then unmatched batch
    first_unmatched_person = creation_order[9] - 1
    torch.testing.assert_close(
        batches[1][0, :226], people.pose[first_unmatched_person, :226], atol=1e-6, rtol=0
    )
    unmatched, batches, _ = outputs[False]
    assert unmatched == [3, 9, 12]
    assert [len(b) for b in batches] == [13]


def test_config_instantiates_the_tracker():
    tracker = _tracker()
    assert isinstance(tracker, PHALPTracker)
    assert tracker.rule.betas == (4.0536, 1.3070, 0.3792, 4.1658)
    assert (tracker.n_init, tracker.max_age, tracker.rule.hungarian_threshold) == (5, 50, 100.0)
    assert tracker.location_predictor.alphas == (1.2, 2.0, 5.0)


def test_reference_mode_reaches_a_wrapped_predictor():
    class Wrapper:
        def __init__(self, module):
            self.module = module

        def predict_next(self, pose_history, time_history, time_since_update):
            return self.module.predict_next(pose_history, time_history, time_since_update)

    inner = _RecordingPredictor()
    _tracker("tracker.reference_mode=true", pose_predictor=Wrapper(inner))
    assert inner.reference_quirks is True
    untouched = _RecordingPredictor()
    _tracker(pose_predictor=Wrapper(untouched))
    assert untouched.reference_quirks is False
