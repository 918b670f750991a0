"""MOT metrics on hand-built sequences whose values are derived by hand, and against reference tools."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from helpers.reference_evaluators import require_trackeval
from phalp_lightning.datamodules.synthetic.sequences import random_tracking_scene as random_scene

from phalp_lightning.evaluation.evaluator import evaluate_sequences
from phalp_lightning.evaluation.hota import ALPHAS, combine_hota, hota_sequence
from phalp_lightning.evaluation.protocol import EvaluationProtocol
from phalp_lightning.evaluation.sequences import TrackSequence, box_iou_xywh, build_sequence_data

BOX_A = [0.0, 0.0, 10.0, 20.0]
BOX_B = [100.0, 0.0, 10.0, 20.0]
FAR = [500.0, 500.0, 10.0, 20.0]


def seq(name: str, rows: list[list[float]], **kwargs) -> TrackSequence:
    rows = np.array(rows, dtype=float)
    return TrackSequence.from_rows(name, rows if rows.ndim == 2 else rows.reshape(-1, 6), **kwargs)


def evaluate_one(gt_rows, pred_rows, protocol=None, **kwargs):
    result = evaluate_sequences({"s": seq("s", pred_rows)}, {"s": seq("s", gt_rows, **kwargs)}, protocol=protocol)
    return result.per_sequence["s"], result


def test_perfect_tracking_scores_one_everywhere():
    gt = [[f, person, *box] for f in range(3) for person, box in ((1, BOX_A), (2, BOX_B))]
    pred = [[f, 10 + person, *box] for f, person, *box in gt]  # other id values, same identities
    metrics, _ = evaluate_one(gt, pred)
    # 6 TP, no FN/FP/IDSW: MOTA = 1 - 0/6 = 1; IDF1 = 2*6/(2*6) = 1; every alpha: DetA = AssA = 1.
    for name in ("HOTA", "DetA", "AssA", "MOTA", "IDF1", "Precision", "Recall", "LocA"):
        assert metrics[name] == pytest.approx(1.0, abs=1e-12), name
    assert (metrics["IDSW"], metrics["FP"], metrics["FN"]) == (0, 0, 0)


def test_one_id_switch():
    gt = [[f, 1, *BOX_A] for f in range(4)]
    pred = [[f, 1 if f < 2 else 2, *BOX_A] for f in range(4)]
    metrics, _ = evaluate_one(gt, pred)
    # CLEAR: 4 TP, 1 switch at frame 2 -> MOTA = 1 - (FN + FP + IDSW) / GT = 1 - 1/4 = 3/4.
    assert metrics["IDSW"] == 1 and metrics["MOTA"] == pytest.approx(3 / 4)
    # Identity: gt 1 <-> pred 1 shares 2 frames: IDTP = 2, IDFN = 4 - 2, IDFP = 4 - 2 -> IDF1 = 4/8 = 1/2.
    assert metrics["IDF1"] == pytest.approx(1 / 2)
    # HOTA: every TP has TPA = 2, FNA = 2, FPA = 0 -> AssA = 2/4 = 1/2; DetA = 4/4 = 1; HOTA = sqrt(1/2).
    assert metrics["DetA"] == pytest.approx(1.0)
    assert metrics["AssA"] == pytest.approx(1 / 2)
    assert metrics["HOTA"] == pytest.approx(math.sqrt(1 / 2))


def test_one_missed_track():
    gt = [[f, person, *box] for f in range(4) for person, box in ((1, BOX_A), (2, BOX_B))]
    pred = [[f, 7, *BOX_A] for f in range(4)]
    metrics, _ = evaluate_one(gt, pred)
    # 4 TP, 4 FN over 8 GT -> MOTA = 1 - 4/8 = 1/2; recall = 4/8; precision = 4/4.
    assert metrics["FN"] == 4 and metrics["FP"] == 0
    assert metrics["MOTA"] == pytest.approx(1 / 2)
    assert (metrics["Recall"], metrics["Precision"]) == (pytest.approx(1 / 2), pytest.approx(1.0))
    # IDTP = 4, IDFN = 4, IDFP = 0 -> IDF1 = 8 / (8 + 4) = 2/3.
    assert metrics["IDF1"] == pytest.approx(2 / 3)
    # DetA = 4 / (4 + 4) = 1/2, AssA = 1 (the found track is pure) -> HOTA = sqrt(1/2).
    assert metrics["DetA"] == pytest.approx(1 / 2)
    assert metrics["AssA"] == pytest.approx(1.0)
    assert metrics["HOTA"] == pytest.approx(math.sqrt(1 / 2))


def test_false_positives():
    gt = [[f, 1, *BOX_A] for f in range(4)]
    pred = [[f, 1, *BOX_A] for f in range(4)] + [[f, 9, *FAR] for f in range(2)]
    metrics, _ = evaluate_one(gt, pred)
    # 4 TP, 2 FP -> MOTA = 1 - 2/4 = 1/2; precision = 4/6 = 2/3.
    assert metrics["FP"] == 2 and metrics["MOTA"] == pytest.approx(1 / 2)
    assert metrics["Precision"] == pytest.approx(2 / 3)
    # IDTP = 4, IDFP = 2 -> IDF1 = 8 / (8 + 2) = 4/5.
    assert metrics["IDF1"] == pytest.approx(4 / 5)
    # DetA = 4 / (4 + 2) = 2/3, AssA = 1 -> HOTA = sqrt(2/3).
    assert metrics["HOTA"] == pytest.approx(math.sqrt(2 / 3))


def test_partial_overlap_counts_only_at_alphas_up_to_the_iou():
    gt = [[f, 1, 0.0, 0.0, 10.0, 10.0] for f in range(2)]
    pred = [[f, 1, 0.0, 0.0, 10.0, 6.25] for f in range(2)]  # IoU = 62.5 / 100 = 0.625
    metrics, result = evaluate_one(gt, pred)
    # 12 of the 19 alphas (0.05 ... 0.60) are <= 0.625: HOTA = 1 there, 0 at the other 7 -> 12/19.
    assert metrics["HOTA"] == pytest.approx(12 / 19)
    curve = result.hota_curves["s"]
    np.testing.assert_array_equal(curve.tp, np.where(ALPHAS <= 0.625, 2, 0))
    # LocA: 0.625 where matched; TrackEval's convention gives 1 at alphas without matches.
    assert metrics["LocA"] == pytest.approx((12 * 0.625 + 7 * 1.0) / 19)
    # CLEAR at IoU 0.5: matched -> MOTA 1; MOTChallenge's MOTP = mean IoU = 0.625, motmetrics' distance
    # form mean(1 - IoU) = 0.375 is MOTP_distance.
    assert metrics["MOTA"] == pytest.approx(1.0) and metrics["MOTP"] == pytest.approx(0.625)
    assert metrics["MOTP_distance"] == pytest.approx(0.375)
    # At IoU 0.7 nothing matches: 2 FN + 2 FP over 2 GT -> MOTA = 1 - 4/2 = -1.
    strict, _ = evaluate_one(gt, pred, protocol=EvaluationProtocol(iou_threshold=0.7))
    assert strict["MOTA"] == pytest.approx(-1.0) and strict["HOTA"] == pytest.approx(12 / 19)


def test_phalp_protocol_matches_loose_overlaps_and_averages_hota_per_video():
    gt = [[f, 1, 0.0, 0.0, 10.0, 10.0] for f in range(3)]
    pred = [[f, 4, 8.0, 0.0, 10.0, 10.0] for f in range(3)]  # IoU = 20 / 180 = 1/9
    standard, _ = evaluate_one(gt, pred)
    loose, _ = evaluate_one(gt, pred, protocol=EvaluationProtocol.phalp())
    # Standard (IoU >= 0.5): 3 FN + 3 FP -> MOTA = 1 - 6/3 = -1. PHALP (IoU >= 0.01): 3 TP -> MOTA = 1.
    assert standard["MOTA"] == pytest.approx(-1.0) and loose["MOTA"] == pytest.approx(1.0)
    assert loose["IDF1"] == pytest.approx(1.0)

    # Aggregation: sequence x = one id switch (HOTA sqrt(1/2)), y = false positives (HOTA sqrt(2/3)).
    x_gt, x_pred = [[f, 1, *BOX_A] for f in range(4)], [[f, 1 if f < 2 else 2, *BOX_A] for f in range(4)]
    y_gt = [[f, 1, *BOX_A] for f in range(4)]
    y_pred = y_gt + [[f, 9, *FAR] for f in range(2)]
    gts, preds = {"x": seq("x", x_gt), "y": seq("y", y_gt)}, {"x": seq("x", x_pred), "y": seq("y", y_pred)}
    combined = evaluate_sequences(preds, gts).overall
    averaged = evaluate_sequences(preds, gts, protocol=EvaluationProtocol(hota_aggregation="sequence_mean")).overall
    # Combined: TP 8, FN 0, FP 2 -> DetA = 8/10; AssA = (4 * 1/2 + 4 * 1) / 8 = 3/4 -> HOTA = sqrt(3/5).
    assert combined["DetA"] == pytest.approx(4 / 5) and combined["AssA"] == pytest.approx(3 / 4)
    assert combined["HOTA"] == pytest.approx(math.sqrt(3 / 5))
    assert averaged["HOTA"] == pytest.approx((math.sqrt(1 / 2) + math.sqrt(2 / 3)) / 2)
    # CLEAR overall pools events: GT 8, FP 2, IDSW 1 -> MOTA = 1 - 3/8 = 5/8 under both.
    assert combined["MOTA"] == pytest.approx(5 / 8) and averaged["MOTA"] == pytest.approx(5 / 8)
    assert combined["IDSW"] == 1 and combined["FP"] == 2 and combined["GT_Dets"] == 8


def test_ignore_regions_drop_only_unmatched_predictions_inside_them():
    region = np.array([[400.0, 400.0], [700.0, 400.0], [700.0, 700.0], [400.0, 700.0]])
    gt_rows = [[f, 1, *BOX_A] for f in range(2)]
    pred_rows = gt_rows + [[f, 9, *FAR] for f in range(2)]  # FAR lies inside the region in frame 0 only
    gt = seq("s", gt_rows, ignore_regions={0: [region]})
    # box_fraction: FAR is fully inside -> 1 > 0.1; polygon IoU = 200 / 90000 < 0.1 keeps it.
    fraction = EvaluationProtocol(ignore_overlap="box_fraction")
    metrics = evaluate_sequences({"s": seq("s", pred_rows)}, {"s": gt}, protocol=fraction).per_sequence["s"]
    assert metrics["FP"] == 1 and metrics["Ignored"] == 1  # frame 1 has no region: its FP stays
    assert evaluate_sequences({"s": seq("s", pred_rows)}, {"s": gt}).per_sequence["s"]["FP"] == 2
    off = EvaluationProtocol(ignore_overlap="box_fraction", use_ignore_regions=False)
    assert evaluate_sequences({"s": seq("s", pred_rows)}, {"s": gt}, protocol=off).per_sequence["s"]["FP"] == 2
    # A matched prediction inside a region is never dropped.
    covering = seq("s", gt_rows, ignore_regions={0: [np.array([[-5.0, -5.0], [50.0, -5.0], [50.0, 50.0], [-5.0, 50.0]])]})
    matched = evaluate_sequences({"s": seq("s", gt_rows)}, {"s": covering}, protocol=fraction).per_sequence["s"]
    assert matched["Ignored"] == 0 and matched["MOTA"] == pytest.approx(1.0)


def test_only_evaluated_frames_are_scored():
    gt = seq("s", [[0, 1, *BOX_A], [2, 1, *BOX_A]], evaluated_frames=np.array([0, 2]))
    pred = seq("s", [[0, 1, *BOX_A], [1, 1, *FAR], [1, 5, *BOX_B], [2, 1, *BOX_A]])
    metrics = evaluate_sequences({"s": pred}, {"s": gt}).per_sequence["s"]
    # Frame 1 is unannotated: its two boxes are not false positives.
    assert metrics["FP"] == 0 and metrics["MOTA"] == pytest.approx(1.0) and metrics["Frames"] == 2


def test_missing_and_unknown_sequences():
    gt = {"a": seq("a", [[0, 1, *BOX_A]]), "b": seq("b", [[0, 1, *BOX_A]])}
    result = evaluate_sequences({"a": seq("a", [[0, 1, *BOX_A]])}, gt)
    assert result.per_sequence["b"]["FN"] == 1 and result.per_sequence["b"]["HOTA"] == 0.0
    with pytest.raises(ValueError, match="no predictions for ground-truth sequences \\['b'\\]"):
        evaluate_sequences({"a": gt["a"]}, gt, missing_prediction="error")
    with pytest.raises(ValueError, match="without ground truth: \\['zzz'\\]"):
        evaluate_sequences({"zzz": gt["a"]}, gt)


def test_bad_sequences_are_rejected_with_the_sequence_name():
    with pytest.raises(ValueError, match="'v1'.*track id 3 appears twice in frame 5"):
        seq("v1", [[5, 3, *BOX_A], [5, 3, *BOX_B]])
    with pytest.raises(ValueError, match="'v2'.*negative box width"):
        seq("v2", [[0, 1, 0, 0, -1, 5]])
    with pytest.raises(ValueError, match="iou_threshold"):
        EvaluationProtocol(iou_threshold=0.0)


def test_box_iou_matches_hand_values():
    iou = box_iou_xywh(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 10, 10], [20, 20, 1, 1], [0, 0, 10, 10]]))
    np.testing.assert_allclose(iou, [[50 / 150, 0.0, 1.0]])


def test_results_are_written_as_csv_and_json(tmp_path: Path):
    import csv
    import json

    _, result = evaluate_one([[0, 1, *BOX_A]], [[0, 1, *BOX_A]])
    paths = result.write(tmp_path)
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [row["sequence"] for row in rows] == ["s", "OVERALL"]
    assert list(rows[0])[:11] == ["sequence", "HOTA", "DetA", "AssA", "MOTA", "IDF1", "IDSW", "Precision", "Recall", "FP", "FN"]
    payload = json.loads(paths["json"].read_text())
    assert payload["overall"]["HOTA"] == pytest.approx(1.0) and payload["protocol"]["iou_threshold"] == 0.5
    assert len(payload["hota_curves"]["OVERALL"]["HOTA"]) == 19
    assert not list(tmp_path.glob(".*.tmp"))
    # A sequence without any match has no MOTP: null in strict JSON, nan in the CSV.
    _, unmatched = evaluate_one([[0, 1, *BOX_A]], [[0, 1, *FAR]])
    paths = unmatched.write(tmp_path / "unmatched")
    assert json.loads(paths["json"].read_text())["per_sequence"]["s"]["MOTP"] is None
    assert list(csv.DictReader(paths["csv"].open()))[0]["MOTP"] == "nan"
    table = result.format_table()
    assert "OVERALL" in table and "100.00" in table


# ---------------------------------------------------------------- reference implementations


def test_own_hota_equals_trackeval_on_several_sequences():
    trackeval = require_trackeval()
    reference = trackeval.metrics.HOTA()
    own_results, reference_results = [], {}
    for seed in range(6):
        gt, pred = random_scene(seed, num_people=3 + 3 * seed)
        data = build_sequence_data(gt, pred)
        own = hota_sequence(data)
        expected = reference.eval_sequence(data.to_trackeval_dict())
        for field, key in (("hota", "HOTA"), ("det_a", "DetA"), ("ass_a", "AssA"), ("ass_re", "AssRe"),
                           ("ass_pr", "AssPr"), ("loc_a", "LocA"), ("det_re", "DetRe"), ("det_pr", "DetPr"),
                           ("tp", "HOTA_TP"), ("fn", "HOTA_FN"), ("fp", "HOTA_FP")):
            np.testing.assert_allclose(getattr(own, field), expected[key], atol=1e-6, err_msg=f"seed {seed} {key}")
        own_results.append(own)
        reference_results[data.name] = expected
    combined, expected = combine_hota(own_results), reference.combine_sequences(reference_results)
    np.testing.assert_allclose(combined.hota, expected["HOTA"], atol=1e-6)
    np.testing.assert_allclose(combined.ass_a, expected["AssA"], atol=1e-6)
    np.testing.assert_allclose(combined.loc_a, expected["LocA"], atol=1e-6)
    # The trackeval backend of evaluate_sequences gives the same table.
    scenes = [random_scene(seed, num_frames=12) for seed in range(3)]
    gts, preds = {gt.name: gt for gt, _ in scenes}, {pred.name: pred for _, pred in scenes}
    own_table = evaluate_sequences(preds, gts, hota_backend="own").overall
    reference_table = evaluate_sequences(preds, gts, hota_backend="trackeval").overall
    for key in ("HOTA", "DetA", "AssA", "LocA"):
        assert own_table[key] == pytest.approx(reference_table[key], abs=1e-6)


def test_empty_sides_equal_trackeval():
    trackeval = require_trackeval()
    gt = seq("s", [[0, 1, *BOX_A], [1, 1, *BOX_A]])
    empty = seq("s", [])
    for ground_truth, prediction in ((gt, empty), (empty, gt), (empty, empty)):
        data = build_sequence_data(ground_truth, prediction)
        own, expected = hota_sequence(data), trackeval.metrics.HOTA().eval_sequence(data.to_trackeval_dict())
        for field, key in (("hota", "HOTA"), ("fn", "HOTA_FN"), ("fp", "HOTA_FP"), ("loc_a", "LocA")):
            np.testing.assert_allclose(getattr(own, field), expected[key], atol=1e-12)


def motmetrics_data_dir() -> Path:
    import motmetrics

    return Path(motmetrics.__file__).parent / "data"


def load_mot_text(path: Path) -> np.ndarray:
    # TUD files are plain MOT rows; the project reader lives in datamodules.formats.mot.
    return np.loadtxt(path, delimiter=",", ndmin=2)


@pytest.mark.skipif(not (motmetrics_data_dir() / "TUD-Campus" / "gt.txt").is_file(),
                    reason="this motmetrics wheel ships no TUD-Campus data")
def test_tud_sequences_match_motmetrics_reference_values():
    names = ["TUD-Campus", "TUD-Stadtmitte"]
    gts = {name: seq(name, load_mot_text(motmetrics_data_dir() / name / "gt.txt")) for name in names}
    preds = {name: seq(name, load_mot_text(motmetrics_data_dir() / name / "test.txt")) for name in names}
    result = evaluate_sequences(preds, gts)
    # Reference values: motmetrics 1.4.0's own tests/test_metrics.py::test_motchallenge_files.
    expected = {
        "TUD-Campus": dict(IDF1=0.557659, IDP=0.729730, IDR=0.451253, Recall=0.582173, Precision=0.941441,
                           MT=1, PT=6, ML=1, FP=13, FN=150, IDSW=7, Frag=7, MOTA=0.526462, MOTP_distance=0.277201),
        "TUD-Stadtmitte": dict(IDF1=0.644619, IDP=0.819760, IDR=0.531142, Recall=0.608997, Precision=0.939920,
                               MT=5, PT=4, ML=1, FP=45, FN=452, IDSW=7, Frag=6, MOTA=0.564014, MOTP_distance=0.345904),
        "OVERALL": dict(IDF1=0.624296, IDP=0.799176, IDR=0.512211, Recall=0.602640, Precision=0.940268,
                        MT=6, PT=10, ML=2, FP=58, FN=602, IDSW=14, Frag=13, MOTA=0.555116, MOTP_distance=0.330177),
    }
    for name, values in expected.items():
        actual = result.overall if name == "OVERALL" else result.per_sequence[name]
        for key, value in values.items():
            assert actual[key] == pytest.approx(value, abs=1e-3), f"{name} {key}"
    trackeval = require_trackeval()
    for name in names:
        data = result.sequences[name]
        expected_hota = trackeval.metrics.HOTA().eval_sequence(data.to_trackeval_dict())["HOTA"].mean()
        assert result.per_sequence[name]["HOTA"] == pytest.approx(expected_hota, abs=1e-6)
        # TrackEval's CLEAR agrees with motmetrics on these files (MOTA, IDSW).
        clear = trackeval.metrics.CLEAR().eval_sequence(data.to_trackeval_dict())
        assert result.per_sequence[name]["MOTA"] == pytest.approx(clear["MOTA"], abs=1e-6)
        assert result.per_sequence[name]["IDSW"] == clear["IDSW"]
        # MOTP as MOTChallenge (and TrackEval) define it: the mean IoU of the matches.
        assert result.per_sequence[name]["MOTP"] == pytest.approx(clear["MOTP"], abs=1e-12)
        identity = trackeval.metrics.Identity().eval_sequence(data.to_trackeval_dict())
        assert result.per_sequence[name]["IDF1"] == pytest.approx(identity["IDF1"], abs=1e-6)


def test_track_sequence_from_frame_tracks_keeps_detected_entries_as_xywh():
    import torch

    from phalp_lightning.structures import FrameDetections, FrameTracks

    def frame(index: int, boxes: list[list[float]], ids: list[int], since_update: list[int]) -> FrameTracks:
        count = len(boxes)
        detections = FrameDetections(video="clip", frame_index=index, frame_name=f"{index:06d}.jpg", image_size=(480, 640),
                                     boxes=torch.tensor(boxes), scores=torch.ones(count),
                                     appearance=torch.zeros(count, 4096), pose=torch.zeros(count, 229),
                                     location=torch.zeros(count, 99))
        return FrameTracks(video="clip", frame_index=index, frame_name=f"{index:06d}.jpg", image_size=(480, 640),
                           track_ids=torch.tensor(ids), time_since_update=torch.tensor(since_update), detections=detections)

    tracks = [frame(0, [[0, 0, 10, 20], [50, 50, 60, 80]], [1, 2], [0, 0]),
              frame(1, [[1, 0, 11, 20], [50, 50, 60, 80]], [1, 2], [0, 3])]  # track 2 is a ghost in frame 1
    sequence = TrackSequence.from_frame_tracks(tracks)
    assert sequence.name == "clip"
    np.testing.assert_array_equal(sequence.frames, [0, 0, 1])
    np.testing.assert_array_equal(sequence.track_ids, [1, 2, 1])
    np.testing.assert_allclose(sequence.boxes[2], [1, 0, 10, 20])
    assert len(TrackSequence.from_frame_tracks(tracks, detected_only=False)) == 4


@pytest.mark.parametrize("protocol", [EvaluationProtocol(), EvaluationProtocol.phalp()], ids=["standard", "phalp"])
def test_bulk_event_table_equals_motmetrics_frame_by_frame(protocol):
    """``clear_events`` builds exactly the table ``MOTAccumulator.update`` builds, and the metrics agree."""
    import motmetrics
    import pandas as pd
    from motmetrics.metrics import events_to_df_map

    from phalp_lightning.evaluation.clear import (
        CLEAR_IDENTITY_METRICS,
        accumulate,
        clear_events,
        clear_identity_metrics,
        num_fragmentations,
    )

    sequences = []
    for seed in range(6):
        gt, pred = random_scene(seed, num_frames=40, num_people=3 + 2 * seed, miss_rate=0.3, clutter_rate=0.6)
        # Extra swaps of two tracks' ids halfway, and a track that comes back under an old id.
        first, last, late = pred.track_ids[0], pred.track_ids[-1], pred.frames > 20
        ids = pred.track_ids.copy()
        ids[late & (pred.track_ids == first)] = last
        ids[late & (pred.track_ids == last)] = first
        pred = TrackSequence(pred.name, pred.frames, ids, pred.boxes)
        data = build_sequence_data(gt, pred, protocol)
        pd.testing.assert_frame_equal(clear_events(data, protocol), accumulate(data, protocol).events)
        reference = motmetrics.metrics.create().compute(accumulate(data, protocol).events,
                                                        metrics=["num_fragmentations"], return_dataframe=False)
        assert num_fragmentations(events_to_df_map(clear_events(data, protocol)), None) == reference["num_fragmentations"]
        sequences.append(data)
    per_sequence, overall = clear_identity_metrics(sequences, protocol)
    host = motmetrics.metrics.create()
    summary = host.compute_many([accumulate(data, protocol) for data in sequences], metrics=list(CLEAR_IDENTITY_METRICS),
                                names=[data.name for data in sequences], generate_overall=True)
    for key, column in CLEAR_IDENTITY_METRICS.items():
        expected = float(summary.loc["OVERALL", key])
        assert overall[column] == expected or (math.isnan(expected) and math.isnan(overall[column])), column
