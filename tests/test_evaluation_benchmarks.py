"""Benchmark presets: MOT16/17/20 preprocessing against TrackEval, PoseTrack rules, and the automatic choice."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from helpers.reference_evaluators import require_trackeval

from phalp_lightning.errors import UserError
from phalp_lightning.evaluation.benchmarks import get_benchmark, resolve_benchmark
from phalp_lightning.evaluation.loading import load_ground_truth
from phalp_lightning.pipelines.evaluate import evaluate_files

PED, PERSON_ON_VEHICLE, CAR, NON_MOT_VEHICLE, STATIC, DISTRACTOR, OCCLUDER, REFLECTION = 1, 2, 3, 6, 7, 8, 9, 12


def mot17_style_sequence(frames: int = 12, seed: int = 0) -> tuple[list[list[float]], list[list[float]]]:
    """Ground truth (frame, id, x, y, w, h, conf, class, visibility) and tracker rows of one MOT17-style video.

    - pedestrians 1-3 walk to the right; the tracker follows them with small box noise, switches
      person 1's id at frame 7 and misses person 3 in frames 9-10;
    - person 2 is zero-marked (conf 0) in frames 4-6: not scored, its tracker box stays (an FP);
    - a static person (7), a reflection (12) and a person on a vehicle (2), each with a tracker box
      on it: removed by the MOT17 preprocessing;
    - a distractor (8) whose tracker box overlaps only by IoU ~0.4: not matched, stays an FP;
    - a car (3) with a tracker box on it: matched, but not a distractor class: stays an FP;
    - a non-motorised vehicle (6) with a tracker box: an FP for MOT17, removed for MOT20;
    - an occluder (9) without tracker boxes; a static person that overlaps pedestrian 2 in frames 0-2,
      with one tracker box between them (the Hungarian match decides which one it belongs to).
    """
    rng = np.random.default_rng(seed)
    gt, pred = [], []
    for frame in range(1, frames + 1):
        for person in (1, 2, 3):
            x, y = 40.0 + 60.0 * person + 4.0 * frame, 100.0 + 10.0 * person
            conf = 0 if person == 2 and 4 <= frame <= 6 else 1
            gt.append([frame, person, x, y, 40.0, 90.0, conf, PED, 1.0])
            if person == 3 and frame in (9, 10):
                continue
            track = 100 + person if not (person == 1 and frame >= 7) else 200
            noise = rng.normal(0.0, 1.0, 4)
            pred.append([frame, track, x + noise[0], y + noise[1], 40.0 + noise[2], 90.0 + noise[3], 1, -1, -1, -1])
        distractors = [(10, STATIC, [600.0, 50.0, 30.0, 80.0]), (11, REFLECTION, [700.0, 60.0, 30.0, 80.0]),
                       (12, PERSON_ON_VEHICLE, [800.0, 40.0, 30.0, 70.0]), (13, DISTRACTOR, [600.0, 300.0, 30.0, 80.0]),
                       (14, CAR, [700.0, 300.0, 80.0, 40.0]), (15, NON_MOT_VEHICLE, [820.0, 300.0, 50.0, 60.0]),
                       (16, OCCLUDER, [50.0, 400.0, 100.0, 100.0])]
        for gt_id, cls, box in distractors:
            gt.append([frame, gt_id, *box, 0 if cls != CAR else 1, cls, 0.5])
        gt_frame_pred = [(300, [600.0, 50.0, 30.0, 80.0]), (301, [700.0, 61.0, 30.0, 80.0]), (302, [801.0, 40.0, 30.0, 70.0]),
                         (303, [614.0, 300.0, 30.0, 80.0]), (304, [701.0, 300.0, 80.0, 40.0]), (305, [820.0, 301.0, 50.0, 60.0])]
        pred += [[frame, track, *box, 1, -1, -1, -1] for track, box in gt_frame_pred]
        if frame <= 3:
            x2 = 40.0 + 120.0 + 4.0 * frame
            gt.append([frame, 17, x2 + 8.0, 120.0, 40.0, 90.0, 0, STATIC, 0.3])
            pred.append([frame, 306, x2 + 6.0, 120.0, 40.0, 90.0, 1, -1, -1, -1])
    return gt, pred


def write_mot17_layout(root: Path, names: list[str], frames: int = 12) -> tuple[Path, Path]:
    """TrackEval's layout: gt/<seq>/{gt/gt.txt, seqinfo.ini}, trackers/tracker/data/<seq>.txt."""
    for seed, name in enumerate(names):
        gt, pred = mot17_style_sequence(frames, seed)
        folder = root / "gt" / name
        (folder / "gt").mkdir(parents=True)
        np.savetxt(folder / "gt" / "gt.txt", np.asarray(gt), fmt="%d,%d,%.2f,%.2f,%.2f,%.2f,%d,%d,%.2f")
        (folder / "seqinfo.ini").write_text(f"[Sequence]\nname={name}\nseqLength={frames}\n")
        results = root / "trackers" / "tracker" / "data"
        results.mkdir(parents=True, exist_ok=True)
        np.savetxt(results / f"{name}.txt", np.asarray(pred), fmt="%d,%d,%.3f,%.3f,%.3f,%.3f,%d,%d,%d,%d")
    return root / "trackers" / "tracker" / "data", root / "gt"


def trackeval_figures(root: Path, benchmark: str) -> dict[str, dict[str, float]]:
    trackeval = require_trackeval()
    config = trackeval.Evaluator.get_default_eval_config()
    config.update({"USE_PARALLEL": False, "PRINT_RESULTS": False, "PRINT_CONFIG": False, "TIME_PROGRESS": False,
                   "OUTPUT_SUMMARY": False, "OUTPUT_DETAILED": False, "PLOT_CURVES": False, "DISPLAY_LESS_PROGRESS": True})
    names = sorted(path.name for path in (root / "gt").iterdir())
    dataset = trackeval.datasets.MotChallenge2DBox({
        "GT_FOLDER": str(root / "gt"), "TRACKERS_FOLDER": str(root / "trackers"), "SKIP_SPLIT_FOL": True,
        "SEQ_INFO": {name: None for name in names}, "BENCHMARK": benchmark, "PRINT_CONFIG": False,
        "TRACKERS_TO_EVAL": ["tracker"]})
    metrics = [trackeval.metrics.HOTA(), trackeval.metrics.CLEAR(), trackeval.metrics.Identity()]
    results, _ = trackeval.Evaluator(config).evaluate([dataset], metrics)
    figures = {}
    for name, value in results["MotChallenge2DBox"]["tracker"].items():
        result = value["pedestrian"]
        figures["OVERALL" if name == "COMBINED_SEQ" else name] = {
            "HOTA": float(np.mean(result["HOTA"]["HOTA"])), "DetA": float(np.mean(result["HOTA"]["DetA"])),
            "AssA": float(np.mean(result["HOTA"]["AssA"])), "MOTA": float(result["CLEAR"]["MOTA"]),
            "MOTP": float(result["CLEAR"]["MOTP"]), "FP": float(result["CLEAR"]["CLR_FP"]),
            "FN": float(result["CLEAR"]["CLR_FN"]), "IDSW": float(result["CLEAR"]["IDSW"]),
            "IDF1": float(result["Identity"]["IDF1"]), "GT_Dets": float(result["Count"]["GT_Dets"]), "Pred_Dets": float(result["Count"]["Dets"]),
        }
    return figures


@pytest.mark.parametrize("mode", ["MOT17", "MOT20"])
def test_mot_presets_equal_trackeval(tmp_path: Path, mode: str):
    names = [f"{mode}-0{index}" for index in (2, 4)]
    pred, gt = write_mot17_layout(tmp_path, names)
    reference = trackeval_figures(tmp_path, mode)
    result = evaluate_files(pred, gt, format="mot")  # auto: the names say the benchmark
    assert result.benchmark.name == mode.lower() and "auto" in result.benchmark.reason
    for name, expected in reference.items():
        actual = result.overall if name == "OVERALL" else result.per_sequence[name]
        for column, value in expected.items():
            assert actual[column] == pytest.approx(value, abs=1e-12), f"{mode} {name} {column}"
    # What the preprocessing removed per frame: static person, reflection, person on vehicle (+ the
    # non-motorised vehicle in MOT20), and the box on the overlapping static person in frames 1-3.
    removed = 3 + (mode == "MOT20")
    assert result.per_sequence[names[0]]["Ignored"] == 12 * removed + 3
    footer = result.format_table().splitlines()
    assert footer[-3].startswith(f"benchmark: {mode.lower()} (auto: sequences named {mode}-*)")
    assert "MOTA, MOTP, IDSW, FP, FN, Frag, MT/PT/ML, IDF1, IDP, IDR, ... by TrackEval 1.3.0's" in footer[-1]


def test_plain_scores_distractors_as_the_issue_describes(tmp_path: Path):
    pred, gt = write_mot17_layout(tmp_path, ["MOT17-02"])
    plain = evaluate_files(pred, gt, format="mot", benchmark="plain")
    mot17 = evaluate_files(pred, gt, format="mot", benchmark="mot17")
    # Plain keeps every non-zero-marked row as ground truth (the car) and every prediction: more FPs.
    assert plain.overall["FP"] > mot17.overall["FP"] and plain.overall["MOTA"] < mot17.overall["MOTA"]
    assert plain.benchmark.name == "plain" and plain.overall["Ignored"] == 0


def test_zero_marked_is_truncated_to_an_integer_like_trackeval(tmp_path: Path):
    # conf 0.5 is "zero marked" for TrackEval (int(0.5) == 0) but not for the plain rule (0.5 != 0).
    rows = [[1, 1, 0, 0, 10, 20, 0.5, 1, 1], [1, 2, 50, 0, 10, 20, 1, 1, 1]]
    (tmp_path / "s" / "gt").mkdir(parents=True)
    np.savetxt(tmp_path / "s" / "gt" / "gt.txt", rows, fmt="%g", delimiter=",")
    ground_truth, benchmark = load_ground_truth([tmp_path], "mot", benchmark="mot17")
    data_kinds = ground_truth["s"].kinds
    assert benchmark.name == "mot17" and data_kinds.tolist() == [1, 0]  # unscored, scored
    plain, _ = load_ground_truth([tmp_path], "mot", benchmark="plain")
    assert len(plain["s"]) == 2
    mot15, _ = load_ground_truth([tmp_path], "mot", benchmark="mot15")
    assert mot15["s"].track_ids.tolist() == [2]


def test_benchmark_chosen_for_each_file_layout(tmp_path: Path):
    def mot_file(path: Path, columns: int, cls: int = 1) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        row = [1, 1, 0, 0, 10, 20, 1, cls, 1, -1][:columns]
        path.write_text(",".join(f"{value:g}" for value in row) + "\n")
        return path

    # MOT text without a class column -> plain.
    plain = mot_file(tmp_path / "a" / "seq.txt", 10, cls=-1)
    assert load_ground_truth([plain], "mot")[1].name == "plain"
    # MOTChallenge names decide.
    for bench in ("MOT16", "MOT17", "MOT20"):
        file = mot_file(tmp_path / bench / f"{bench}-05" / "gt" / "gt.txt", 9)
        assert load_ground_truth([file], "mot")[1].name == bench.lower()
    # A class column without MOTChallenge names: MOT17 rules when no row is class 6 (all presets agree) ...
    other = mot_file(tmp_path / "c" / "dance1" / "gt" / "gt.txt", 9)
    chosen = load_ground_truth([other], "mot")[1]
    assert chosen.name == "mot17" and "agree" in chosen.reason
    # ... and an error asking for benchmark= when class 6 makes MOT17 and MOT20 differ.
    six = mot_file(tmp_path / "d" / "city" / "gt" / "gt.txt", 9, cls=6)
    with pytest.raises(UserError, match="benchmark=mot17 or benchmark=mot20"):
        load_ground_truth([six], "mot")
    assert load_ground_truth([six], "mot", benchmark="mot20")[1].name == "mot20"
    # PoseTrack: person_id marks PoseTrack21.
    pt18, pt21 = tmp_path / "pt18.json", tmp_path / "pt21.json"
    annotation = {"image_id": 1, "track_id": 0, "bbox": [0, 0, 5, 5]}
    video = {"images": [{"id": 1, "file_name": "a.jpg", "frame_id": 1, "is_labeled": True}], "annotations": [annotation]}
    pt18.write_text(json.dumps(video))
    annotation["person_id"] = 7
    pt21.write_text(json.dumps(video))
    assert resolve_benchmark("auto", [pt18], "posetrack").name == "posetrack18_boxes"
    assert resolve_benchmark("auto", [pt21], "posetrack").name == "posetrack21_boxes"
    assert resolve_benchmark("auto", [tmp_path / "x.pkl"], "phalp_pkl").name == "plain"
    with pytest.raises(UserError, match="not a preset"):
        get_benchmark("mot99")
    with pytest.raises(UserError, match="does not apply"):
        load_ground_truth([pt18], "posetrack", benchmark="mot17")


def test_mot_preset_needs_the_class_column_and_pedestrian_results(tmp_path: Path):
    gt = tmp_path / "s" / "gt" / "gt.txt"
    gt.parent.mkdir(parents=True)
    gt.write_text("1,1,0,0,10,20,1,-1,-1,-1\n")
    with pytest.raises(UserError, match="no class column"):
        load_ground_truth([gt], "mot", benchmark="mot17")
    gt.write_text("1,1,0,0,10,20,1,1,1\n")
    pred = tmp_path / "s.txt"
    pred.write_text("1,5,0,0,10,20,1,3,-1,-1\n")
    with pytest.raises(UserError, match="class 3 in column 8"):
        evaluate_files(pred, gt, benchmark="mot17")
    (tmp_path / "s" / "seqinfo.ini").write_text("[Sequence]\nseqLength=1\n")
    pred.write_text("2,5,0,0,10,20,1,-1,-1,-1\n")
    with pytest.raises(UserError, match="frame 2 is past the sequence's seqLength 1"):
        evaluate_files(pred, gt, benchmark="mot17")


def posetrack_files(root: Path, person_id: bool) -> tuple[Path, Path]:
    """One video, 3 images (image 1 unlabeled), an ignore region over the right half of frame 0.

    Ground truth: person 1 (left, 3 annotated joints), person 2 (right, its joints all inside the
    region in frame 0), person 3 in frame 2 without any annotated joint.
    Predictions: exact boxes for 1 and 2, a stray box whose centre is in the region (frame 0), and
    a stray box in frame 2 that overlaps the region by IoU ~0.2 with no ground truth in the frame...
    (frame 2 has no region), so it is a false positive under every preset.
    """
    from phalp_lightning.datamodules.formats.posetrack import (
        PoseTrackFrame,
        PoseTrackPerson,
        PoseTrackVideo,
        write_posetrack,
    )

    def person(track: int, box: list[float], joints: bool = True) -> PoseTrackPerson:
        keypoints = np.zeros((17, 3))
        if joints:
            keypoints[[0, 5, 6]] = [[box[0] + 5, box[1] + 5, 1], [box[0] + 2, box[1] + 20, 1], [box[0] + 8, box[1] + 20, 1]]
        return PoseTrackPerson(track_id=track, box_xywh=np.asarray(box, float), keypoints=keypoints,
                               person_id=track if person_id else None)

    left, right, nobody = [10.0, 10.0, 20.0, 40.0], [210.0, 10.0, 20.0, 40.0], [100.0, 100.0, 20.0, 40.0]
    region = np.array([[200.0, 0.0], [400.0, 0.0], [400.0, 200.0], [200.0, 200.0]])
    gt_frames = [
        PoseTrackFrame(0, "0.jpg", 0, True, [person(1, left), person(2, right)], [region]),
        PoseTrackFrame(0, "1.jpg", 1, False, []),
        PoseTrackFrame(0, "2.jpg", 2, True, [person(1, left), person(2, right), person(3, nobody, joints=False)]),
    ]
    pred_frames = [
        PoseTrackFrame(0, "0.jpg", 0, True, [person(11, left), person(12, right), person(13, [300.0, 100.0, 30.0, 30.0])]),
        PoseTrackFrame(0, "1.jpg", 1, True, [person(11, left)]),
        PoseTrackFrame(0, "2.jpg", 2, True, [person(11, left), person(12, right)]),
    ]
    write_posetrack(root / "gt" / "v.json", PoseTrackVideo(None, "v", gt_frames, []))
    write_posetrack(root / "pred" / "v.json", PoseTrackVideo(None, "v", pred_frames, []))
    return root / "pred", root / "gt"


def test_posetrack18_rules_drop_people_without_visible_joints_outside_regions(tmp_path: Path):
    pred, gt = posetrack_files(tmp_path, person_id=False)
    result = evaluate_files(pred, gt, format="posetrack")
    assert result.benchmark.name == "posetrack18_boxes"
    metrics = result.overall
    # Scored frames 0 and 2 (frame 1 is unlabeled). Frame 0: person 2's joints are all in the region
    # -> removed, and so are its prediction (12) and the stray box 13 (its joints lie in the region
    # too). Frame 2: person 3 has no annotated joint -> never counted (poseval has no joint to score).
    # GT: 1 + 2 = 3 boxes, all matched: MOTA 1.
    assert (metrics["GT_Dets"], metrics["Frames"], metrics["Ignored"]) == (3, 2, 2)
    assert metrics["FP"] == 0 and metrics["FN"] == 0 and metrics["MOTA"] == pytest.approx(1.0)


def test_posetrack21_rules_remove_unmatched_predictions_overlapping_regions(tmp_path: Path):
    pred, gt = posetrack_files(tmp_path, person_id=True)
    result = evaluate_files(pred, gt, format="posetrack")
    assert result.benchmark.name == "posetrack21_boxes"
    metrics = result.overall
    # Labeled frames 0 and 2. Ground truth keeps every annotation with a box: 2 + 3 = 5. Frame 0:
    # prediction 12 matches person 2 (kept); the stray box 13 (30x30 inside the region, IoU with the
    # region 900 / 40000 < 0.1) is not removed: an FP. Frame 2: person 3 is missed.
    assert (metrics["GT_Dets"], metrics["Frames"], metrics["Ignored"]) == (5, 2, 0)
    assert (metrics["FP"], metrics["FN"]) == (1, 1)
    assert metrics["MOTA"] == pytest.approx(1 - 2 / 5)


def test_motp_is_motchallenges_mean_iou(tmp_path: Path):
    from phalp_lightning.evaluation.evaluator import evaluate_sequences
    from phalp_lightning.evaluation.sequences import TrackSequence

    gt = TrackSequence.from_rows("s", np.array([[0, 1, 0, 0, 10, 10]]))
    pred = TrackSequence.from_rows("s", np.array([[0, 1, 0, 0, 10, 8]]))  # IoU 0.8
    metrics = evaluate_sequences({"s": pred}, {"s": gt}).overall
    assert metrics["MOTP"] == pytest.approx(0.8) and metrics["MOTP_distance"] == pytest.approx(0.2)
    assert not math.isnan(metrics["MOTP"])


def test_posetrack21_mot_layout_uses_image_info_regions(tmp_path: Path):
    """PoseTrack21's MOT layout (<seq>/image_info.json + gt/gt.txt) is recognised and scored by its rules."""
    seq = tmp_path / "gt" / "000001_bonn_val"
    region_x, region_y = [[300, 400, 400, 300]], [[0, 0, 100, 100]]
    info = [{"file_name": f"{index:06d}.jpg", "frame_index": index + 1, "ignore_regions_x": region_x if index else [],
             "ignore_regions_y": region_y if index else []} for index in range(3)]
    (seq / "gt").mkdir(parents=True)
    (seq / "image_info.json").write_text(json.dumps(info))
    (seq / "gt" / "gt.txt").write_text("1,1,10,10,20,40,1,-1,-1,-1\n2,1,12,10,20,40,1,-1,-1,-1\n")
    pred = tmp_path / "pred" / "000001_bonn_val.txt"
    pred.parent.mkdir()
    # Frame 2: a stray box in the region (IoU 2500 / 10000 > 0.1) next to a matched one -> removed.
    # Frame 3: the same stray box, but the frame holds no ground truth -> kept (a false positive).
    pred.write_text("1,5,10,10,20,40,1,-1,-1,-1\n2,5,12,10,20,40,1,-1,-1,-1\n2,6,320,20,50,50,1,-1,-1,-1\n"
                    "3,6,320,20,50,50,1,-1,-1,-1\n")
    result = evaluate_files(pred, tmp_path / "gt")
    assert result.benchmark.name == "posetrack21_boxes" and "image_info.json" in result.benchmark.reason
    metrics = result.overall
    assert (metrics["Frames"], metrics["GT_Dets"], metrics["Ignored"], metrics["FP"]) == (3, 2, 1, 1)
    pred.write_text("4,5,10,10,20,40,1,-1,-1,-1\n")
    with pytest.raises(UserError, match="frame 4 is past the sequence's seqLength 3"):
        evaluate_files(pred, tmp_path / "gt")
