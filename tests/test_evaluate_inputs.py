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
    with pytest.raises(UserError, match=r"README\.txt:1: 'notes' is not a number"):
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


GOOD = "1,1,10,10,20,40,1,1,1\n2,1,12,10,20,40,1,1,1\n"


def two_sequences(root: Path) -> tuple[Path, Path]:
    """Ground truth S1, S2 in the MOTChallenge layout and a result file for each, all well formed."""
    for name in ("S1", "S2"):
        write(root / "gt" / name / "gt" / "gt.txt", GOOD)
        write(root / "pred" / f"{name}.txt", mot_text([(1, 5), (2, 5)]))
    return root / "pred", root / "gt"


def run_cli(tmp_path: Path, pred: Path, gt: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "evaluate.py"), f"pred={pred}", f"gt={gt}", f"hydra.run.dir={tmp_path / 'run'}",
         "logger=none", *extra], cwd=PROJECT_ROOT, capture_output=True, text=True)


@pytest.mark.parametrize(("side", "row", "expected"), [
    ("pred", "2,5,12,10\n", r"S1\.txt:3: expected at least 7 columns"),  # the 4-column row
    ("pred", "3,5,nan,10,20,40,1,-1,-1,-1\n", r"S1\.txt:3: NaN or infinite value in column 3 \(x\)"),
    ("pred", "3,5,10,10,-57.3,40,1,-1,-1,-1\n", r"S1\.txt:3: box width and height must be > 0, got w=-57.3"),
    ("gt", "3,1,12px,10,20,40,1,1,1\n", r"gt\.txt:3: '12px' is not a number"),
    ("gt", "3,1,12,10,20,-229,1,1,1\n", r"gt\.txt:3: box width and height must be > 0, got w=20, h=-229"),
    ("gt", "3,1,12,10,inf,40,1,1,1\n", r"gt\.txt:3: NaN or infinite value in column 5 \(width\)"),
])
def test_one_bad_row_in_a_folder_is_an_error_naming_file_and_line(tmp_path: Path, side: str, row: str, expected: str):
    pred, gt = two_sequences(tmp_path)
    bad = pred / "S1.txt" if side == "pred" else gt / "S1" / "gt" / "gt.txt"
    bad.write_text(bad.read_text() + row)
    with pytest.raises(UserError, match=expected) as error:
        evaluate_files(pred, gt)
    assert str(bad) in str(error.value) and "fix or remove that line" in str(error.value)


def test_results_named_after_a_sequence_or_gt_in_the_layout_must_parse_from_line_one(tmp_path: Path):
    pred, gt = two_sequences(tmp_path)
    (pred / "S1.txt").write_text("frame,id,x,y,w,h,conf\n" + mot_text([(1, 5)]))  # a header: not skipped as stray
    with pytest.raises(UserError, match=r"S1\.txt:1: 'frame' is not a number"):
        evaluate_files(pred, gt)
    (pred / "S1.txt").write_text(mot_text([(1, 5)]))
    (gt / "S2" / "gt" / "gt.txt").write_text("S2 ground truth\n")
    with pytest.raises(UserError, match=r"S2/gt/gt\.txt:1:"):
        evaluate_files(pred, gt)
    # Outside the layout, a .txt in a ground-truth folder is a sequence unless it is a README / seqmap.
    flat = tmp_path / "flat"
    write(flat / "S1.txt", GOOD)
    write(flat / "seqmap.txt", "name\nS1\n")
    write(flat / "S2.txt", "bad first line\n")
    with pytest.raises(UserError, match=r"S2\.txt:1: .* every \.txt is a sequence"):
        evaluate_files(pred / "S1.txt", flat)
    (flat / "S2.txt").unlink()
    assert list(evaluate_files(pred / "S1.txt", flat).per_sequence) == ["S1"]


@pytest.mark.parametrize(("text", "message"), [
    ("1,1,10,10,20,40\n", "expected at least 7 columns"),
    ("1,1,10,10,20,40,1,-1,-1,-1\n2,1,10,10,20,40,1\n", "7 columns where earlier lines have 10"),
    ("1.5,1,10,10,20,40,1\n", "frame must be an integer >= 1"),
    ("0,1,10,10,20,40,1\n", "frame must be an integer >= 1"),
    ("1,2.5,10,10,20,40,1\n", "track id must be an integer"),
    ("1,1,10,10,0,40,1\n", "box width and height must be > 0"),
    ("1,1,10,-inf,20,40,1\n", r"NaN or infinite value in column 4 \(y\)"),
    ("1,1,10,10,20,40,1,nan,1\n", r"NaN or infinite value in column 8 \(extra\)"),
])
def test_every_kind_of_bad_row_is_named(tmp_path: Path, text: str, message: str):
    from phalp_lightning.datamodules.formats.mot import MOTFormatError, read_mot

    with pytest.raises(MOTFormatError, match=message):
        read_mot(write(tmp_path / "s.txt", text))


@pytest.mark.parametrize(("bad_file", "text", "expected"), [
    ("pred/S1.txt", "1,5,10,10,20,40,1,-1,-1,-1\n2,5,12,10\n", "S1.txt:2: expected at least 7 columns"),
    ("gt/S1/gt/gt.txt", "1,1,12px,10,20,40,1,1,1\n", "gt.txt:1: '12px' is not a number"),
    ("pred/S1.txt", "1,5,10,10,20,40,1,-1,-1,-1\n1,5,11,10,20,40,1,-1,-1,-1\n", "S1.txt:2: track id 5 appears twice in frame 1"),
])
def test_cli_bad_input_is_one_line_exit_2_and_nothing_scored(tmp_path: Path, bad_file: str, text: str, expected: str):
    pred, gt = two_sequences(tmp_path)
    write(tmp_path / bad_file, text)
    completed = run_cli(tmp_path, pred, gt)
    assert completed.returncode == 2, completed.stderr
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], completed.stderr
    assert "Traceback" not in completed.stderr
    assert not (tmp_path / "run" / "metrics.csv").exists()


def test_cli_skips_a_readme_by_name_and_warns_last_about_a_sequence_without_results(tmp_path: Path):
    pred, gt = two_sequences(tmp_path)
    (pred / "S2.txt").unlink()
    write(pred / "README.txt", "results of my tracker\n")
    completed = run_cli(tmp_path, pred, gt)
    assert completed.returncode == 0, completed.stderr
    output = completed.stdout + completed.stderr
    assert "skipped" in output and "README.txt" in output
    last = [line for line in output.splitlines() if line.strip()][-1]
    assert "WARNING" in last and "no result file" in last and "S2" in last
