"""The official presets' CLEAR and Identity columns equal the installed TrackEval's on ambiguous scenes.

TrackEval 1.3.0 is a hard test dependency (``scripts/setup.sh`` installs it with ``--no-deps``): the
comparison fails, never skips, when it is missing. The scenes are built for the cases where
TrackEval's rules and motmetrics' differ: people crossing, ids swapped between people, people who
leave and come back, frames without any prediction, duplicate boxes at IoU exactly 0.5, and
distractor boxes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.reference_evaluators import require_trackeval

from phalp_lightning.evaluation.clear_trackeval import (
    clear_counts,
    clear_identity_metrics_trackeval,
    clear_scores,
)
from phalp_lightning.evaluation.protocol import EvaluationProtocol
from phalp_lightning.evaluation.sequences import TrackSequence, build_sequence_data
from phalp_lightning.pipelines.evaluate import evaluate_files


def ambiguous_scene(rng: np.random.Generator, frames: int = 8, people: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(gt rows, prediction rows) ``frame, id, x, y, w, h`` (0-based frames) of one small, ambiguous scene.

    Coordinates are integers on a coarse grid so that many pairs tie, and a duplicate box of double
    width overlaps its person by IoU exactly 0.5.
    """
    gt, pred = [], []
    start = rng.integers(0, 8, people) * 10.0
    velocity = rng.choice([-10.0, 0.0, 10.0], people)  # opposite velocities cross
    width = rng.integers(2, 5, people) * 10.0
    partner = np.arange(people) + 1  # tracker id of each person, permuted as the scene goes on
    for frame in range(frames):
        if rng.random() < 0.3 and people > 1:  # two people exchange their tracker ids
            a, b = rng.choice(people, 2, replace=False)
            partner[[a, b]] = partner[[b, a]]
        if rng.random() < 0.1:  # a person gets a fresh id
            partner[rng.integers(people)] = 10 + frame
        drop_frame = rng.random() < 0.1  # the tracker outputs nothing in this frame
        duplicate_ids = iter(rng.permutation(np.arange(50, 60)))
        for person in range(people):
            if rng.random() < 0.2:  # away in this frame (gaps, re-appearing ids)
                continue
            box = np.array([start[person] + velocity[person] * frame, 20.0, width[person], 2 * width[person]])
            gt.append([frame, person + 1, *box])
            if drop_frame or rng.random() < 0.15:
                continue
            jitter = rng.integers(-2, 3, 4).astype(float) * (rng.random() < 0.7)
            pred.append([frame, partner[person], *(box + jitter * [1, 1, 0.5, 0.5])])
            if rng.random() < 0.2:  # a duplicate at IoU 0.5 (or a bit over, or under)
                pred.append([frame, next(duplicate_ids), box[0], box[1], 2 * box[2] + rng.integers(-1, 2), box[3]])
        if not drop_frame:
            for index in range(rng.integers(0, 3)):  # distractors anywhere
                pred.append([frame, 90 + index, *rng.integers(0, 10, 2) * 10.0, 20.0, 40.0])
    return np.asarray(gt).reshape(-1, 6), np.asarray(pred).reshape(-1, 6)


def trackeval_reference(data_dict: dict, threshold: float) -> dict[str, float]:
    trackeval = require_trackeval()
    clear = trackeval.metrics.CLEAR({"THRESHOLD": threshold, "PRINT_CONFIG": False}).eval_sequence(data_dict)
    identity = trackeval.metrics.Identity({"THRESHOLD": threshold, "PRINT_CONFIG": False}).eval_sequence(data_dict)
    return {"MOTA": clear["MOTA"], "MOTP": clear["MOTP"], "MODA": clear["MODA"], "sMOTA": clear["sMOTA"],
            "MOTAL": clear["MOTAL"], "IDSW": clear["IDSW"], "FP": clear["CLR_FP"], "FN": clear["CLR_FN"],
            "TP": clear["CLR_TP"], "Frag": clear["Frag"], "MT": clear["MT"], "PT": clear["PT"], "ML": clear["ML"],
            "Precision": clear["CLR_Pr"], "Recall": clear["CLR_Re"],
            "IDF1": identity["IDF1"], "IDP": identity["IDP"], "IDR": identity["IDR"]}


def test_every_clear_and_identity_field_equals_trackeval_on_hundreds_of_ambiguous_scenes():
    rng = np.random.default_rng(2024)
    protocol = EvaluationProtocol()
    differs_from_motmetrics = 0
    for case in range(300):
        gt_rows, pred_rows = ambiguous_scene(rng, frames=int(rng.integers(2, 10)), people=int(rng.integers(1, 6)))
        gt = TrackSequence.from_rows("s", gt_rows)
        pred = TrackSequence.from_rows("s", pred_rows)
        data = build_sequence_data(gt, pred, protocol)
        threshold = 0.5 if case % 3 else float(rng.choice([0.3, 0.5, 0.7]))
        ours = clear_scores(clear_counts(data, threshold))
        expected = trackeval_reference(data.to_trackeval_dict(), threshold)
        for column, value in expected.items():
            assert ours[column] == pytest.approx(float(value), abs=1e-9), f"case {case} {column}"
        if threshold == 0.5 and case < 60:
            from phalp_lightning.evaluation.clear import clear_identity_metrics

            motmetrics_row = clear_identity_metrics([data], protocol)[1]
            differs_from_motmetrics += motmetrics_row["IDSW"] != ours["IDSW"] or motmetrics_row["MOTA"] != ours["MOTA"]
    # The scenes do reach the cases where the two matchings disagree (else the test would prove little).
    assert differs_from_motmetrics > 0


def test_combined_counts_are_summed_like_trackeval():
    trackeval = require_trackeval()
    rng = np.random.default_rng(7)
    protocol = EvaluationProtocol()
    sequences = []
    for index in range(4):
        gt_rows, pred_rows = ambiguous_scene(rng)
        data = build_sequence_data(TrackSequence.from_rows(f"s{index}", gt_rows), TrackSequence.from_rows(f"s{index}", pred_rows), protocol)
        data.name = f"s{index}"
        sequences.append(data)
    _, overall = clear_identity_metrics_trackeval(sequences)
    clear, identity = trackeval.metrics.CLEAR({"PRINT_CONFIG": False}), trackeval.metrics.Identity({"PRINT_CONFIG": False})
    combined_clear = clear.combine_sequences({data.name: clear.eval_sequence(data.to_trackeval_dict()) for data in sequences})
    combined_identity = identity.combine_sequences({data.name: identity.eval_sequence(data.to_trackeval_dict()) for data in sequences})
    for ours, theirs in (("MOTA", "MOTA"), ("MOTP", "MOTP"), ("IDSW", "IDSW"), ("Frag", "Frag"), ("MT", "MT"), ("ML", "ML"),
                         ("sMOTA", "sMOTA")):
        assert overall[ours] == pytest.approx(float(combined_clear[theirs]), abs=1e-9), ours
    assert overall["IDF1"] == pytest.approx(float(combined_identity["IDF1"]), abs=1e-9)


def mot_files(root: Path, names: list[str], rng: np.random.Generator, with_classes: bool) -> tuple[Path, Path]:
    """TrackEval's layout (gt/<seq>/gt/gt.txt + seqinfo.ini, trackers/t/data/<seq>.txt) of ambiguous scenes.

    With classes, every scene also holds a static person, a reflection, a car and a non-motorised
    vehicle (each with a box on it in some frames) and zero-marked pedestrian rows.
    """
    for name in names:
        frames = int(rng.integers(3, 9))
        gt_rows, pred_rows = ambiguous_scene(rng, frames=frames, people=int(rng.integers(2, 6)))
        gt_lines, pred_lines = [], []
        for frame, track, *box in gt_rows.tolist():
            conf = 0 if rng.random() < 0.1 else 1
            tail = f",{conf},1,1" if with_classes else f",{conf},-1,-1,-1"
            gt_lines.append(f"{int(frame) + 1},{int(track)}," + ",".join(f"{value:g}" for value in box) + tail)
        for frame, track, *box in pred_rows.tolist():
            pred_lines.append(f"{int(frame) + 1},{int(track)}," + ",".join(f"{value:g}" for value in box) + ",1,-1,-1,-1")
        if with_classes:
            for frame in range(1, frames + 1):
                for gt_id, cls, box in ((30, 7, (300, 300, 20, 40)), (31, 12, (400, 300, 20, 40)),
                                        (32, 3, (500, 300, 40, 20)), (33, 6, (600, 300, 30, 30))):
                    gt_lines.append(f"{frame},{gt_id},{','.join(map(str, box))},{int(cls == 3)},{cls},0.5")
                    if rng.random() < 0.6:
                        x, y, w, h = box
                        pred_lines.append(f"{frame},{70 + cls},{x + 1},{y},{w},{h},1,-1,-1,-1")
        folder = root / "gt" / name
        (folder / "gt").mkdir(parents=True)
        (folder / "gt" / "gt.txt").write_text("\n".join(gt_lines) + "\n")
        (folder / "seqinfo.ini").write_text(f"[Sequence]\nname={name}\nseqLength={frames}\n")
        data = root / "trackers" / "t" / "data"
        data.mkdir(parents=True, exist_ok=True)
        (data / f"{name}.txt").write_text("\n".join(pred_lines) + "\n")
    return root / "trackers" / "t" / "data", root / "gt"


@pytest.mark.parametrize("preset", ["mot15", "mot16", "mot17", "mot20"])
def test_each_mot_preset_equals_trackevals_motchallenge_evaluation(tmp_path: Path, preset: str):
    trackeval = require_trackeval()
    rng = np.random.default_rng(["mot15", "mot16", "mot17", "mot20"].index(preset))
    names = [f"seq{index}" for index in range(3)]
    pred, gt = mot_files(tmp_path, names, rng, with_classes=preset != "mot15")
    config = trackeval.Evaluator.get_default_eval_config()
    config.update({"USE_PARALLEL": False, "PRINT_RESULTS": False, "PRINT_CONFIG": False, "TIME_PROGRESS": False,
                   "OUTPUT_SUMMARY": False, "OUTPUT_DETAILED": False, "PLOT_CURVES": False, "DISPLAY_LESS_PROGRESS": True})
    dataset = trackeval.datasets.MotChallenge2DBox({
        "GT_FOLDER": str(gt), "TRACKERS_FOLDER": str(tmp_path / "trackers"), "SKIP_SPLIT_FOL": True,
        "SEQ_INFO": dict.fromkeys(names), "BENCHMARK": preset.upper(), "PRINT_CONFIG": False, "TRACKERS_TO_EVAL": ["t"]})
    metrics = [trackeval.metrics.HOTA(), trackeval.metrics.CLEAR({"PRINT_CONFIG": False}),
               trackeval.metrics.Identity({"PRINT_CONFIG": False})]
    results, _ = trackeval.Evaluator(config).evaluate([dataset], metrics)
    ours = evaluate_files(pred, gt, format="mot", benchmark=preset)
    for name, value in results["MotChallenge2DBox"]["t"].items():
        clear, identity = value["pedestrian"]["CLEAR"], value["pedestrian"]["Identity"]
        row = ours.overall if name == "COMBINED_SEQ" else ours.per_sequence[name]
        expected = {"MOTA": clear["MOTA"], "MOTP": clear["MOTP"], "MODA": clear["MODA"], "sMOTA": clear["sMOTA"],
                    "IDSW": clear["IDSW"], "FP": clear["CLR_FP"], "FN": clear["CLR_FN"], "Frag": clear["Frag"],
                    "MT": clear["MT"], "PT": clear["PT"], "ML": clear["ML"], "Recall": clear["CLR_Re"],
                    "Precision": clear["CLR_Pr"], "IDF1": identity["IDF1"], "IDP": identity["IDP"], "IDR": identity["IDR"],
                    "HOTA": float(np.mean(value["pedestrian"]["HOTA"]["HOTA"]))}
        for column, reference in expected.items():
            assert row[column] == pytest.approx(float(reference), abs=1e-9), f"{preset} {name} {column}"
    assert ours.benchmark.clear_engine == "trackeval"


def test_plain_preset_says_it_uses_motmetrics_and_official_presets_say_trackeval(tmp_path: Path):
    import json

    rng = np.random.default_rng(3)
    pred, gt = mot_files(tmp_path, ["MOT17-02"], rng, with_classes=True)
    official = evaluate_files(pred, gt, format="mot")
    plain = evaluate_files(pred, gt, format="mot", benchmark="plain")
    assert official.benchmark.name == "mot17" and "TrackEval" in official.format_table().splitlines()[-1]
    assert "motmetrics" in plain.format_table().splitlines()[-1]
    written = json.loads(official.write(tmp_path / "out")["json"].read_text())
    assert written["benchmark"]["clear_engine"] == "trackeval"
    assert any("MOTA" in columns and "TrackEval" in engine for columns, engine in written["benchmark"]["engines"].items())


def test_the_hota_engine_named_is_the_backend_used(tmp_path: Path):
    rng = np.random.default_rng(5)
    pred, gt = mot_files(tmp_path, ["MOT17-04"], rng, with_classes=True)
    own = evaluate_files(pred, gt, format="mot")
    reference = evaluate_files(pred, gt, format="mot", hota_backend="trackeval")
    assert own.overall["HOTA"] == pytest.approx(reference.overall["HOTA"], abs=1e-12)
    assert "evaluation.hota" in own.format_table().splitlines()[-1]
    assert "hota_backend=trackeval" in reference.format_table().splitlines()[-1]
