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

