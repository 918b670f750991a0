"""``python evaluate.py`` end to end on small MOT and PoseTrack files written by the format writers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from helpers import synthetic_data

synthetic_video = synthetic_data.synthetic_video

BOX_A = [10.0, 10.0, 20.0, 40.0]
BOX_B = [200.0, 10.0, 20.0, 40.0]


def write_mot_files(root: Path) -> tuple[Path, Path]:
    """Ground truth in the MOTChallenge layout, results as <sequence>.txt.

    walk: 2 people x 4 frames; the tracker switches person 1's id at frame 3 and misses person 2 at frame 4.
    solo: 1 person x 3 frames tracked perfectly, plus 1 false positive; a conf=0 (ignored) gt row.
    """
    from phalp_lightning.datamodules.formats.mot import write_mot

    gt_walk = [[f, person, *box, 1] for f in range(1, 5) for person, box in ((1, BOX_A), (2, BOX_B))]
    pred_walk = [[f, 7 if f < 3 else 8, *BOX_A, 1] for f in range(1, 5)] + [[f, 9, *BOX_B, 1] for f in range(1, 4)]
    gt_solo = [[f, 1, *BOX_A, 1] for f in range(1, 4)] + [[1, 5, *BOX_B, 0]]
    pred_solo = [[f, 3, *BOX_A, 1] for f in range(1, 4)] + [[2, 4, 400.0, 400.0, 20.0, 40.0, 1]]
    write_mot(root / "gt" / "walk" / "gt" / "gt.txt", gt_walk)
    write_mot(root / "gt" / "solo" / "gt" / "gt.txt", gt_solo)
    write_mot(root / "pred" / "walk.txt", pred_walk)
    write_mot(root / "pred" / "solo.txt", pred_solo)
    return root / "pred", root / "gt"


def test_mot_folders_evaluate_to_hand_values(compose_cfg, tmp_path: Path, caplog):
    from phalp_lightning.pipelines.evaluate import run

    pred, gt = write_mot_files(tmp_path / "data")
    cfg = compose_cfg("evaluate", [f"pred={pred}", f"gt={gt}", "format=mot"])
    caplog.set_level("INFO", logger="phalp_lightning")
    overall = run(cfg)
    # GT boxes: walk 8 + solo 3 (the conf=0 row is dropped) = 11. Misses: 1 (walk, frame 4). FP: 1 (solo).
    # ID switches: 1 (walk, frame 3). MOTA = 1 - (1 + 1 + 1) / 11 = 8/11.
    assert overall["MOTA"] == pytest.approx(8 / 11)
    assert (overall["FN"], overall["FP"], overall["IDSW"], overall["GT_Dets"]) == (1, 1, 1, 11)
    # IDF1: walk IDTP = 2 (gt1<->7) + 3 (gt2<->9) = 5 of 8 gt / 7 pred; solo IDTP 3 of 3 gt / 4 pred.
    # Pooled: IDTP 8, IDFN 11 - 8 = 3, IDFP 11 - 8 = 3 -> IDF1 = 16 / (16 + 6) = 8/11.
    assert overall["IDF1"] == pytest.approx(8 / 11)
    # HOTA (all similarities 1): TP 10, FN 1, FP 1 -> DetA = 10/12. AssA over TPs:
    #   walk gt1: 2 TPs with pred 7 (2/4) and 2 with pred 8 (2/4); gt2: 3 TPs with pred 9, gt2 has 4 dets,
    #   pred 9 has 3 -> 3 / (4 + 3 - 3) = 3/4; solo: gt 1 and pred 3 both have 3 dets, all shared -> 1
    #   (the false positive is a different id, 4, so it does not dilute pred 3).
    ass = (2 * 0.5 + 2 * 0.5 + 3 * 0.75 + 3 * 1.0) / 10
    assert overall["AssA"] == pytest.approx(ass)
    assert overall["HOTA"] == pytest.approx(math.sqrt(10 / 12 * ass))
    output = Path(cfg.paths.output_dir)
    rows = (output / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("sequence,HOTA,DetA,AssA,MOTA,IDF1,IDSW,Precision,Recall,FP,FN")
    assert [row.split(",")[0] for row in rows[1:]] == ["solo", "walk", "OVERALL"]
    payload = json.loads((output / "metrics.json").read_text())
    assert payload["per_sequence"]["walk"]["IDSW"] == 1 and payload["protocol"]["name"] == "standard"
    # One table file with the defaults (no logger's csv/version_0/metrics.csv beside it) ...
    assert sorted(output.rglob("metrics.csv")) == [output / "metrics.csv"]
    # ... and the benchmark's explanation printed once (under the table).
    printed = "\n".join(record.getMessage() for record in caplog.records)
    assert printed.count("without a class column") == 1, printed


def write_posetrack_files(root: Path) -> tuple[Path, Path]:
    """One video of 4 images: frame 2 unlabeled; frame 0 has an ignore region around a stray prediction."""
    from phalp_lightning.datamodules.formats.posetrack import (
        PoseTrackFrame,
        PoseTrackPerson,
        PoseTrackVideo,
        write_posetrack,
    )

    def person(track: int, box: list[float]) -> PoseTrackPerson:
        return PoseTrackPerson(track_id=track, box_xywh=np.asarray(box), keypoints=np.zeros((17, 3)))

    region = np.array([[380.0, 380.0], [460.0, 380.0], [460.0, 460.0], [380.0, 460.0]])
    gt_frames, pred_frames = [], []
    for index in range(4):
        labeled = index != 2
        gt_frames.append(PoseTrackFrame(0, f"images/val/v/{index:06d}.jpg", index, labeled,
                                        [person(1, BOX_A)] if labeled else [],
                                        [region] if index == 0 else []))
        # The tracker's box for person 1 overlaps by IoU 1/3 (shifted by half a width): standard
        # protocol (IoU >= 0.5) misses it, PHALP's (IoU >= 0.01) matches it.
        shifted = [BOX_A[0] + 10.0, *BOX_A[1:]]
        people = [person(5, shifted)] + ([person(6, [400.0, 400.0, 40.0, 40.0])] if index in (0, 2) else [])
        pred_frames.append(PoseTrackFrame(0, f"images/val/v/{index:06d}.jpg", index, True, people))
    write_posetrack(root / "gt" / "000001_v_val.json", PoseTrackVideo(None, "000001", gt_frames, []))
    write_posetrack(root / "pred" / "000001_v_val.json", PoseTrackVideo(None, "000001", pred_frames, []))
    return root / "pred", root / "gt"


def test_posetrack_json_uses_labeled_frames_ignore_regions_and_protocols(compose_cfg, tmp_path: Path):
    from phalp_lightning.pipelines.evaluate import run

    pred, gt = write_posetrack_files(tmp_path / "data")
    common = [f"pred={pred}", f"gt={gt}", "format=posetrack", "benchmark=plain", "eval_protocol.ignore_overlap=box_fraction"]
    loose = run(compose_cfg("evaluate", [*common, "eval_protocol=phalp"]))
    # Scored frames 0, 1, 3 (frame 2 unlabeled, its stray box is not an FP); the stray box in frame 0
    # lies in the ignore region -> dropped. PHALP protocol: 3 TP -> MOTA 1, IDF1 1.
    assert loose["GT_Dets"] == 3 and loose["Frames"] == 3 and loose["Ignored"] == 1
    assert loose["FP"] == 0 and loose["MOTA"] == pytest.approx(1.0) and loose["IDF1"] == pytest.approx(1.0)
    strict = run(compose_cfg("evaluate", [*common, "eval_protocol=standard"]))
    # IoU 1/3 < 0.5: 3 FN + 3 FP -> MOTA = 1 - 6/3 = -1. HOTA counts at alphas <= 1/3 (0.05 ... 0.30: 6 of 19).
    assert strict["MOTA"] == pytest.approx(-1.0) and strict["FP"] == 3
    assert strict["HOTA"] == pytest.approx(6 / 19)


def test_bad_arguments_fail_with_clear_messages(compose_cfg, tmp_path: Path):
    from phalp_lightning.pipelines.evaluate import run

    pred, gt = write_mot_files(tmp_path / "data")
    with pytest.raises(ValueError, match="format='csv' is not one of"):
        run(compose_cfg("evaluate", [f"pred={pred}", f"gt={gt}", "format=csv"]))
    with pytest.raises(FileNotFoundError, match="nowhere: no such file or folder"):
        run(compose_cfg("evaluate", [f"pred={tmp_path / 'nowhere'}", f"gt={gt}"]))
    with pytest.raises(ValueError, match="sequences=\\['x'\\] not in the ground truth"):
        run(compose_cfg("evaluate", [f"pred={pred}", f"gt={gt}", "sequences=[x]"]))
    only = run(compose_cfg("evaluate", [f"pred={pred}", f"gt={gt}", "sequences=[walk]"]))
    assert only["GT_Dets"] == 8


@pytest.mark.parametrize("protocol", ["standard", "phalp"])
@pytest.mark.parametrize("logger", ["csv", "wandb", "many", "none"])
def test_evaluate_config_composes(compose_cfg, protocol, logger):
    import hydra
    from omegaconf import OmegaConf

    from phalp_lightning.evaluation.protocol import EvaluationProtocol

    cfg = compose_cfg("evaluate", ["pred=a", "gt=b", f"eval_protocol={protocol}", f"logger={logger}"])
    OmegaConf.resolve(cfg)
    built = hydra.utils.instantiate(cfg.eval_protocol)
    assert isinstance(built, EvaluationProtocol) and built.name == protocol
    if logger in ("wandb", "many"):
        assert cfg.logger.wandb.offline is None and list(cfg.logger.wandb.tags) == ["eval"]


def test_sample_frames_are_logged_as_pngs_without_wandb(compose_cfg, tmp_path: Path):
    import cv2

    from phalp_lightning.pipelines.evaluate import run

    pred, gt = write_mot_files(tmp_path / "data")
    image = np.zeros((12, 16, 3), dtype=np.uint8)
    image[:, :, 1] = 200
    cv2.imwrite(str(tmp_path / "frame.png"), image)
    cfg = compose_cfg("evaluate", [f"pred={pred}", f"gt={gt}", f"sample_frames=[{tmp_path / 'frame.png'}]"])
    run(cfg)
    written = cv2.imread(str(Path(cfg.paths.output_dir) / "eval_frames" / "0000.png"))
    assert written is not None and written[0, 0].tolist() == [0, 200, 0]


def test_evaluate_files_is_the_plain_function_behind_the_cli(tmp_path: Path):
    from phalp_lightning.evaluation.protocol import EvaluationProtocol
    from phalp_lightning.pipelines.evaluate import evaluate_files

    pred, gt = write_mot_files(tmp_path / "data")
    result = evaluate_files([pred / "walk.txt"], gt, format="mot", sequences=["walk"],
                            protocol=EvaluationProtocol.phalp())
    assert list(result.per_sequence) == ["walk"] and result.per_sequence["walk"]["IDSW"] == 1
    assert result.protocol.name == "phalp"


@pytest.mark.slow
def test_generated_scene_mot_ground_truth_against_its_posetrack_json(synthetic_video, tmp_path: Path):
    """The generator's MOT ground truth (1-based frames, ids + 1) and PoseTrack JSON (0-based) line up."""
    from phalp_lightning.pipelines.evaluate import evaluate_files

    json_copy = tmp_path / f"{synthetic_video.out_dir.name}.json"  # name the JSON like the MOT sequence
    json_copy.write_text(synthetic_video.posetrack_json_path.read_text())
    result = evaluate_files(json_copy, synthetic_video.mot_gt_path, format="posetrack", gt_format="mot")
    overall = result.overall
    assert overall["GT_Dets"] == sum(len(ids) for ids in synthetic_video.track_ids) > 0
    for name in ("HOTA", "MOTA", "IDF1", "Recall", "Precision"):
        assert overall[name] == pytest.approx(1.0, abs=1e-3), name
    # Ground truth shifted by one frame (what a 1-based/0-based mix-up does) is no longer perfect.
    from phalp_lightning.datamodules.formats.mot import read_mot, write_mot

    rows = read_mot(synthetic_video.mot_gt_path).to_array()
    rows[:, 0] += 1
    shifted_gt = write_mot(tmp_path / synthetic_video.out_dir.name / "gt" / "gt.txt", rows)
    shifted = evaluate_files(json_copy, shifted_gt, format="posetrack", gt_format="mot").overall
    assert shifted["HOTA"] < 0.99 and shifted["FN"] > 0


def test_phalp_pickles_evaluate_detected_entries_against_given_boxes(compose_cfg, tmp_path: Path):
    import joblib
    from phalp_lightning.datamodules.formats.phalp_results import GivenBoxes, write_given_boxes

    from phalp_lightning.pipelines.evaluate import run

    given = {f"{index:06d}.jpg": GivenBoxes(np.array([BOX_A, BOX_B]), np.array([1, 2]), ["person"] * 2) for index in range(3)}
    write_given_boxes(tmp_path / "gt" / "clip.pkl", given)
    records = {
        # frame 1: track 6 is a ghost (missed for 2 frames) and track 5 is listed twice (a back-fill).
        # frame 2: person 2 comes back under a new id, 7.
        "clip/000000.jpg": dict(time=0, tid=[5, 6], bbox=[BOX_A, BOX_B], tracked_time=[0, 0]),
        "clip/000001.jpg": dict(time=1, tid=[5, 6, 5], bbox=[BOX_A, BOX_B, BOX_A], tracked_time=[0, 2, 0]),
        "clip/000002.jpg": dict(time=2, tid=[5, 7], bbox=[BOX_A, BOX_B], tracked_time=[0, 0]),
    }
    (tmp_path / "results").mkdir()
    joblib.dump(records, tmp_path / "results" / "demo_clip.pkl")
    overall = run(compose_cfg("evaluate", [f"pred={tmp_path / 'results'}", f"gt={tmp_path / 'gt'}", "format=phalp_pkl"]))
    # GT 6, TP 5, FN 1 (the ghost), FP 0, IDSW 1 (6 -> 7): MOTA = 1 - (1 + 0 + 1) / 6 = 2/3.
    assert (overall["GT_Dets"], overall["Pred_Dets"], overall["FN"], overall["FP"], overall["IDSW"]) == (6, 5, 1, 0, 1)
    assert overall["MOTA"] == pytest.approx(2 / 3)
    # IDTP = 3 (gt 1 <-> 5) + 1 (gt 2 <-> 6 or 7) = 4; IDFN = 6 - 4; IDFP = 5 - 4 -> IDF1 = 8 / (8 + 3) = 8/11.
    assert overall["IDF1"] == pytest.approx(8 / 11)


def test_phalp_preset_selects_phalps_protocol_and_motmetrics(compose_cfg, tmp_path: Path):
    from phalp_lightning.errors import UserError
    from phalp_lightning.pipelines.evaluate import run

    pred, gt = write_mot_files(tmp_path / "data")
    cfg = compose_cfg("evaluate", [f"pred={pred}", f"gt={gt}", "benchmark=phalp"])
    assert cfg.benchmark == "phalp" and cfg.eval_protocol.name == "phalp" and cfg.eval_protocol.iou_threshold == 0.01
    run(cfg)
    written = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert written["benchmark"]["name"] == "phalp" and written["benchmark"]["clear_engine"] == "motmetrics"
    assert written["protocol"]["name"] == "phalp"
    # Another protocol under PHALP's name would be a number PHALP's script never gives.
    with pytest.raises(UserError, match="benchmark=phalp is scored under the phalp protocol"):
        run(compose_cfg("evaluate", [f"pred={pred}", f"gt={gt}", "benchmark=phalp", "eval_protocol=standard"]))


@pytest.mark.parametrize(("old", "new"), [("posetrack18", "posetrack18_boxes"), ("posetrack21", "posetrack21_boxes")])
def test_old_posetrack_preset_names_warn_and_mean_the_box_presets(compose_cfg, tmp_path: Path, old: str, new: str):
    from phalp_lightning.evaluation.benchmarks import get_benchmark

    cfg = compose_cfg("evaluate", ["pred=a", "gt=b", f"benchmark={old}"])
    assert cfg.benchmark == old
    with pytest.warns(DeprecationWarning, match=f"benchmark={old} is deprecated.*benchmark={new}"):
        preset = get_benchmark(cfg.benchmark)
    assert preset.name == new and "deprecated" in preset.reason
