"""Exactness of the tracker's fast texture and UV paths: same values and ids as the per-pair formula.

The texture distance skips pairs whose visible texels are disjoint and encodes a map once when the
pair's mask is its own visibility; the bank stores UV maps in masked form and blends them in reused
buffers. Each shortcut is compared with the plain formula here, and the whole tracker with the
pinned copy of the tracker from before the speed work (experiments/tracker_benchmark).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from phalp_lightning.datamodules.synthetic.scenes import StandInAppearanceEncoder, detection_stream

from phalp_lightning.tracking import association
from phalp_lightning.tracking.association import pack_visibility, texture_distance, visible_texel_overlap
from phalp_lightning.tracking.phalp_tracker import PHALPTracker
from phalp_lightning.tracking.rule_eq019 import EQ019Rule
from phalp_lightning.tracking.track import TrackBank, blend_uv

BASELINE = Path(__file__).resolve().parents[1] / "experiments" / "tracker_benchmark" / "baseline_tracker.py"


def _uv(rgb_seed: int, visible: torch.Tensor) -> torch.Tensor:
    """(N, 4, S, S) map with PHALP's convention: RGB 0 and mask -1 where not visible."""
    generator = torch.Generator().manual_seed(rgb_seed)
    rgb = torch.rand(visible.shape[0], 3, *visible.shape[1:], generator=generator) / 5
    mask = visible[:, None]
    return torch.cat([rgb * mask, torch.where(mask, 1.0, -1.0)], dim=1)


def _bands(size: int, spans: list[tuple[int, int]]) -> torch.Tensor:
    """Visibility masks made of column bands [lo, hi)."""
    columns = torch.arange(size)
    return torch.stack([((columns >= lo) & (columns < hi)).expand(size, size) for lo, hi in spans])


class _CountingConv:
    """A small conv encoder that counts the maps it encodes."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(4, 8, 3, padding=1)
        self.maps = 0

    def __call__(self, uv: torch.Tensor) -> torch.Tensor:
        self.maps += uv.shape[0]
        return torch.nn.functional.adaptive_avg_pool2d(torch.relu(self.conv(uv)), 4).flatten(1) * 1000


def _per_pair(track_uv, detection_uv, pairs, encoder) -> torch.Tensor:
    out = []
    for t, d in pairs.tolist():
        visible = (track_uv[t, 3] > 0.5) & (detection_uv[d, 3] > 0.5)
        a = encoder((track_uv[t] * visible)[None]).double() / 1000
        b = encoder((detection_uv[d] * visible)[None]).double() / 1000
        out.append(100 * ((a - b) ** 2).sum())
    return torch.stack(out)


@pytest.mark.parametrize("masked", [False, True], ids=["plus_minus_one", "masked_form"])
def test_texture_shortcuts_equal_the_per_pair_formula(masked):
    size = 16
    # Tracks: columns [0, 8), [4, 12), [0, 16); detections: [0, 4), [8, 16), [2, 10), [12, 16).
    track_uv = _uv(1, _bands(size, [(0, 8), (4, 12), (0, 16)]))
    detection_uv = _uv(2, _bands(size, [(0, 4), (8, 16), (2, 10), (12, 16)]))
    pairs = torch.cartesian_prod(torch.arange(3), torch.arange(4))
    encoder = _CountingConv()
    expected = _per_pair(track_uv, detection_uv, pairs, encoder)
    encoder.maps = 0
    if masked:
        track_in = track_uv * (track_uv[:, 3:4] > 0.5)
        detection_in = detection_uv * (detection_uv[:, 3:4] > 0.5)
    else:
        track_in, detection_in = track_uv, detection_uv
    stats: dict[str, int] = {}
    got = texture_distance(
        track_in, detection_in, pairs, encoder, pairs_per_batch=2, stats=stats, masked=masked
    )
    # Same encoder inputs; the conv's float sums may differ between batch sizes (~1e-6).
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=0.0)
    disjoint = [(0, 1), (0, 3), (1, 0), (1, 3)]  # e.g. track [0, 8) and detection [8, 16)
    for t, d in disjoint:
        assert got[t * 4 + d].item() == 0.0
    assert stats["texture_pairs_disjoint"] == len(disjoint)
    # Track [0, 16) contains every detection and detection [0, 4) lies inside every track that sees it:
    # far fewer maps than the per-pair formula's 2 per pair.
    assert stats["encoded_maps"] == encoder.maps < 2 * (12 - len(disjoint))
    assert stats["encoder_calls"] >= stats["encoded_maps"] / 4


@pytest.mark.parametrize("split_runs", [False, True], ids=["small_maps", "large_maps"])
def test_stand_in_texture_distance_is_bit_identical_with_and_without_masked_form(split_runs, monkeypatch):
    if split_runs:  # large maps are encoded run by run straight from storage: the same codes
        monkeypatch.setattr(association, "DIRECT_ENCODE_MIN_MAP_BYTES", 0)
    size = 32
    track_uv = _uv(3, torch.rand(5, size, size, generator=torch.Generator().manual_seed(0)) > 0.5)
    detection_uv = _uv(4, torch.rand(6, size, size, generator=torch.Generator().manual_seed(1)) > 0.5)
    track_uv[1] = _uv(5, _bands(size, [(0, 32)]))[0]  # contains everything
    pairs = torch.cartesian_prod(torch.arange(5), torch.arange(6))
    encoder = StandInAppearanceEncoder()
    plain = texture_distance(track_uv, detection_uv, pairs, encoder, pairs_per_batch=3)
    masked = texture_distance(
        track_uv * (track_uv[:, 3:4] > 0.5),
        detection_uv * (detection_uv[:, 3:4] > 0.5),
        pairs,
        encoder,
        masked=True,
    )
    assert torch.equal(plain, masked)
    assert torch.equal(plain, _per_pair(track_uv, detection_uv, pairs, encoder))
    # With the visibility already packed (as the track bank keeps it) the distances are the same,
    # and a stale word (a texel dropped) would change the disjoint/contained shortcuts.
    words = (pack_visibility(track_uv[:, 3] > 0.5), pack_visibility(detection_uv[:, 3] > 0.5))
    masked_inputs = (track_uv * (track_uv[:, 3:4] > 0.5), detection_uv * (detection_uv[:, 3:4] > 0.5))
    packed = texture_distance(*masked_inputs, pairs, encoder, masked=True, visibility=words)
    assert torch.equal(plain, packed)
    with pytest.raises(ValueError, match="masked"):
        texture_distance(track_uv, detection_uv, pairs, encoder, visibility=words)


def test_visible_texel_overlap_counts_exactly():
    generator = torch.Generator().manual_seed(2)
    tracks = torch.rand(3, 9, 7, generator=generator) > 0.5  # 63 texels: not a multiple of 64 bits
    detections = torch.rand(4, 9, 7, generator=generator) > 0.3
    track_slot, detection_slot = torch.tensor([0, 2, 1, 2]), torch.tensor([3, 0, 1, 1])
    shared, track_count, detection_count = visible_texel_overlap(
        tracks, detections, track_slot, detection_slot
    )
    assert shared.tolist() == [
        int((tracks[t] & detections[d]).sum()) for t, d in zip([0, 2, 1, 2], [3, 0, 1, 1], strict=True)
    ]
    assert track_count.tolist() == tracks.flatten(1).sum(1).tolist()
    assert detection_count.tolist() == detections.flatten(1).sum(1).tolist()
    summed = visible_texel_overlap(tracks, detections, track_slot, detection_slot, bit_count=False)
    for a, b in zip(summed, (shared, track_count, detection_count), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rows", [[5, 1, 3], [4, 2, 3, 6]], ids=["gathered", "in_place_runs"])
@pytest.mark.parametrize("direct", [False, True], ids=["small_maps", "large_maps"])
def test_bank_blend_equals_blend_uv_on_every_visible_texel(dtype, rows, direct):
    size = 12
    generator = torch.Generator().manual_seed(4)
    plain = _uv(6, torch.rand(8, size, size, generator=generator) > 0.5).to(dtype)
    bank = TrackBank(uv_dtype=dtype)
    # Large maps are blended block by block straight from the frame's masked maps (float32 on the CPU).
    bank.direct_blend_min_bytes = 0 if direct else 1 << 40
    rows = torch.tensor(rows)
    bank.add(
        track_ids=torch.arange(1, 9),
        frame_index=0,
        pose=torch.zeros(8, 229),
        location=torch.ones(8, 99),
        appearance=torch.zeros(8, 16),
        uv=plain,
        gt_ids=torch.full((8,), -1),
        confirmed=torch.zeros(8, dtype=torch.bool),
        records=[None] * 8,
    )
    for step in range(3):
        detection_uv = _uv(10 + step, torch.rand(4, size, size, generator=generator) > 0.4)
        # [.., 2, 3] pairs consecutive rows with consecutive detections: one block of two.
        detections = torch.tensor([3, 0, 1, 2]) if len(rows) == 4 else torch.tensor([2, 0, 3])
        weight = 0.1 * torch.rand(len(rows), generator=generator, dtype=torch.float64) ** 2
        plain[rows] = blend_uv(plain[rows], detection_uv[detections], weight)
        bank.blend_uv_rows(rows, detection_uv, detections, weight)
        visible = plain[:, 3:4] > 0.5
        assert torch.equal(bank.uv[:8, 3:4], visible.to(dtype))  # masked form: 1 / 0
        assert torch.equal(bank.uv[:8, :3], plain[:, :3] * visible)  # bit for bit where visible
        # The packed visibility words follow the blended masks.
        assert np.array_equal(bank.visible_words[:8], pack_visibility(visible[:, 0]))


def test_masked_detection_maps_are_recomputed_for_a_new_or_modified_tensor():
    bank = TrackBank()
    first = _uv(1, _bands(8, [(0, 4)]))
    masked = bank.masked_detection_uv(first)
    assert masked[0, 3].sum() == 32 and masked[0, 3].min() == 0
    first[:, 3] = 1.0  # in place: now fully visible
    assert bank.masked_detection_uv(first)[0, 3].sum() == 64
    second = _uv(2, _bands(8, [(6, 8)]))
    assert bank.masked_detection_uv(second)[0, 3].sum() == 16


def _load_baseline():
    spec = importlib.util.spec_from_file_location("tracker_baseline_for_tests", BASELINE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _emitted(tracker, frames) -> list:
    out = []
    for frame in frames:
        out += tracker.update(frame)
    return out + tracker.finalize()


def _turning(frames, uv_size: int):
    """Each person shows a band of columns that moves with time: disjoint, nested and partial pairs."""
    for frame in frames:
        start = (3 * frame.gt_track_ids + frame.frame_index) % uv_size
        columns = torch.arange(uv_size)
        offset = (columns[None, :] - start[:, None]) % uv_size
        seen = (frame.uv[:, 3] > 0.5) & (offset < uv_size // 3)[:, None, :]
        frame.uv[:, :3] *= seen[:, None]
        frame.uv[:, 3] = torch.where(seen, 1.0, -1.0)
        yield frame


@pytest.mark.parametrize("reference_mode", [True, False], ids=["reference", "default"])
@pytest.mark.parametrize("scene", ["synthetic", "turning"])
def test_tracker_matches_the_pinned_pre_speedup_tracker(reference_mode, scene):
    baseline = _load_baseline()

    def frames():
        stream = detection_stream(6, 24, seed=3, uv_size=16, miss_probability=0.1)
        return list(_turning(stream, 16) if scene == "turning" else stream)

    before = _emitted(
        baseline.PHALPTracker(appearance_encoder=StandInAppearanceEncoder(), reference_mode=reference_mode),
        frames(),
    )
    # The pinned tracker has one rule, the original's; compare the same rule.
    tracker = PHALPTracker(
        appearance_encoder=StandInAppearanceEncoder(), reference_mode=reference_mode, association=EQ019Rule()
    )
    after = _emitted(tracker, frames())
    assert len(before) == len(after) == 24
    assert sum(len(f.track_ids) for f in after) > 50
    for old, new in zip(before, after, strict=True):
        assert torch.equal(old.track_ids, new.track_ids)
        assert torch.equal(old.time_since_update, new.time_since_update)
        assert torch.equal(old.predicted_pose, new.predicted_pose)
        assert torch.equal(old.predicted_location, new.predicted_location)
        assert torch.equal(old.detections.pose, new.detections.pose)
        assert torch.equal(old.detections.boxes, new.detections.boxes)
    if scene == "turning":
        assert tracker.counters["texture_pairs_disjoint"] > 0
    assert tracker.counters["encoded_maps"] < 2 * tracker.counters["texture_pairs"]


def test_tracker_runs_on_inference_tensors():
    """Lightning's predict loop hands over inference tensors, which have no version counter."""
    tracker = PHALPTracker(appearance_encoder=StandInAppearanceEncoder())
    with torch.inference_mode():
        frames = list(detection_stream(3, 7, seed=1, uv_size=16, miss_probability=0.0))
        emitted = _emitted(tracker, frames)
    assert len(emitted) == 7
    assert {int(i) for f in emitted for i in f.track_ids} == {1, 2, 3}
