"""Fault matrix: each class of user fault through the real command line, in a subprocess.

Every case asserts the exit status, that the error is one line naming the thing (no traceback), and
the state of the outputs: finished videos intact, nothing partial under a final name, no temporary
left behind. Inputs are 8-frame, 64-pixel sequences; the body model is generated into a temporary
PHALP_ASSETS with the assets command.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from phalp_lightning.errors import EXIT_USER_ERROR
from phalp_lightning.utils.io import TEMPORARY_NAME

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NUM_FRAMES = 8
SIZE = 64
# Tiny HMAR crops and a box filter that 64-px frames can pass.
FAST = ["+hmar.img_size=64", "progress_bar=false", "system.min_box_width=20", "system.min_box_height=20"]
# The untrained HMAR without a checkpoint (else predict takes the box-only path, which needs no body model).
HMAR = ["untrained_hmar=true"]


def run_cli(script: str, args: list[str], assets: Path, run_dir: Path, file_size_limit: int | None = None) -> subprocess.CompletedProcess:
    """``python <script> args`` in the project root; Hydra's run folder under ``run_dir``."""
    command = [sys.executable, script, *args, f"hydra.run.dir={run_dir}"]
    if file_size_limit is not None:
        # Python ignores SIGXFSZ, so writes past the limit fail with EFBIG like a full disk.
        wrapper = (
            "import resource, runpy, sys; "
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({file_size_limit}, {file_size_limit})); "
            "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
        )
        command = [sys.executable, "-c", wrapper, script, *args, f"hydra.run.dir={run_dir}", "hydra.output_subdir=null", "hydra/job_logging=disabled"]
    env = {**os.environ, "PHALP_ASSETS": str(assets), "PYTHONWARNINGS": "ignore"}
    return subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)


def assert_one_line_error(result: subprocess.CompletedProcess, *names: str, separator: bool = True) -> str:
    """Exit 2, no traceback, and the last stderr line is ``error: <what> — <todo>`` naming every one of ``names``."""
    assert result.returncode == EXIT_USER_ERROR, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and (" — " in line or not separator), line
    for name in names:
        assert name in line, (name, line)
    return line


def temporaries(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if TEMPORARY_NAME.match(path.name)]


def frame_count(path: Path) -> int:
    from phalp_lightning.sinks.video import count_frames

    return count_frames(path)


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("assets")
    done = subprocess.run([sys.executable, "-m", "phalp_lightning.assets", "generate", "--root", str(root)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return root


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two MOT sequences with det.txt (one 30x50 box with confidence f/10 and one 8x10 box per frame) and a video."""
    import cv2
    import joblib

    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    paths: dict[str, Path] = {}
    for name in ("seqa", "seqb"):
        (root / name / "img1").mkdir(parents=True)
        (root / name / "det").mkdir()
        rows = []
        for frame in range(1, NUM_FRAMES + 1):
            cv2.imwrite(str(root / name / "img1" / f"{frame:06d}.jpg"), rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))
            rows += [f"{frame},-1,{5 + frame},4,30,50,0.{frame},-1,-1,-1", f"{frame},-1,30,6,8,10,0.9,-1,-1,-1"]
        (root / name / "det" / "det.txt").write_text("\n".join(rows) + "\n")
        paths[name] = root / name / "det" / "det.txt"
    writer = cv2.VideoWriter(str(root / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (SIZE, SIZE))
    for _ in range(NUM_FRAMES):
        writer.write(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))
    writer.release()
    paths["clip"] = root / "clip.mp4"
    # A PHALP given-boxes pkl whose boxes are 5 numbers wide.
    frames = sorted((root / "seqa" / "img1").iterdir())
    joblib.dump({frame.name: {"gt_bbox": np.ones((2, 5))} for frame in frames}, root / "badshape.pkl")
    paths["badshape"] = root / "badshape.pkl"
    paths["seqa_frames"] = root / "seqa" / "img1"
    return paths


# ------------------------------------------------------------------------------------------ predict


@pytest.mark.slow
def test_bad_inputs_fail_only_their_own_video_and_given_boxes_keep_their_confidence(assets, inputs, tmp_path):
    out = tmp_path / "out"
    missing = tmp_path / "absent.mp4"
    videos = f"video=[{inputs['seqa']},{inputs['badshape']},{missing}]"
    result = run_cli("predict.py", [videos, "detector=given_boxes", f"source.boxes_base_path={inputs['seqa_frames']}", f"output_dir={out}", *FAST], assets, tmp_path / "run")
    # boxes_base_path applies to the pkl; the MOT sequence keeps its own img1/.
    assert_one_line_error(result, "badshape.pkl", "shape (2, 5)", "absent.mp4")
    mot = np.loadtxt(out / "mot" / "seqa.txt", delimiter=",", ndmin=2)
    assert len(mot) == NUM_FRAMES and np.allclose(mot[:, 6], np.arange(1, NUM_FRAMES + 1) / 10)  # det confidences kept
    assert (out / "results" / "demo_seqa.pkl").is_file()
    assert not list(out.rglob("*badshape*")) and not list(out.rglob("*absent*")) and not temporaries(out)
    # Half of seqa's given boxes are under the (lowered) size filter: counted and warned.
    assert "8 of 16 given boxes (50%) were dropped by the small-box filter" in result.stderr + result.stdout


def test_corrupt_and_unsafe_checkpoints_are_named_before_any_compute(assets, inputs, tmp_path):
    truncated = tmp_path / "hmar.ckpt"
    torch.save({"state_dict": {"net.w": torch.randn(256, 256)}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:20000])
    out = tmp_path / "out"
    result = run_cli("predict.py", [f"video={inputs['clip']}", f"ckpt={truncated}", f"output_dir={out}", *FAST], assets, tmp_path / "run")
    assert_one_line_error(result, f"HMAR checkpoint {truncated}", "truncated or corrupt")
    assert not [path for path in out.rglob("*") if path.is_file()]  # the folders are checked writable, nothing written

    unsafe = tmp_path / "pose.ckpt"
    torch.save({"state_dict": {}, "extra": _Opaque()}, unsafe)
    result = run_cli("predict.py", [f"video={inputs['clip']}", f"pose_predictor_ckpt={unsafe}", f"output_dir={out}", *FAST, *HMAR], assets, tmp_path / "run2")
    assert_one_line_error(result, f"pose predictor checkpoint {unsafe}", "refuses", "ckpt_trusted=true")


class _Opaque:
    """Stands for any class outside the safe reader's allowlist."""


def test_missing_body_model_is_said_once_and_a_truncated_one_is_named(assets, inputs, tmp_path):
    empty = tmp_path / "no_assets"
    empty.mkdir()
    result = run_cli("predict.py", [f"video={inputs['clip']}", f"output_dir={tmp_path / 'out'}", *FAST, *HMAR], empty, tmp_path / "run")
    # The asset registry words its own message: where the file is looked for — how to get it.
    line = assert_one_line_error(result, "smpl_neutral", "python -m phalp_lightning.assets generate")
    assert result.stderr.lower().count("missing asset") == 1 and line.count("assets generate") == 1

    broken = tmp_path / "broken_assets"
    subprocess.run(["cp", "-r", str(assets), str(broken)], check=True)
    smpl = broken / "3D" / "models" / "smpl" / "SMPL_NEUTRAL.pkl"
    smpl.write_bytes(smpl.read_bytes()[:5000])
    result = run_cli("predict.py", [f"video={inputs['clip']}", f"output_dir={tmp_path / 'out'}", *FAST, *HMAR], broken, tmp_path / "run2")
    assert_one_line_error(result, f"body-model file {smpl}", "truncated or corrupt")


def test_unwritable_output_dir_fails_before_the_models_are_built(assets, inputs, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = run_cli("predict.py", [f"video={inputs['clip']}", f"output_dir={blocker / 'out'}", *FAST], assets, tmp_path / "run")
    assert_one_line_error(result, f"output_dir={blocker / 'out'}", "cannot write")
    assert "no HMAR checkpoint given" not in result.stderr  # nothing was built


def test_maskrcnn_without_detectron2_says_how_to_install_it(assets, inputs, tmp_path):
    try:
        import detectron2  # noqa: F401

        pytest.skip("detectron2 installed here")
    except ImportError:
        pass
    result = run_cli("predict.py", [f"video={inputs['clip']}", "detector=maskrcnn", f"output_dir={tmp_path / 'out'}", *FAST], assets, tmp_path / "run")
    assert_one_line_error(result, "detectron2 is not installed", "install it from source")


@pytest.mark.slow
def test_incomplete_render_is_never_finished_and_a_rerun_redoes_a_damaged_one(assets, inputs, tmp_path):
    out = tmp_path / "out"
    # detector=given_boxes: no detector runs on the clip (the render is what is under test).
    args = [f"video={inputs['clip']}", "detector=given_boxes", "render=boxes", "writers.results=null", "writers.mot=null", f"output_dir={out}", *FAST]
    final = out / "PHALP_clip.mp4"
    # 1. The file-size limit cuts the render short: the video fails, nothing under the final name.
    result = run_cli("predict.py", args, assets, tmp_path / "run1", file_size_limit=12_000)
    assert_one_line_error(result, str(inputs["clip"]), "PHALP_clip.mp4 is incomplete")
    assert not final.exists() and not temporaries(out)
    # 2. A killed run's leftovers are swept; the rerun renders every frame.
    stale = out / ".PHALP_clip.tmp.0123456789ab.mp4"
    stale.write_bytes(b"partial")
    result = run_cli("predict.py", args, assets, tmp_path / "run2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert frame_count(final) == NUM_FRAMES and not stale.exists()
    # 3. A finished render is skipped; a damaged one is redone.
    result = run_cli("predict.py", args, assets, tmp_path / "run3")
    assert result.returncode == 0 and "skipped (finished" in result.stderr + result.stdout
    final.write_bytes(final.read_bytes()[:2000])
    result = run_cli("predict.py", args, assets, tmp_path / "run4")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "skipped (finished" not in result.stderr + result.stdout and frame_count(final) == NUM_FRAMES


@pytest.mark.slow
def test_subprocess_ddp_reports_every_ranks_videos_once_and_leaves_no_report_files(assets, inputs, tmp_path):
    out = tmp_path / "out"
    missing = tmp_path / "absent.mp4"
    videos = f"video=[{inputs['seqa']},{inputs['seqb']},{inputs['clip']},{missing}]"
    args = [videos, "detector=given_boxes", "trainer=ddp_cpu", "trainer.strategy=ddp", f"output_dir={out}", *FAST]
    result = run_cli("predict.py", args, assets, tmp_path / "run")
    assert_one_line_error(result, "absent.mp4")
    lines = (result.stderr + result.stdout).splitlines()
    header = max(i for i, line in enumerate(lines) if line.split()[:3] == ["video", "frames", "tracks"])
    rows = [line.split() for line in lines[header + 1 :] if line.split()]
    # Rank 0's table lists every rank's videos once, each ok, and the missing one as failed.
    for name in ("seqa", "seqb", "clip"):
        assert [row[4] for row in rows if row[0] == name] == ["ok"], lines[header:]
        assert (out / "mot" / f"{name}.txt").is_file()
    assert [row[4] for row in rows if row[0] == "absent"] == ["FAILED:"]
    assert not (out / ".predict_reports").exists() and not temporaries(out)


# -------------------------------------------------------------------------------------------- train


@pytest.fixture(scope="module")
def crop_shards(tmp_path_factory: pytest.TempPathFactory, assets: Path) -> Path:
    root = tmp_path_factory.mktemp("crops")
    command = [sys.executable, "-m", "phalp_lightning.datamodules.synthetic", "crops", "--out", str(root), "--num-train", "4", "--num-val", "2",
               "--crop-size", "64", "--shard-size", "2", "--assets", str(assets)]  # fmt: skip
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, env={**os.environ, "PHALP_ASSETS": str(assets)})
    assert done.returncode == 0, done.stderr[-3000:]
    return root


def _hmar_args(shards: Path) -> list[str]:
    # Not debug=fdr: it drops the callbacks, and the learning-rate monitor is what needs a logger.
    return ["model=hmar", "trainer=cpu", "++trainer.fast_dev_run=true", "++trainer.enable_progress_bar=false", "data.crop_size=64",
            f"data.train_shards={shards}/train-*.tar", f"data.val_shards={shards}/val-*.tar", "data.batch_size=2"]  # fmt: skip


@pytest.mark.slow
def test_train_hmar_without_a_logger_runs(assets, crop_shards, tmp_path):
    result = run_cli("train.py", [*_hmar_args(crop_shards), "logger=none"], assets, tmp_path / "run")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "learning-rate monitor is dropped" in result.stderr + result.stdout


@pytest.mark.slow
def test_truncated_shard_and_resume_checkpoint_are_named(assets, crop_shards, tmp_path):
    shards = tmp_path / "shards"
    subprocess.run(["cp", "-r", str(crop_shards), str(shards)], check=True)
    broken = sorted(shards.glob("train-*.tar"))[0]
    broken.write_bytes(broken.read_bytes()[:1500])
    result = run_cli("train.py", [*_hmar_args(shards), "logger=none"], assets, tmp_path / "run")
    assert_one_line_error(result, str(broken), "truncated")

    resume = tmp_path / "last.ckpt"
    resume.write_bytes(b"PK\x03\x04 not really a zip")
    result = run_cli("train.py", [*_hmar_args(crop_shards), "logger=none", f"ckpt_path={resume}"], assets, tmp_path / "run2")
    assert_one_line_error(result, f"checkpoint to resume (ckpt_path) {resume}", "truncated or corrupt")


# ---------------------------------------------------- what the command line cannot observe directly


class _CountingSource:
    """A 6-frame source that counts decoded frames; frame ``bad`` fails to decode."""

    def __init__(self, name: str, bad: int | None = None) -> None:
        self.name, self.path, self.bad, self.decoded = name, Path(f"{name}.mp4"), bad, 0

    def __len__(self) -> int:
        return 6

    def frame_name(self, index: int) -> str:
        return f"{self.name}/{index:06d}.jpg"

    def given_boxes(self, index: int):
        return None

    def read(self, index: int) -> np.ndarray:
        from phalp_lightning.datamodules.video import FrameSourceError

        if index == self.bad:
            raise FrameSourceError(f"video {self.path}: frame {index} cannot be decoded")
        self.decoded += 1
        return np.zeros((4, 4, 3), np.uint8)

    def close(self) -> None:
        pass


def test_a_failed_video_is_not_decoded_further_and_the_others_are():
    from phalp_lightning.datamodules.video import VideoChunks

    broken, stopped, healthy = _CountingSource("broken", bad=2), _CountingSource("stopped"), _CountingSource("healthy")
    chunks = VideoChunks([broken, stopped, healthy], batch_size=2)
    batches = [chunks[item] for item in range(len(chunks)) if chunks.chunks[item][0] == 0]
    assert [batch["error"] is None for batch in batches] == [True, False, False]
    assert broken.decoded == 2 and batches[2].get("stopped")  # the third chunk was not decoded
    first = chunks[3]  # "stopped": the callback stops it after its first chunk (e.g. HMAR failed)
    assert first["error"] is None
    chunks.stop("stopped")
    assert all(chunks[item]["error"] for item in (4, 5)) and stopped.decoded == 2
    assert all(chunks[item]["error"] is None for item in (6, 7, 8)) and healthy.decoded == 6


def test_the_tracker_callback_stops_the_video_it_fails():
    from types import SimpleNamespace

    from phalp_lightning.structures import VideoReport
    from phalp_lightning.tracking.callback import TrackerCallback

    stopped: list[str] = []
    callback = TrackerCallback(tracker=SimpleNamespace(reset=lambda: None), writers=[], output_dir=".")
    callback._trainer = SimpleNamespace(datamodule=SimpleNamespace(stop_video=stopped.append))
    callback._current = VideoReport(name="walk", source="walk.mp4")
    callback._fail("RuntimeError: HMAR failed")
    assert stopped == ["walk"] and callback._current.error == "RuntimeError: HMAR failed"


def test_a_ddp_rank_without_a_video_gets_one_frameless_batch_that_is_ignored():
    from types import SimpleNamespace

    from phalp_lightning.datamodules.video import VideoChunks

    from phalp_lightning.tracking.callback import TrackerCallback

    assert len(VideoChunks([], batch_size=2)) == 0
    chunks = VideoChunks([], batch_size=2, placeholder=True)
    (batch,) = [chunks[0]]
    assert batch["placeholder"] and batch["error"] and batch["images"] is None
    callback = TrackerCallback(tracker=SimpleNamespace(reset=lambda: None), writers=[], output_dir=".")
    callback.write_on_batch_end(SimpleNamespace(callbacks=[]), None, None, None, batch, 0)
    assert callback.reports == []
