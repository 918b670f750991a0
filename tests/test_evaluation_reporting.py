"""Logging of evaluation results: W&B offline runs, CSV loggers, PNG frames, import hygiene."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from phalp_lightning.evaluation.evaluator import evaluate_sequences
from phalp_lightning.evaluation.reporting import log_evaluation, log_frames, wandb_offline
from phalp_lightning.evaluation.sequences import TrackSequence


def small_result():
    gt = TrackSequence.from_rows("clip", np.array([[0, 1, 0, 0, 10, 20], [1, 1, 0, 0, 10, 20]], dtype=float))
    pred = TrackSequence.from_rows("clip", np.array([[0, 4, 0, 0, 10, 20]], dtype=float))
    return evaluate_sequences({"clip": pred}, {"clip": gt})


def test_wandb_mode_is_offline_unless_the_user_asks(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert wandb_offline(None) is True
    monkeypatch.setenv("WANDB_MODE", "online")
    assert wandb_offline(None) is False
    assert wandb_offline(True) is True
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_offline(None) is True and wandb_offline(False) is False


def test_csv_logger_gets_the_overall_scalars_and_frames_become_pngs(tmp_path: Path):
    from lightning.pytorch.loggers import CSVLogger

    logger = CSVLogger(save_dir=str(tmp_path), name="csv")
    result = small_result()
    log_evaluation(result, [logger])
    rows = list(csv.DictReader(open(Path(logger.log_dir) / "metrics.csv")))
    # 1 of 2 GT boxes found, no FP: MOTA = 1 - 1/2.
    assert float(rows[-1]["eval/MOTA"]) == pytest.approx(0.5)
    assert "eval/HOTA" in rows[-1]
    frame = np.zeros((16, 24, 3), dtype=np.uint8)
    frame[..., 0] = 255
    written = log_frames([frame, frame.astype(np.float32) / 255.0], [logger], output_dir=tmp_path)
    assert [path.name for path in written] == ["0000.png", "0001.png"]
    import cv2

    image = cv2.imread(str(written[1]))
    assert image.shape == (16, 24, 3) and image[0, 0].tolist() == [0, 0, 255]  # BGR on disk: red stays red
    with pytest.raises(ValueError, match="frame 0 must be \\(H, W, 3\\)"):
        log_frames([np.zeros((4, 4))], [logger], output_dir=tmp_path)


@pytest.mark.slow
def test_wandb_offline_run_holds_table_and_images(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    import wandb

    from phalp_lightning.evaluation.reporting import make_wandb_logger

    logger = make_wandb_logger(save_dir=str(tmp_path), name="test")
    try:
        log_evaluation(small_result(), [logger])
        assert log_frames([np.zeros((8, 8, 3), dtype=np.uint8)], [logger], captions=["frame 0"]) == []
    finally:
        wandb.finish()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("files/media/table/eval/per_sequence*.table.json"))
    assert list(runs[0].glob("files/media/images/eval/frames*.png"))


def test_evaluation_modules_import_no_heavy_backend():
    probe = (
        "import sys\n"
        "import phalp_lightning.evaluation, phalp_lightning.evaluation.evaluator, phalp_lightning.evaluation.reporting\n"
        "import phalp_lightning.evaluation.loading, phalp_lightning.evaluation.hota\n"
        "print(','.join(m for m in ('wandb', 'lightning', 'trackeval', 'cv2', 'motmetrics') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
