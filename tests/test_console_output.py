"""What a user reads on the console: every line once, no advertising, the commands' one-line answers."""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import synthetic_data

PROJECT_ROOT = Path(__file__).resolve().parents[1]
synthetic_video = synthetic_data.synthetic_video
synthetic_tracklet_shards = synthetic_data.synthetic_tracklet_shards

# Hydra's "[time][logger][LEVEL] - " and Lightning's "LEVEL: " prefixes: the same record through two
# handlers differs only there.
PREFIX = re.compile(r"^(\[[^\]]*\]\[[^\]]*\]\[[A-Z]+\] - |[A-Z]+: )")


def repeated_lines(output: str) -> list[str]:
    """Messages (prefix stripped) printed more than once; lines without words (table rules) do not count."""
    messages = [PREFIX.sub("", line).strip() for line in output.splitlines()]
    counts = collections.Counter(m for m in messages if len(re.findall(r"[A-Za-z]", m)) >= 3)
    return [message for message, count in counts.items() if count > 1]


def test_repeated_lines_sees_one_record_through_two_handlers():
    output = "INFO: Seed set to 42\n[2026-01-01 10:00:00,001][lightning.fabric.utilities.seed][INFO] - Seed set to 42\n---\n---\n"
    assert repeated_lines(output) == ["Seed set to 42"]


def run_command(script: str, *overrides: str, assets: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PHALP_ASSETS": str(assets), "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, str(PROJECT_ROOT / script), *overrides], cwd=PROJECT_ROOT, env=environment,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_predict_prints_every_line_once_and_no_tips(synthetic_video, synthetic_assets, tmp_path):
    completed = run_command("predict.py", f"video={synthetic_video.video_path}", f"hydra.run.dir={tmp_path / 'run'}",
                            "progress_bar=false", assets=synthetic_assets)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "Seed set to 42" in output and "Summary" in output
    assert (tmp_path / "run" / f"PHALP_{synthetic_video.video_path.stem}.mp4").is_file()  # render=boxes by default
    assert repeated_lines(output) == [], output
    assert "Tip:" not in output
    assert "shape coefficients" not in output  # smplx's note on every SMPL model (10 are asked for)


@pytest.mark.slow
def test_train_debug_fdr_prints_every_line_once_and_keeps_the_chosen_logger(synthetic_tracklet_shards, synthetic_assets,
                                                                             tmp_path):
    train, val = synthetic_tracklet_shards["train"]["pattern"], synthetic_tracklet_shards["val"]["pattern"]
    run_dir = tmp_path / "run"
    completed = run_command("train.py", "model=pose_transformer", "debug=fdr", "logger=csv", f"data.train_shards='{train}'",
                            f"data.val_shards='{val}'", "data.batch_size=4", "+trainer.enable_progress_bar=false",
                            f"hydra.run.dir={run_dir}", assets=synthetic_assets)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "Seed set to 42" in output
    assert repeated_lines(output) == [], output
    assert "Tip:" not in output
    # The explicit logger=csv wins over the debug preset's "no logger", and is not silenced either.
    metrics = list(run_dir.glob("csv/**/metrics.csv"))
    assert metrics and "train/loss" in metrics[0].read_text()
    assert "Logging is off" not in output


def test_a_debug_preset_that_turns_logging_off_says_so_in_one_line(synthetic_tracklet_shards, assets_env, tmp_path, caplog):
    from phalp_lightning import api
    from phalp_lightning.pipelines.train import run

    caplog.set_level("INFO", logger="phalp_lightning")
    shards = {f"data.{split}_shards": synthetic_tracklet_shards[split]["pattern"] for split in ("train", "val")}
    cfg = api.compose("train", {"model": "pose_transformer", "debug": "fdr", "data.batch_size": 4,
                                "+trainer.enable_progress_bar": False, **shards}, tmp_path / "run")
    run(cfg)
    said = [record.getMessage() for record in caplog.records if "Logging is off" in record.getMessage()]
    assert said == ["Logging is off (the debug=fdr preset turned it off): no metrics are written; "
                    "add logger=csv or logger=wandb to keep them"]


@pytest.mark.parametrize("script", ["predict.py", "train.py", "evaluate.py"])
def test_help_is_a_usage_line_and_the_main_options_that_exist(script):
    completed = subprocess.run([sys.executable, str(PROJECT_ROOT / script), "--help"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    text = completed.stdout
    assert text.splitlines()[0].startswith(f"usage: python {script} ")
    assert "== Config ==" not in text and "_target_" not in text  # not the raw config dump
    if script != "train.py":
        assert "model=" not in text and "callbacks=" not in text  # no training groups
    # Every group option the help names is a config that exists.
    for group, choices in re.findall(r"\b([a-z_]+)=([a-z_0-9]+(?:\|[a-z_0-9]+)+)", text):
        if (PROJECT_ROOT / "configs" / group).is_dir():
            for option in choices.split("|"):
                assert (PROJECT_ROOT / "configs" / group / f"{option}.yaml").is_file(), f"{script} --help: {group}={option}"
