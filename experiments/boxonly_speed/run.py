"""predict without a checkpoint: the untrained-HMAR path (before) against the box-only path (after).

Runs the real predict pipeline (``phalp_lightning.pipelines.predict.run`` on the composed config, as
``python predict.py`` does) on a real MOT-layout sequence, side by side in one process:

- ``before``: ``untrained_hmar=true`` -- what ``predict.py video=...`` ran without ``ckpt`` before the
  box-only path (untrained HMAR at 256 px on every crop, UV maps, appearance codes; the tracker's
  untrained-HMAR rule, 2D motion);
- ``after``: the default without ``ckpt``: detector (or given boxes) -> tracker on boxes -> writers.

with two inputs: the sequence's ground-truth boxes given to predict (``detector=given_boxes``; the
tracker does not see their ids) and the HOG detector on the video. For HOG it also times the
detector alone on the same frames (HOG's own speed: the bound for any tracker that runs it).

Stages (ms/frame) come from wrapping the methods that run them: decode (``VideoChunks.__getitem__``),
detect (``TrackingSystem.detect``), crops + HMAR (the rest of ``TrackingSystem._frames``; on the
box-only path: building the frames' boxes), tracker (``PHALPTracker.update``/``finalize``, including
its appearance encodings), writers (``TrackerCallback._write`` and the results and MOT writers'
``close``, which write the files), other (Lightning's loop and hooks). The box-only path runs torch
with one intra-op thread (predict's own choice for it); the untrained-HMAR path with torch's default.
Both paths' MOT files are compared: the ids must be identical.

    python experiments/boxonly_speed/run.py <MOT sequence dir with gt/gt.txt and <name>.mp4> [--frames 24]

Writes results.json and results.md next to this file (or --out) and prints the table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from phalp_lightning.utils.benchmarking import time_stage, write_results

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TIMES: dict[str, float] = defaultdict(float)
PATHS = {"before": ["untrained_hmar=true"], "after": []}


def timed(owner: type, name: str, stage: str) -> None:
    """Wrap ``owner.name`` so its wall time adds to TIMES[stage]."""
    time_stage(owner, name, TIMES, stage)


def instrument() -> None:
    from phalp_lightning.datamodules.video import VideoChunks

    from phalp_lightning.models.tracking_system import TrackingSystem
    from phalp_lightning.sinks.mot import MOTWriter
    from phalp_lightning.sinks.results import ResultsWriter
    from phalp_lightning.tracking.callback import TrackerCallback
    from phalp_lightning.tracking.phalp_tracker import PHALPTracker

    timed(VideoChunks, "__getitem__", "decode")
    timed(TrackingSystem, "detect", "detect")
    timed(TrackingSystem, "_frames", "frames_total")
    timed(PHALPTracker, "update", "tracker")
    timed(PHALPTracker, "finalize", "tracker")
    timed(TrackerCallback, "_write", "writers")
    # The files are written when a video closes (the pkl's compression is most of the writers' time).
    timed(ResultsWriter, "close", "writers")
    timed(MOTWriter, "close", "writers")


def stage_table(frames: int, seconds: float) -> dict[str, float]:
    ms = {stage: 1e3 * value / frames for stage, value in TIMES.items()}
    stages = {
        "decode": ms.get("decode", 0.0),
        "detect": ms.get("detect", 0.0),
        "crops + HMAR": ms.get("frames_total", 0.0) - ms.get("detect", 0.0),
        "tracker": ms.get("tracker", 0.0),
        "writers": ms.get("writers", 0.0),
    }
    stages["other (loop, hooks)"] = max(0.0, 1e3 * seconds / frames - sum(stages.values()))
    return stages


def prepare_sequence(sequence: Path, work: Path, frames: int) -> dict[str, Path]:
    """The first ``frames`` frames of ``<sequence>/<name>.mp4`` as ``img1/*.jpg`` and a clip, with the ground truth."""
    import cv2

    videos = sorted(sequence.glob("*.mp4"))
    if not videos or not (sequence / "gt" / "gt.txt").is_file():
        sys.exit(f"{sequence}: expected <name>.mp4 and gt/gt.txt (a MOT-layout sequence folder)")
    target = work / sequence.name
    (target / "img1").mkdir(parents=True, exist_ok=True)
    (target / "gt").mkdir(exist_ok=True)
    capture = cv2.VideoCapture(str(videos[0]))
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    writer = None
    for index in range(frames):
        ok, image = capture.read()
        if not ok:
            break
        cv2.imwrite(str(target / "img1" / f"{index + 1:06d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        if writer is None:
            writer = cv2.VideoWriter(str(target / f"{sequence.name}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps, (image.shape[1], image.shape[0]))
        writer.write(image)
    capture.release()
    writer.release()
    rows = np.loadtxt(sequence / "gt" / "gt.txt", delimiter=",", ndmin=2)
    rows = rows[rows[:, 0] <= frames]
    np.savetxt(target / "gt" / "gt.txt", rows, delimiter=",", fmt=["%d", "%d", "%.3f", "%.3f", "%.3f", "%.3f", "%d", "%d", "%.1f"])
    return {"gt": target / "gt" / "gt.txt", "video": target / f"{sequence.name}.mp4", "frames_dir": target / "img1"}


def run_path(name: str, inputs: list[str], output_dir: Path) -> dict:
    from phalp_lightning.pipelines import predict
    from phalp_lightning.utils.config import compose_run_config

    TIMES.clear()
    cfg = compose_run_config(PROJECT_ROOT / "configs", "predict", [*inputs, *PATHS[name]], output_dir)
    (report,) = predict.run(cfg)
    if report.error:
        raise RuntimeError(f"{name}: {report.error}")
    return {
        "overrides": PATHS[name],
        "frames": report.frames,
        "seconds": report.seconds,
        "frames_per_s": report.frames / report.seconds,
        "stages_ms_per_frame": stage_table(report.frames, report.seconds),
        "track_ids": sorted(report.track_ids),
        "output_dir": str(output_dir),
    }


def hog_alone(frames_dir: Path, repeats: int = 1) -> float:
    """Seconds per frame of the configured HOG detector alone on the frames (decoded beforehand)."""
    import cv2
    import hydra

    from phalp_lightning.utils.benchmarking import best_of
    from phalp_lightning.utils.config import compose_run_config

    cfg = compose_run_config(PROJECT_ROOT / "configs", "predict", ["video=unused", "detector=hog"], Path(tempfile.mkdtemp()))
    detector = hydra.utils.instantiate(cfg.detector)
    images = [cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB) for path in sorted(frames_dir.glob("*.jpg"))]
    batch = 4  # source.batch_size: predict hands the detector 4 frames at a time

    def detect_all() -> None:
        for first in range(0, len(images), batch):
            detector(torch.from_numpy(np.stack(images[first : first + batch])))

    return best_of(detect_all, repeats) / len(images)


def same_mot(first: Path, second: Path) -> bool:
    (a,), (b,) = list((first / "mot").glob("*.txt")), list((second / "mot").glob("*.txt"))
    return a.read_text() == b.read_text()


def markdown(result: dict) -> str:
    lines = [
        f"# predict without a checkpoint: untrained HMAR (before) vs box-only (after), {result['sequence']}, {result['frames']} frames",
        "",
        f"Command: `{result['command']}`. CPU, torch threads {result['threads']} (the box-only path: 1, set by predict); "
        "a shared machine: compare the paths of one run. Stage shares in parentheses.",
        "",
        "| input | path | frames/s | speed-up | " + " | ".join(f"{s} ms/frame" for s in result["stage_names"]) + " | ids identical |",
        "|---|---|---:|---:|" + "---:|" * len(result["stage_names"]) + "---|",
    ]
    for key, row in result["paths"].items():
        detector, path = key.split("/")
        before = result["paths"][f"{detector}/before"]["frames_per_s"]
        stages = " | ".join(f"{value:.1f} ({100 * value / sum(row['stages_ms_per_frame'].values()):.0f} %)" for value in row["stages_ms_per_frame"].values())
        same = "-" if path == "before" else str(result["mot_identical"][detector])
        lines.append(f"| {detector} | {path} | **{row['frames_per_s']:.2f}** | {row['frames_per_s'] / before:.1f}x | {stages} | {same} |")
    if "hog_alone_s_per_frame" in result:
        hog_fps = 1.0 / result["hog_alone_s_per_frame"]
        after = result["paths"]["hog/after"]["frames_per_s"]
        lines += ["", f"HOG alone on the same frames: **{hog_fps:.2f} frames/s**; box-only predict with HOG reaches "
                  f"{after:.2f} frames/s = {100 * after / hog_fps:.0f} % of HOG's own speed."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sequence", type=Path, help="MOT-layout sequence folder with <name>.mp4 and gt/gt.txt")
    parser.add_argument("--frames", type=int, default=24, help="first frames of the sequence (both paths run the same)")
    parser.add_argument("--inputs", nargs="+", default=["given_boxes", "hog"], choices=["given_boxes", "hog"])
    parser.add_argument("--profile-after", action="store_true", help="only the box-only path, under cProfile (no files written)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--work", type=Path, default=None, help="folder for the frames and outputs (default: temporary)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="boxonly_speed_"))
    sequence = prepare_sequence(args.sequence.expanduser().resolve(), work, args.frames)
    if not os.environ.get("PHALP_ASSETS"):
        # The untrained HMAR needs a body model: the generated stand-in (same array sizes, same cost).
        from phalp_lightning.datamodules.synthetic.mannequin import write_synthetic_assets

        os.environ["PHALP_ASSETS"] = str(work / "assets")
        write_synthetic_assets(work / "assets")
    common = ["progress_bar=false", "trainer.accelerator=cpu", "overwrite=true"]
    inputs = {
        "given_boxes": [f"video={sequence['gt']}", "detector=given_boxes"],
        "hog": [f"video={sequence['video']}", "detector=hog"],
    }
    instrument()
    if args.profile_after:
        import cProfile
        import pstats

        with cProfile.Profile() as profile:
            for detector in args.inputs:
                print(detector, run_path("after", [*inputs[detector], *common], work / detector / "after")["frames_per_s"], "frames/s")
        pstats.Stats(profile).sort_stats("cumulative").print_stats(40)
        return {}
    paths: dict[str, dict] = {}
    identical: dict[str, bool] = {}
    for detector in args.inputs:
        for name in PATHS:
            row = run_path(name, [*inputs[detector], *common], work / detector / name)
            paths[f"{detector}/{name}"] = row
            print(f"{detector}/{name}: {row['frames_per_s']:.3f} frames/s", flush=True)
        identical[detector] = same_mot(work / detector / "before", work / detector / "after")
    result = {
        "command": "python experiments/boxonly_speed/run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "sequence": args.sequence.name,
        "frames": args.frames,
        "threads": torch.get_num_threads(),
        "paths": paths,
        "stage_names": list(next(iter(paths.values()))["stages_ms_per_frame"]),
        "mot_identical": identical,
        "speed_up": {d: paths[f"{d}/after"]["frames_per_s"] / paths[f"{d}/before"]["frames_per_s"] for d in args.inputs},
    }
    if "hog" in args.inputs:
        result["hog_alone_s_per_frame"] = hog_alone(sequence["frames_dir"])
        result["box_only_share_of_hog_speed"] = paths["hog/after"]["frames_per_s"] * result["hog_alone_s_per_frame"]
    text = markdown(result)
    write_results(args.out, result, text)
    print(text)
    return result


if __name__ == "__main__":
    main()
