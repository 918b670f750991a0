"""evaluate.py on bad or surprising inputs: every problem is one clear line or a warning, never silent."""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from phalp_lightning.errors import UserError
from phalp_lightning.pipelines.evaluate import evaluate_files

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ROW = "{frame},{track},10,10,20,40,1,-1,-1,-1\n"


def mot_text(rows: list[tuple[int, int]]) -> str:
    return "".join(ROW.format(frame=frame, track=track) for frame, track in rows)


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_pickle_given_as_mot_text_is_one_line_naming_the_file(tmp_path: Path):
    gt = write(tmp_path / "gt" / "a" / "gt" / "gt.txt", mot_text([(1, 1)]))
    pred = write(tmp_path / "a.txt", pickle.dumps({"frames": [1, 2, 3]}))
    completed = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "evaluate.py"), f"pred={pred}", f"gt={gt}", f"hydra.run.dir={tmp_path / 'run'}",
         "logger=none"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert completed.returncode == 2
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(pred) in lines[0]
    assert "binary data, not MOT text" in lines[0] and "Traceback" not in completed.stderr


def test_non_utf8_text_names_the_file(tmp_path: Path):
    gt = write(tmp_path / "gt.txt", mot_text([(1, 1)]))
    pred = write(tmp_path / "p.txt", b"1,1,\xff\xfe,3\n")
    with pytest.raises(UserError, match=r"p\.txt: not UTF-8 text at byte 4"):
        evaluate_files(pred, gt)


def test_repeated_id_names_file_and_line_with_the_files_frame_number(tmp_path: Path):
    gt = write(tmp_path / "gt.txt", mot_text([(1, 1), (2, 1)]))
    pred = write(tmp_path / "p" / "gt.txt", mot_text([(1, 4), (2, 4), (3, 5), (2, 4)]))
    with pytest.raises(UserError, match=r"gt\.txt:4: track id 4 appears twice in frame 2"):
        evaluate_files(pred, gt)


def test_gt_folder_reads_only_ground_truth_files(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    root = tmp_path / "mot"
    write(root / "a" / "gt" / "gt.txt", mot_text([(1, 1), (2, 1)]))
    write(root / "a" / "det" / "det.txt", mot_text([(1, -1), (1, -1)]))
    write(root / "README.txt", "MOT ground truth, see https://motchallenge.net\n")
    write(root / "stray.txt", mot_text([(1, 9)]))  # well-formed MOT, but not <seq>/gt/gt.txt
    pred = write(tmp_path / "pred" / "a.txt", mot_text([(1, 3), (2, 3)]))
    result = evaluate_files(pred, root)
    assert list(result.per_sequence) == ["a"] and result.overall["HOTA"] == pytest.approx(1.0)

    # A flat folder of <seq>.txt files: a file that is not MOT text is skipped with a warning.
    flat = tmp_path / "flat"
    write(flat / "a.txt", mot_text([(1, 1), (2, 1)]))
    write(flat / "README.txt", "notes\n")
    with caplog.at_level(logging.WARNING):
        result = evaluate_files(pred, flat)
    assert list(result.per_sequence) == ["a"]
    assert any("README.txt" in record.getMessage() and "skipped" in record.getMessage() for record in caplog.records)
    # Given explicitly, the same file is an error naming it.
    with pytest.raises(UserError, match=r"README\.txt:1: not a list of numbers"):
        evaluate_files(pred, [flat / "a.txt", flat / "README.txt"])


def test_two_files_with_one_sequence_name_are_a_clear_error(tmp_path: Path):
    first = write(tmp_path / "gt" / "x" / "a.txt", mot_text([(1, 1)]))
    second = write(tmp_path / "gt" / "y" / "a.txt", mot_text([(1, 1)]))
    pred = write(tmp_path / "a.txt", mot_text([(1, 1)]))
    with pytest.raises(UserError, match="sequence 'a' is given twice") as error:
        evaluate_files(pred, tmp_path / "gt")
    assert str(first) in str(error.value) and str(second) in str(error.value)


def test_missing_predictions_and_empty_ground_truth_are_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    write(tmp_path / "gt" / "a.txt", mot_text([(1, 1)]))
    write(tmp_path / "gt" / "b.txt", mot_text([(1, 1)]))
    write(tmp_path / "gt" / "empty.txt", "")
    write(tmp_path / "pred" / "a.txt", mot_text([(1, 1)]))
    write(tmp_path / "pred" / "empty.txt", mot_text([(1, 2)]))
    with caplog.at_level(logging.WARNING):
        result = evaluate_files(tmp_path / "pred", tmp_path / "gt")
    messages = " ".join(record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING)
    assert "1 ground-truth sequence(s) have no predictions and are scored as all misses: b" in messages
    assert "no ground-truth box to score" in messages and "empty" in messages
    assert result.per_sequence["b"]["FN"] == 1 and result.per_sequence["empty"]["FP"] == 1
    with pytest.raises(UserError, match="no predictions for ground-truth sequences \\['b'\\]"):
        evaluate_files(tmp_path / "pred", tmp_path / "gt", missing_prediction="error")


def test_csv_logger_of_evaluate_imports_neither_lightning_nor_torch(tmp_path: Path):
    """``logger=csv`` writes Lightning's CSV layout without importing Lightning or torch; without it no second metrics.csv."""
    gt = write(tmp_path / "gt" / "a.txt", mot_text([(1, 1)]))
    pred = write(tmp_path / "pred" / "a.txt", mot_text([(1, 1)]))
    code = (
        "import sys\n"
        "from phalp_lightning.utils.config import compose_run_config\n"
        "from phalp_lightning.pipelines.evaluate import run\n"
        f"cfg = compose_run_config({str(PROJECT_ROOT / 'configs')!r}, 'evaluate', ['pred={pred}', 'gt={gt}', 'logger=csv'], "
        f"{str(tmp_path / 'out')!r}, working_dir={str(PROJECT_ROOT)!r})\n"
        "run(cfg)\n"
        "print(sorted(name for name in ('torch', 'lightning', 'pytorch_lightning') if name in sys.modules))\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip().splitlines()[-1] == "[]"
    logged = list((tmp_path / "out").glob("csv/version_0/metrics.csv"))
    assert logged and logged[0].read_text().splitlines()[0].split(",")[0] == "eval/AssA"


def test_repeated_id_in_a_posetrack_image_names_file_and_image(tmp_path: Path):
    import json

    annotation = {"image_id": 7, "track_id": 3, "bbox": [0, 0, 5, 5]}
    video = {"images": [{"id": 7, "file_name": "images/v/000001.jpg", "frame_id": 7}], "annotations": [annotation, annotation]}
    gt = write(tmp_path / "gt" / "v.json", json.dumps(video))
    with pytest.raises(UserError, match=r"v\.json: track id 3 appears twice in image 7 \(images/v/000001\.jpg\)"):
        evaluate_files(gt, gt, format="posetrack")
