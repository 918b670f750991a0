"""Association rules as objects: one set of defaults, nothing dropped, and every gate, stage and order.

Every tracker here is built as ``predict.py`` builds it (the composed config, no checkpoint) and
driven through ``update``; each test fails when the rule it names is removed, weakened or reordered.
"""

from __future__ import annotations

import inspect
from dataclasses import fields
from pathlib import Path

import pytest
import torch
from helpers.trackers import composed_tracker, tracker_config
from omegaconf import OmegaConf
from phalp_lightning.datamodules.synthetic.scenes import _box_detections

from phalp_lightning.tracking.phalp_tracker import PHALPTracker
from phalp_lightning.tracking.rule_eq019 import EQ019Rule
from phalp_lightning.tracking.rule_gated import GatedRule

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "tracker"
OBJECTS = {"pose_predictor", "appearance_encoder", "association"}


# ----------------------------------------------------------------------------- one set of defaults


def test_constructor_defaults_are_the_shipped_config():
    shipped = OmegaConf.to_container(tracker_config(()))
    signature = inspect.signature(PHALPTracker)
    assert set(signature.parameters) == set(shipped) - {"_target_"}
    for name, parameter in signature.parameters.items():
        if name not in OBJECTS:
            assert parameter.default == shipped[name], name
    assert shipped["association"]["_target_"].endswith("GatedRule")


@pytest.mark.parametrize("rule, file", [(GatedRule, "gated.yaml"), (EQ019Rule, "eq019.yaml")])
def test_each_rule_file_holds_exactly_its_typed_settings_and_defaults(rule, file):
    values = OmegaConf.to_container(OmegaConf.load(CONFIGS / "association" / file))
    assert values.pop("_target_") == f"{rule.__module__}.{rule.__name__}"
    defaults = {f.name: f.default for f in fields(rule)}
    assert set(values) == set(defaults)
    for name, value in values.items():
        assert (tuple(value) if isinstance(value, list) else value) == defaults[name], name
    # A setting that a rule does not use does not exist on it.
    assert not hasattr(GatedRule(), "hungarian_threshold") and not hasattr(EQ019Rule(), "gate_iou")


def test_the_library_default_tracker_is_the_pipeline_tracker():
    assert PHALPTracker().rule == composed_tracker().rule
    assert composed_tracker("tracker/association=gated_motion").rule == GatedRule(cues="motion")


def test_reference_mode_always_runs_the_original_rule():
    assert isinstance(composed_tracker("tracker.reference_mode=true").rule, EQ019Rule)
    assert isinstance(PHALPTracker(reference_mode=True).rule, EQ019Rule)


# ----------------------------------------------------------------------------- helpers


def _frame(t: int, boxes: list[list[float]], ids: list[int] | None = None, scores: list[float] | None = None):
    count = len(boxes)
    box_tensor = torch.tensor(boxes, dtype=torch.float32).reshape(count, 4)
    id_tensor = torch.tensor(ids if ids is not None else list(range(1, count + 1)), dtype=torch.int64)
    frame = _box_detections(box_tensor, id_tensor, t, (480, 640), torch.zeros(count, 229), torch.zeros(count, 4096), False)
    if scores is not None:
        frame.scores = torch.tensor(scores, dtype=frame.scores.dtype)
    return frame


def _run(tracker, frames) -> list:
    out = []
    for frame in frames:
        out += tracker.update(frame)
    return out + tracker.finalize()


def _ids_by_person(out) -> dict[int, list[tuple[int, int]]]:
    """Person -> [(frame, track id)] of the detected entries."""
    seen: dict[int, list[tuple[int, int]]] = {}
    for f in out:
        for track, person in zip(f.track_ids[f.detected].tolist(), f.detections.gt_track_ids[f.detected].tolist(), strict=True):
            seen.setdefault(person, []).append((f.frame_index, track))
    return seen


BOX = [100.0, 100.0, 140.0, 200.0]


# ----------------------------------------------------------------------------- nothing dropped


@pytest.mark.parametrize("pattern", ["1010101011111", "1100011000111111", "1000100010001000111", "11110001"])
@pytest.mark.parametrize("rule", ["gated", "eq019"])
def test_every_detection_of_a_confirmed_track_is_emitted_whatever_the_gaps(pattern, rule):
    """One person standing still, detected in the frames marked 1."""
    frames = [_frame(t, [BOX] if seen == "1" else []) for t, seen in enumerate(pattern)]
    tracker = composed_tracker(f"tracker/association={rule}")
    out = _run(tracker, frames)
    assert [f.frame_index for f in out] == list(range(len(pattern)))
    entries = _ids_by_person(out).get(1, [])
    ids = {track for _, track in entries}
    assert len(ids) <= 1
    if rule == "gated":  # a tentative track survives 3 misses in a row: one track, every detection emitted
        assert [frame for frame, _ in entries] == [t for t, seen in enumerate(pattern) if seen == "1"]



# ----------------------------------------------------------------------------- gates, stages, lifecycle


def _shifted(dx: float, box: list[float] = BOX, scale: float = 1.0) -> list[float]:
    """``box`` moved right by dx, its height scaled about its bottom edge."""
    x1, y1, x2, y2 = box
    return [x1 + dx, y2 - (y2 - y1) * scale, x2 + dx, y2]


def _ids_of_frame(out, index: int) -> list[int]:
    return out[index].track_ids[out[index].detected].tolist()


def test_confirmed_tracks_are_served_before_tentative_ones():
    # Track 1 is confirmed at BOX; in frame 6 a second detection (IoU 0.33 with BOX) starts tentative
    # track 2. In frame 7 one detection lies between them, closer to track 2 (IoU 0.74 against 0.48):
    # the confirmed track, served first, takes it; one assignment over both would give it to track 2.
    frames = [_frame(t, [BOX]) for t in range(6)]
    frames.append(_frame(6, [BOX, _shifted(20.0)], ids=[1, 2]))
    frames.append(_frame(7, [_shifted(14.0)], ids=[1]))
    frames += [_frame(t, [_shifted(14.0)]) for t in range(8, 10)]
    out = _run(composed_tracker(), frames)
    assert _ids_of_frame(out, 7) == [1]
    assert {track for _, track in _ids_by_person(out)[1]} == {1}


def test_height_gate_alone_stops_a_much_taller_box_from_continuing_a_track():
    # Same bottom centre, 1.6x the height (IoU 0.63 with the track's box): a different person.
    frames = [_frame(t, [BOX]) for t in range(6)] + [_frame(t, [_shifted(0.0, scale=1.6)]) for t in range(6, 13)]
    out = _run(composed_tracker(), frames)
    assert _ids_of_frame(out, 5) == [1] and _ids_of_frame(out, 6) == [2] and _ids_of_frame(out, 12) == [2]
    lenient = _run(composed_tracker("tracker.association.gate_height_ratio=1.7"), frames)
    assert _ids_of_frame(lenient, 12) == [1]


# A detector's scale pyramid: detected heights first step 1.1x apart, then jump 1.36x frame to frame
# (HOG on the demo video does this).
SCALE_JITTER = [1.0, 1.1, 1.0, 1.1] + [1.0, 1.36] * 7


def test_a_person_whose_detected_height_jumps_between_detector_scales_keeps_one_id():
    frames = [_frame(t, [_shifted(0.0, scale=s)]) for t, s in enumerate(SCALE_JITTER)]
    out = _run(composed_tracker(), frames)
    assert {track for _, track in _ids_by_person(out)[1]} == {1}
    assert sum(len(f.track_ids[f.detected]) for f in out) == len(SCALE_JITTER)
    # Without the per-track widening the shipped ratio (1.25) splits the person.
    fixed = _run(composed_tracker("tracker.association.gate_height_ratio_max=1.25"), frames)
    assert len({track for _, track in _ids_by_person(fixed)[1]}) > 1


def test_the_widened_height_gate_still_stops_a_much_taller_person():
    # After the jittery person, a person 2.2x as tall stands in the same place: a new id, though the
    # track's gate has widened to its cap (1.5).
    frames = [_frame(t, [_shifted(0.0, scale=s)]) for t, s in enumerate(SCALE_JITTER)]
    frames += [_frame(t, [_shifted(0.0, scale=2.2)], ids=[2]) for t in range(len(SCALE_JITTER), len(SCALE_JITTER) + 7)]
    out = _run(composed_tracker(), frames)
    assert {track for _, track in _ids_by_person(out)[1]} == {1}
    assert 1 not in {track for _, track in _ids_by_person(out)[2]}
    lenient = _run(composed_tracker("tracker.association.gate_height_ratio=2.5"), frames)
    assert {track for _, track in _ids_by_person(lenient)[2]} == {1}


def test_tentative_gate_alone_stops_a_young_track_from_taking_a_box_that_overlaps_little():
    # A track seen once (no velocity yet) and a box at IoU 0.23 with it: a confirmed track could take
    # it (>= gate_iou 0.1), a tentative one must not (< gate_iou_tentative 0.3).
    frames = [_frame(0, [BOX])] + [_frame(t, [_shifted(25.0)]) for t in range(1, 8)]
    out = _run(composed_tracker(), frames)
    assert _ids_of_frame(out, 0) == [] and _ids_of_frame(out, 1) == [2]
    lenient = _run(composed_tracker("tracker.association.gate_iou_tentative=0.2"), frames)
    assert _ids_of_frame(lenient, 0) == [1] and _ids_of_frame(lenient, 1) == [1]


def test_a_confirmed_track_takes_a_box_at_the_gate_but_not_below_it():
    # Confirmed at BOX, then missed once; the next box overlaps the prediction at IoU 0.23 (>= 0.1).
    frames = [_frame(t, [BOX]) for t in range(6)] + [_frame(t, [_shifted(25.0 + 3 * (t - 6))]) for t in range(6, 9)]
    out = _run(composed_tracker(), frames)
    assert _ids_of_frame(out, 6) == [1]
    strict = _run(composed_tracker("tracker.association.gate_iou=0.25"), frames)
    assert _ids_of_frame(strict, 6) != [1]


@pytest.mark.parametrize("misses, same_track", [(3, True), (4, False)])
def test_a_tentative_track_survives_exactly_tentative_max_misses_in_a_row(misses, same_track):
    pattern = "111" + "0" * misses + "11111"
    frames = [_frame(t, [BOX] if seen == "1" else []) for t, seen in enumerate(pattern)]
    out = _run(composed_tracker(), frames)
    entries = _ids_by_person(out)[1]
    if same_track:
        assert entries == [(t, 1) for t, seen in enumerate(pattern) if seen == "1"]
    else:  # the first track died unconfirmed: its frames are never reported; the second is
        assert entries == [(t, 2) for t in range(3 + misses, len(pattern))]


@pytest.mark.parametrize("missed, same_track", [(4, True), (5, False)])
def test_without_appearance_a_lost_track_ends_when_it_can_no_longer_match(missed, same_track):
    pattern = "1" * 6 + "0" * missed + "1" * 6
    frames = [_frame(t, [BOX] if seen == "1" else []) for t, seen in enumerate(pattern)]
    out = _run(composed_tracker("tracker.association.recent_age=4"), frames)
    ids = {track for _, track in _ids_by_person(out)[1]}
    assert ids == ({1} if same_track else {1, 2})
    ghosts = [int((f.time_since_update > 0).sum()) for f in out]
    assert max(ghosts) == 1 and sum(ghosts) == min(missed, 4)  # reported as a ghost while it can still match


def test_low_score_detections_only_continue_tracks_seen_in_the_previous_frame():
    low = "tracker.association.second_stage_score=0.5"
    alone = [_frame(t, [BOX], scores=[0.3]) for t in range(8)]
    tracker = composed_tracker(low)
    assert all(len(f) == 0 for f in _run(tracker, alone))
    assert tracker.next_id == 1  # never started a track, not even a tentative one
    continued = [_frame(t, [BOX]) for t in range(6)] + [_frame(t, [BOX], scores=[0.3]) for t in range(6, 9)]
    out = _run(composed_tracker(low), continued)
    assert [_ids_of_frame(out, t) for t in range(6, 9)] == [[1], [1], [1]]
    after_a_miss = [_frame(t, [BOX]) for t in range(6)] + [_frame(6, [])] + [_frame(7, [BOX], scores=[0.3])]
    out = _run(composed_tracker(low), after_a_miss)
    assert _ids_of_frame(out, 7) == []  # the track was not seen in the previous frame


def test_a_low_score_detection_cannot_take_a_track_before_a_high_score_one():
    # Track 1 at BOX; frame 6: a low-score box exactly on it and a high-score box close by. The
    # high-score stage comes first, so the high-score box continues the track.
    frames = [_frame(t, [BOX]) for t in range(6)]
    frames.append(_frame(6, [BOX, _shifted(8.0)], ids=[2, 1], scores=[0.3, 0.9]))
    out = _run(composed_tracker("tracker.association.second_stage_score=0.5"), frames)
    detected = out[6].detected
    assert out[6].track_ids[detected].tolist() == [1]
    assert out[6].detections.gt_track_ids[detected].tolist() == [1]


def _person_frame(t: int, boxes: list[list[float]], people: list[int], codes: torch.Tensor):
    count = len(boxes)
    return _box_detections(torch.tensor(boxes).reshape(count, 4), torch.tensor(people, dtype=torch.int64), t, (480, 640),
                           torch.zeros(3, 229), codes, True)


@pytest.mark.parametrize("cues, comes_back", [("all", True), ("motion", False)])
def test_a_long_lost_person_is_re_identified_by_appearance_only(cues, comes_back):
    # Person 1 stands at BOX, is lost for 8 frames (> recent_age 5) and comes back 60 px away: too far
    # for IoU with any box, plausible for 8 frames lost. Person 2, who looks different, appears where
    # person 1 was lost; only appearance can tell them apart.
    codes = torch.stack([torch.full((4096,), 5.0), torch.full((4096,), 5.0) + 100.0 * torch.randn(4096, generator=torch.Generator().manual_seed(0))])
    back = _shifted(60.0)
    frames = [_person_frame(t, [BOX], [1], codes) for t in range(6)]
    frames += [_person_frame(t, [], [], codes) for t in range(6, 14)]
    frames += [_person_frame(t, [back, BOX], [1, 2], codes) for t in range(14, 20)]
    tracker = composed_tracker(f"tracker.association.cues={cues}", "tracker.association.recent_age=5")
    out = _run(tracker, frames)
    ids = {person: {track for _, track in entries} for person, entries in _ids_by_person(out).items()}
    assert ids[2] != {1}  # a different-looking person is never given the lost track
    assert (ids[1] == {1}) is comes_back


def test_re_identification_gates_size_and_displacement():
    codes = torch.full((2, 4096), 5.0)  # the same look: only the gates decide
    def run(box):
        frames = [_person_frame(t, [BOX], [1], codes) for t in range(6)] + [_person_frame(t, [], [], codes) for t in range(6, 14)]
        frames += [_person_frame(t, [box], [1], codes) for t in range(14, 20)]
        out = _run(composed_tracker("tracker.association.cues=all", "tracker.association.recent_age=5"), frames)
        return {track for _, track in _ids_by_person(out)[1]}
    assert run(_shifted(60.0)) == {1}  # 60 px after 9 frames: within 0.1 x 100 px x 9
    assert run(_shifted(300.0)) == {1, 2}  # too far for the time lost (at most 0.1 x 100 px x 15 frames)
    assert run(_shifted(60.0, scale=1.7)) == {1, 2}  # a different size


@pytest.mark.parametrize("reference_mode", [True, False])
def test_a_nan_cost_is_a_perfect_match_only_in_reference_mode(reference_mode):
    # A non-positive depth makes the depth term NaN: the original's nan_to_num turns it into 0.
    frames = [_frame(t, [BOX]) for t in range(6)]
    odd = _frame(6, [BOX])
    odd.location[:, 92] = -odd.location[:, 92]
    frames.append(odd)
    out = _run(composed_tracker("tracker/association=eq019", f"tracker.reference_mode={str(reference_mode).lower()}"), frames)
    assert _ids_of_frame(out, 6) == ([1] if reference_mode else [])
