"""``python predict.py video=<file|folder|boxes> [ckpt=<hmar checkpoint>]``: track people, write results.

Builds the frozen :class:`~phalp_lightning.models.tracking_system.TrackingSystem` (detector + crops +
HMAR; without ``ckpt`` the box-only system: detector alone, no 3D), the :class:`~phalp_lightning.datamodules.video.VideoDataModule`, the tracker (with HMAR's
appearance encoder and the optional pose transformer injected) inside a
:class:`~phalp_lightning.tracking.callback.TrackerCallback` with the writers, and runs
``trainer.predict`` once over every video. Finished videos are skipped unless ``overwrite=true``; a
failed video is reported and the others are still written; the run fails at the end if any failed.
"""

from __future__ import annotations

import contextlib
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, ListConfig, OmegaConf

from phalp_lightning.assets import resolve
from phalp_lightning.datamodules.video import source_name
from phalp_lightning.errors import UserError
from phalp_lightning.pipelines.model_adapters import OnModuleDevice, PoseTransformerPredictor
from phalp_lightning.pipelines.progress import PredictProgressBar
from phalp_lightning.pipelines.reports import GatherReports, load_reports
from phalp_lightning.sinks.base import output_complete
from phalp_lightning.structures import VideoInfo, VideoReport
from phalp_lightning.tracking.callback import TrackerCallback
from phalp_lightning.utils.io import sweep_temporaries
from phalp_lightning.utils.logging import get_logger, task_wrapper

log = get_logger(__name__)


# What HMAR needs besides its weights (the body model and its mean parameters).
BODY_MODEL_ASSETS = ("smpl_neutral", "smpl_to_j19", "smpl_mean_params")


class PredictError(UserError, RuntimeError):
    """One or more videos could not be tracked."""


# What Hydra writes into a run folder before the task starts.
HYDRA_BOOKKEEPING = {".hydra", "config.yaml", "hydra.yaml", "overrides.yaml"}


def remove_unused_run_dir(output_dir: Path, log_name: str) -> None:
    """Remove ``output_dir`` when it holds nothing but Hydra's bookkeeping (``.hydra/``, ``<log_name>``).

    A run that stops on its inputs before any work then leaves no empty run folder behind; a folder
    with anything else in it (an earlier run's outputs) is left as it is.
    """
    import shutil

    if not output_dir.is_dir():
        return
    entries = list(output_dir.rglob("*"))
    if all(entry.name in HYDRA_BOOKKEEPING or entry.name == log_name for entry in entries):
        shutil.rmtree(output_dir, ignore_errors=True)


def video_list(video: Any) -> list[str]:
    """``video=a.mp4`` or ``video=[a.mp4,b_frames/]`` -> list of paths."""
    if isinstance(video, (ListConfig, list, tuple)):
        return [str(item) for item in video]
    return [str(video)]


# Said once at the start of a run without a checkpoint.
BOX_ONLY_MESSAGE = "no HMAR checkpoint: 3D outputs are not computed; pass ckpt=<hmar checkpoint> for 3D (untrained_hmar=true runs the untrained network)"


def build_hmar(ckpt: str | None, hmar_config: DictConfig | None, trusted: bool = False, untrained: bool = False) -> torch.nn.Module | None:
    """HMAR from ``ckpt`` (our checkpoint or the official weights); without one, None (the box-only
    path) unless ``untrained``, which builds the untrained network from ``hmar_config``."""
    if ckpt:
        if untrained:
            raise UserError(f"ckpt={ckpt} and untrained_hmar=true", "drop untrained_hmar=true to use the checkpoint, or ckpt=null")
        from phalp_lightning.models.hmar_module import load_hmar

        return load_hmar(ckpt, map_location="cpu", trusted=trusted)
    if not untrained:
        log.warning(BOX_ONLY_MESSAGE)
        return None
    log.warning(
        "no HMAR checkpoint given (ckpt=null): HMAR has untrained weights, so 3D outputs (SMPL pose, "
        "camera, meshes) are meaningless and tracking relies on boxes; pass ckpt=<hmar checkpoint> for real 3D"
    )
    if hmar_config is None:
        raise UserError("ckpt=null and no hmar config", "pass ckpt=<hmar checkpoint> or keep the default hmar: block")
    if "assets_dir" in hmar_config:
        # Checked here so a missing file reads as the asset registry's one message (where it is
        # looked for, how to get it or generate a stand-in).
        for name in BODY_MODEL_ASSETS:
            resolve(name, hmar_config.assets_dir)
    return hydra.utils.instantiate(hmar_config)


def rule_needs_3d(tracker_cfg: DictConfig) -> bool:
    """Whether the configured association reads HMAR's 3D cues whatever a box-only run measures.

    ``reference_mode`` runs the original EQ_019 rule, and forced cues are trusted as given; otherwise
    the configured rule says (:meth:`~phalp_lightning.tracking.rule.AssociationRule.needs_3d_cues`).
    """
    if tracker_cfg.get("reference_mode") or tracker_cfg.get("hmar_trained") or tracker_cfg.get("appearance_trained"):
        return True
    association = tracker_cfg.get("association")
    if association is None:
        return False  # the tracker's default rule: gated, cues auto
    return hydra.utils.instantiate(association).needs_3d_cues()


def check_box_only(tracker_cfg: DictConfig, pose_ckpt: str | None) -> None:
    """Without HMAR only the boxes are known: refuse what would read the absent 3D fields."""
    needs_3d = []
    if pose_ckpt:
        needs_3d.append(f"pose predictor {pose_ckpt} (it predicts HMAR poses)")
    if rule_needs_3d(tracker_cfg):
        needs_3d.append(
            "a tracker rule with 3D cues (tracker/association=eq019, tracker.association.cues=all, "
            "reference_mode, hmar_trained or appearance_trained)"
        )
    if needs_3d:
        raise UserError(
            "no HMAR checkpoint (box-only path) but " + " and ".join(needs_3d) + " needs 3D outputs",
            "pass ckpt=<hmar checkpoint>, or untrained_hmar=true to run the untrained network, or drop them",
        )


def build_pose_predictor(
    ckpt: str | None, config: str | None, trusted: bool = False, noise_deg: float | None = None
) -> PoseTransformerPredictor | None:
    """The tracker's pose predictor from a pose-transformer checkpoint, or None (newest pose is kept).

    ``noise_deg``: with a checkpoint that carries a validation record, the loader uses the network
    only where it beat the baselines at that pose noise, else the best baseline, and logs which.
    """
    if not ckpt:
        return None
    from phalp_lightning.models.convert_pose_transformer import load_pose_transformer

    network = load_pose_transformer(ckpt, config=config, map_location="cpu", trusted=trusted, noise_deg=noise_deg)
    return PoseTransformerPredictor(network.eval())


def build_writers(cfg: DictConfig) -> list[Any]:
    """Every ``_target_`` entry of ``cfg.writers``, plus the video renderer when ``render.enabled``.

    Without a checkpoint (box-only) a mesh render has no meshes to draw: it draws boxes and ids, and says so.
    """
    writers = [hydra.utils.instantiate(entry) for entry in (cfg.get("writers") or {}).values() if entry is not None]
    if cfg.render.get("enabled", False):
        overrides = {}
        if cfg.render.writer.get("mode") == "mesh" and is_box_only(cfg):
            log.warning("render=mesh without an HMAR checkpoint: no meshes or keypoints to draw, rendering boxes and ids; pass ckpt=... for meshes")
            overrides["mode"] = "boxes"
        writers.append(hydra.utils.instantiate(cfg.render.writer, **overrides))
    if not writers:
        raise UserError("no writer configured (writers.* all null and render=none)", "set writers.results / writers.mot or render=boxes|mesh")
    return writers


def is_box_only(cfg: DictConfig) -> bool:
    """No checkpoint and no request for the untrained network: boxes only, no 3D."""
    return not cfg.get("ckpt") and not cfg.get("untrained_hmar", False)


def finished_videos(videos: list[str], writers: list[Any], output_dir: Path) -> list[str]:
    """Names of the videos whose every output is complete (``is_complete``: a rendered video is re-opened)."""
    done = []
    for video in videos:
        info = VideoInfo(name=source_name(video), source=video, num_frames=0, output_dir=output_dir)
        if all(output_complete(writer, path) for writer in writers for path in writer.outputs(info)):
            done.append(info.name)
    return done


def check_output_dir(output_dir: Path, writers: list[Any]) -> None:
    """Fail before any compute if the output folders cannot be created or written."""
    probe_info = VideoInfo(name="probe", source="", num_frames=0, output_dir=output_dir)
    folders = {output_dir, *(path.parent for writer in writers for path in writer.outputs(probe_info))}
    for folder in sorted(folders):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".write_probe."):
                pass
        except OSError as error:
            raise UserError(
                f"output_dir={output_dir}: cannot write into {folder} ({error.strerror or error})",
                "choose a writable output_dir=... or fix the folder's permissions",
            ) from error


def summarise(reports: list[VideoReport], output_dir: Path) -> str:
    """A short table: per video frames, tracks, frames/s and status; then the output folder."""
    lines = [f"{'video':<28} {'frames':>7} {'tracks':>7} {'fps':>7}  status"]
    for report in reports:
        status = "skipped (finished; overwrite=true redoes it)" if report.skipped else (f"FAILED: {report.error}" if report.error else "ok")
        if report.given_boxes_dropped and not report.error:
            status += f" ({report.given_boxes_dropped} of {report.given_boxes} given boxes dropped as too small)"
        lines.append(f"{report.name:<28} {report.frames:>7d} {len(report.track_ids):>7d} {report.fps:>7.1f}  {status}")
    total_frames = sum(r.frames for r in reports)
    total_seconds = sum(r.seconds for r in reports)
    lines.append(f"total: {total_frames} frames in {total_seconds:.1f} s ({total_frames / total_seconds if total_seconds else 0:.1f} frames/s); outputs under {output_dir}")
    return "\n".join(lines)


def evaluate_outputs(reports: list[VideoReport], output_dir: Path, ground_truth: Any, ground_truth_format: str) -> dict[str, float]:
    """Score this run's MOT outputs against ``ground_truth`` (files or folders), sequences matched by name."""
    from phalp_lightning.pipelines.evaluate import evaluate_files, report

    if not ground_truth:
        raise UserError("evaluate=true without ground_truth", "pass ground_truth=<MOT gt.txt / PoseTrack JSON files or folders>")
    names = [r.name for r in reports if r.error is None]
    result = evaluate_files(output_dir / "mot", video_list(ground_truth), format="mot", gt_format=ground_truth_format, sequences=names)
    report(result, output_dir / "evaluation")
    return dict(result.overall)


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``count`` for the block (None: unchanged), restored after.

    The box-only path runs on a few boxes per frame: waking a thread pool for (K, 8, 8) products
    costs more than the products (on a busy 2-core CPU, 10-20 ms per call instead of 0.4 ms).
    """
    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@task_wrapper
def run(cfg: DictConfig) -> list[VideoReport]:
    """Track every video of ``cfg.video``; returns one report per video (raises PredictError if any failed)."""
    if OmegaConf.is_missing(cfg, "video"):
        raise UserError("video is not set", "pass video=<video file | image folder | boxes file> or a list video=[a,b]")
    # A missing released file (ckpt, pose predictor, detector weights) stops here naming the
    # download command; assets.download=true fetches it and the 3d group instead.
    from phalp_lightning.pipelines.assets.for_run import prepare_run_assets

    videos = video_list(cfg.video)
    output_dir = Path(cfg.output_dir)
    # Inputs first: with no video to read, nothing (HMAR, tracker, Trainer, output folders) is built.
    missing = [video for video in videos if not Path(video).expanduser().exists()]
    if missing and len(missing) == len(videos):
        remove_unused_run_dir(output_dir, f"{cfg.get('task_name', 'predict')}.log")
        listed = ", ".join(missing)
        raise UserError(f"video={listed}: no such file or folder (from {Path.cwd()})",
                        "pass an existing video file, image folder or boxes file (video=<path> or video=[a,b])")
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    prepare_run_assets(cfg, groups=("3d",))

    writers = build_writers(cfg)
    check_output_dir(output_dir, writers)
    if rank_zero_only.rank == 0:
        # Leftovers of a killed run: temporaries of unfinished files and report files.
        swept = sweep_temporaries(output_dir)
        (output_dir / ".predict_reports" / "reports.json").unlink(missing_ok=True)
        if swept:
            log.info("removed %d temporary file(s) left by an interrupted run under %s", len(swept), output_dir)
    trusted = bool(cfg.get("ckpt_trusted", False))
    # The pose-transformer checkpoint: pose_predictor_ckpt=..., or tracker.pose_predictor=<ckpt path>.
    pose_ckpt = cfg.get("pose_predictor_ckpt")
    tracker_cfg = cfg.tracker
    if isinstance(tracker_cfg.get("pose_predictor"), str):
        pose_ckpt = pose_ckpt or tracker_cfg.pose_predictor
        tracker_cfg = OmegaConf.merge(tracker_cfg, {"pose_predictor": None})
    if is_box_only(cfg):
        check_box_only(tracker_cfg, pose_ckpt)
    pose_predictor = build_pose_predictor(
        pose_ckpt, cfg.get("pose_predictor_config"), trusted=trusted, noise_deg=cfg.get("pose_predictor_noise_deg")
    )
    if pose_predictor is not None and hasattr(pose_predictor.module, "action_head_ava"):
        from phalp_lightning.sinks.actions import TrackActionsWriter

        # A predictor with an action head also scores each track's actions (results/*.actions.json).
        writers.append(TrackActionsWriter(pose_predictor.module))
    exclude = [] if cfg.get("overwrite", False) else finished_videos(videos, writers, output_dir)
    datamodule = hydra.utils.instantiate(cfg.source, videos=videos, exclude=exclude)

    hmar = build_hmar(cfg.get("ckpt"), cfg.get("hmar"), trusted=trusted, untrained=bool(cfg.get("untrained_hmar", False)))
    detector = hydra.utils.instantiate(cfg.detector)
    system = hydra.utils.instantiate(cfg.system, detector=detector, hmar=hmar)
    from phalp_lightning.tracking.phalp_tracker import tracker_from_config

    # The association rule comes from tracker/association; without ckpt HMAR's 3D cues are known untrained.
    tracker = tracker_from_config(
        tracker_cfg,
        hmar_checkpoint=bool(cfg.get("ckpt")),
        # At system.precision; none without HMAR (no UV maps, the rule reads boxes only).
        appearance_encoder=OnModuleDevice(system, "encode_appearance") if hmar is not None else None,
        pose_predictor=pose_predictor,
    )
    # Spawned DDP ranks cannot hand their reports back in memory: rank 0 gathers every rank's and
    # saves them here. The same path on every rank (and in a relaunched subprocess rank).
    reports_path = output_dir / ".predict_reports" / "reports.json"
    callback = TrackerCallback(tracker, writers, output_dir, fps=float(cfg.get("fps", 30.0)))
    callbacks: list[Any] = [callback, GatherReports(callback, reports_path)]
    if cfg.get("progress_bar", True):
        callbacks.append(PredictProgressBar())  # the callback shows the current video's frames/s on it
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=bool(cfg.get("progress_bar", True)),
        # Videos, not frames, are split across ranks (VideoDataModule.setup); frame order must hold.
        use_distributed_sampler=False,
    )
    # Open every video once here: unreadable ones are reported even when no rank gets to run
    # (Lightning skips the loop, and its hooks, when there is nothing to predict).
    datamodule.setup("predict")
    failures, skipped = dict(datamodule.failures), list(datamodule.skipped)
    for source in datamodule.sources:
        source.close()
    if datamodule.sources:
        log.info("Tracking %d video(s) into %s", len(datamodule.sources), output_dir)
        with warnings.catch_warnings(), torch_threads(1 if hmar is None else None):
            # Batches are built by the dataset (batch_size=None): there are no sampler indices to infer.
            warnings.filterwarnings("ignore", message="Couldn't infer the batch indices")
            trainer.predict(system, datamodule=datamodule, return_predictions=False)
        if not trainer.is_global_zero:
            return list(callback.reports)  # rank 0 summarises every rank's videos
        reports = load_reports(reports_path) if trainer.world_size > 1 else list(callback.reports)
        reports_path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # left when not empty (another run's files)
            reports_path.parent.rmdir()
    else:
        reports = []
    reports += [VideoReport(name=source_name(path), source=path, error=message) for path, message in failures.items()]
    reports += [VideoReport(name=name, source=name, skipped=True) for name in skipped]
    summary = summarise(reports, output_dir)
    log.info("Summary (rank %d):\n%s", trainer.global_rank, summary)
    if cfg.get("evaluate", False) and trainer.is_global_zero:
        metrics = evaluate_outputs(reports, output_dir, cfg.get("ground_truth"), cfg.get("ground_truth_format", "mot"))
        log.info("Evaluation (%s): %s", output_dir / "evaluation", ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    failed = [report for report in reports if report.error]
    if failed:
        problems = [report.error if report.source in report.error else f"{report.source}: {report.error}" for report in failed]
        written = sum(1 for report in reports if not report.error and not report.skipped)
        others = (f"{written} other video(s) were written" if written else "no video was written") + "; "
        raise PredictError(
            f"{len(failed)} of {len(reports)} video(s) failed: " + "; ".join(problems),  # type: ignore[arg-type]
            f"{others}fix these and rerun (finished videos are skipped)",
        )
    return reports
