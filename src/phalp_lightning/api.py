"""The Python API: track a video, load its tracks, train, and score, without writing Hydra code.

What ``predict.py``, ``train.py`` and ``evaluate.py`` do, as functions (notebooks use only these and
the plotting modules)::

    from phalp_lightning import api

    api.ensure_body_model()                                   # the synthetic mannequin if no SMPL is set up
    video = api.make_demo_video("out/video", num_frames=48)   # walking people with ground truth
    run = api.track(video.video_path, "out/predict")          # = python predict.py video=... hydra.run.dir=...
    tracks = api.load_tracks(run.results_path())              # one row per (frame, track)
    frame = api.draw_frame(api.read_frames(video.video_path, [10])[0], tracks, 10, meshes=True)
    result = api.evaluate(run.mot_dir, video.mot_gt_path)     # HOTA, MOTA, IDF1, ID switches

Every function composes the same Hydra configs as the entry points (``configs/`` of the project),
so any command-line override (``"tracker.max_age=10"``, ``"detector=given_boxes"``) works as an
``overrides`` entry. Paths and patterns are values, not override grammar: pass them as a mapping
(``overrides={"data.train_shards": "out/train-{000000..000003}.tar"}``) or through :func:`override`,
which quote them, so brace patterns, spaces, ``=`` and commas arrive unchanged.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from phalp_lightning.errors import UserError

if TYPE_CHECKING:
    import pandas as pd
    from omegaconf import DictConfig

    from phalp_lightning.datamodules.synthetic.video import SyntheticVideo
    from phalp_lightning.evaluation.evaluator import EvaluationResult
    from phalp_lightning.structures import FrameTracks, VideoReport

CONFIG_DIR_ENV = "PHALP_CONFIG_DIR"


class ConfigDirNotFoundError(UserError, FileNotFoundError):
    """The project's ``configs/`` folder could not be found."""


# ----------------------------------------------------------------------------------------- configs
Overrides = Sequence[str] | Mapping[str, Any]


def quote_value(value: Any) -> str:
    """``value`` as a Hydra override value that parses back to exactly it.

    Strings and paths are single-quoted (Hydra's quoted strings take ``{ } = , [ ]`` and spaces
    literally; a quote, and backslashes before a quote or at the end, are escaped). None -> ``null``,
    bools -> ``true``/``false``, numbers as they print, lists and tuples item by item.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(quote_value(item) for item in value) + "]"
    text = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
    # Hydra reads a backslash as an escape only before a quote or at the end of the string.
    text = re.sub(r"(\\+)(?='|$)", lambda match: match.group(1) * 2, text)
    return "'" + text.replace("'", "\\'") + "'"


def override(key: str, value: Any) -> str:
    """The override ``key=<value>`` with ``value`` quoted (:func:`quote_value`): safe for any path or pattern."""
    return f"{key}={quote_value(value)}"


def as_overrides(overrides: Overrides) -> list[str]:
    """Override strings from a list of strings (used as given) or a mapping of key -> value (quoted)."""
    if isinstance(overrides, Mapping):
        return [override(str(key), value) for key, value in overrides.items()]
    if isinstance(overrides, str):
        raise TypeError(f"overrides must be a list of strings or a mapping, got the string {overrides!r}")
    return [str(item) for item in overrides]


def project_config_dir(config_dir: str | os.PathLike[str] | None = None) -> Path:
    """The project's Hydra ``configs/`` folder.

    Looked for in this order: ``config_dir``; ``$PHALP_CONFIG_DIR``; ``configs/`` in the working
    directory or one of its parents (a notebook in ``notebooks/`` finds the project's); the folder
    next to the package's source tree (an editable install).
    """
    candidates: list[Path] = []
    if config_dir is not None:
        candidates.append(Path(config_dir))
    elif os.environ.get(CONFIG_DIR_ENV):
        candidates.append(Path(os.environ[CONFIG_DIR_ENV]))
    else:
        cwd = Path.cwd().resolve()
        candidates += [folder / "configs" for folder in (cwd, *cwd.parents)]
        candidates.append(Path(__file__).resolve().parents[2] / "configs")
    for candidate in candidates:
        if (candidate / "predict.yaml").is_file() and (candidate / "train.yaml").is_file():
            return candidate.expanduser().resolve()
    raise ConfigDirNotFoundError(
        f"no project configs/ folder (with predict.yaml and train.yaml) at {', '.join(str(c) for c in candidates[:3])}",
        f"run from the project's checkout, or set {CONFIG_DIR_ENV}=<checkout>/configs",
    )


def compose(config_name: str, overrides: Overrides = (), output_dir: str | os.PathLike[str] = ".",
            config_dir: str | os.PathLike[str] | None = None) -> DictConfig:
    """The config ``python <config_name>.py <overrides> hydra.run.dir=<output_dir>`` would run with.

    Args:
        config_name: "predict", "train" or "evaluate".
        overrides: command-line style overrides, e.g. ``["render=boxes", "tracker.n_init=3"]``, or a
            mapping key -> value whose values are quoted (:func:`as_overrides`).
        output_dir: the run folder (``paths.output_dir``).
        config_dir: the ``configs/`` folder (default: :func:`project_config_dir`).
    """
    from phalp_lightning.utils.config import compose_run_config

    directory = project_config_dir(config_dir)
    output_dir = Path(output_dir).expanduser().resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    return compose_run_config(directory, config_name, as_overrides(overrides), output_dir, working_dir=directory.parent)


# ------------------------------------------------------------------------------------ body model, data
def ensure_body_model(assets_dir: str | os.PathLike[str] | None = None) -> Path:
    """The body-model folder; writes the synthetic mannequin set there when no SMPL model is found.

    The mannequin has SMPL's array layout but not its licence-bound shapes, so 3D outputs are
    mannequin-shaped; a warning says so when it is written. Returns the assets folder
    (``assets_dir``, else ``$PHALP_ASSETS``, else ``~/.cache/phalp_lightning``).
    """
    from phalp_lightning.assets import AssetMissingError, assets_root, resolve

    root = assets_root(assets_dir)
    try:
        resolve("smpl_neutral", root)
    except AssetMissingError:
        from phalp_lightning.datamodules.synthetic.mannequin import write_synthetic_assets

        warnings.warn(
            f"no SMPL body model under {root}: writing the synthetic mannequin set there (3D outputs will be "
            "mannequin-shaped; see `python -m phalp_lightning.assets` for the licensed SMPL model)",
            stacklevel=2,
        )
        write_synthetic_assets(root)
    return root


def make_demo_video(out_dir: str | os.PathLike[str], num_frames: int = 48, num_people: int = 2, seed: int = 0,
                    height: int = 360, width: int = 640, assets_dir: str | os.PathLike[str] | None = None,
                    ) -> SyntheticVideo:
    """Render the synthetic demo video (people walking past each other) with its ground truth.

    Writes ``<name>.mp4``, ``frames/``, ``gt/gt.txt`` (MOT), ``posetrack.json`` and ``ground_truth.npz``
    under ``out_dir`` (what ``python -m phalp_lightning.datamodules.synthetic video`` writes), where
    ``<name>`` is ``out_dir``'s name: tracking results are named after the video file and the MOT
    ground truth after its sequence folder, so the two pair up in :func:`evaluate`.
    """
    import dataclasses

    from phalp_lightning.datamodules.synthetic import make_synthetic_video

    name = Path(out_dir).name
    video = make_synthetic_video(out_dir, num_frames=num_frames, num_people=num_people, height=height, width=width,
                                 seed=seed, assets_root=assets_dir, sequence_name=name)
    if video.video_path is not None and video.video_path.stem != name:
        renamed = video.video_path.with_name(f"{name}.mp4")
        os.replace(video.video_path, renamed)
        video = dataclasses.replace(video, video_path=renamed)
    return video


def make_tracklet_shards(out_dir: str | os.PathLike[str], num_train_tracks: int = 96, num_val_tracks: int = 24,
                         track_length: int = 64, window: int = 32, seed: int = 0,
                         assets_dir: str | os.PathLike[str] | None = None, shard_size: int = 128) -> dict[str, str]:
    """Synthetic pose-transformer training data (walking tracklets); returns split -> shard pattern.

    A split of more than ``shard_size`` windows spans several shards, named by a brace pattern
    (``train-{000000..000001}.tar``); pass it to :func:`train` as ``train_shards=`` (quoted for you).
    """
    from phalp_lightning.datamodules.synthetic.tracklets import write_synthetic_tracklets

    entries = write_synthetic_tracklets(out_dir, num_train_tracks=num_train_tracks, num_val_tracks=num_val_tracks,
                                        track_length=track_length, window=window, seed=seed, assets_root=assets_dir,
                                        shard_size=shard_size)
    return {split: str(entry["pattern"]) for split, entry in entries.items()}


# ------------------------------------------------------------------------------------------ tracking
@dataclass
class TrackingRun:
    """The outputs of :func:`track`: one :class:`VideoReport` per video, files under ``output_dir``."""

    output_dir: Path
    reports: list[VideoReport]
    config: Any = field(repr=False, default=None)

    @property
    def names(self) -> list[str]:
        """Output names of the videos (``clip`` for ``clip.mp4``)."""
        return [report.name for report in self.reports]

    def _name(self, name: str | None) -> str:
        if name is None:
            if not self.reports:
                raise ValueError("this run tracked no video")
            return self.reports[0].name
        return name

    def _prefix(self, key: str, default: str) -> str:
        from omegaconf import OmegaConf

        value = OmegaConf.select(self.config, key, default=None) if self.config is not None else None
        return default if value is None else str(value)

    def results_path(self, name: str | None = None, format: str = "npz") -> Path:
        """``results/demo_<name>.npz`` (or ``.pkl``) of video ``name`` (default: the first)."""
        return self.output_dir / "results" / f"{self._prefix('writers.results.prefix', 'demo_')}{self._name(name)}.{format}"

    @property
    def mot_dir(self) -> Path:
        """Folder of the MOT text results (``<name>.txt`` per video), what :func:`evaluate` reads."""
        return self.output_dir / "mot"

    def rendered_video(self, name: str | None = None) -> Path:
        """``PHALP_<name>.mp4``, written when tracking with ``render="boxes"`` or ``"mesh"``."""
        return self.output_dir / f"{self._prefix('render.writer.prefix', 'PHALP_')}{self._name(name)}.mp4"


def track(video: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], output_dir: str | os.PathLike[str],
          ckpt: str | os.PathLike[str] | None = None, render: str | None = None, overrides: Overrides = (),
          overwrite: bool = False, progress_bar: bool = False) -> TrackingRun:
    """Track the people in ``video`` (a file, an image folder, a boxes file, or a list of them).

    The same run as ``python predict.py video=<video> ckpt=<ckpt> render=<render> hydra.run.dir=<output_dir>``.

    Args:
        video: one source or a list of sources.
        output_dir: the run folder (results/, mot/, PHALP_<name>.mp4).
        ckpt: HMAR checkpoint; None tracks the boxes alone (predict's box-only path, at the detector's
            speed): ids and boxes, no 3D (pose, camera, meshes are NaN; ``Tracks.has_3d`` is False).
            ``overrides=["untrained_hmar=true"]`` runs the untrained HMAR instead (meaningless 3D).
        render: "none", "boxes" or "mesh" (a rendered video; "mesh" is slow on a CPU); None: predict's
            default (``configs/predict.yaml``: boxes).
        overrides: further predict overrides, e.g. ``["detector=given_boxes", "tracker.n_init=3"]``, or a
            mapping key -> value (values quoted, for paths).
        overwrite: redo videos whose outputs already exist (else they are skipped).
        progress_bar: show Lightning's progress bar.
    """
    from phalp_lightning.pipelines.predict import run

    videos = [os.fspath(v) for v in video] if isinstance(video, (list, tuple)) else [os.fspath(video)]
    cfg = compose("predict", [
        override("video", videos), override("ckpt", None if ckpt is None else os.fspath(ckpt)),
        *([] if render is None else [f"render={render}"]),
        override("overwrite", bool(overwrite)), override("progress_bar", bool(progress_bar)), *as_overrides(overrides),
    ], output_dir)  # fmt: skip
    reports = run(cfg)
    return TrackingRun(Path(cfg.output_dir), list(reports), cfg)


# ------------------------------------------------------------------------------------------ results
TRACK_COLUMNS = ("frame", "track_id", "detected", "x", "y", "w", "h", "cam_x", "cam_y", "cam_z")


@dataclass
class Tracks:
    """A tracking result as a table: one row per (frame, track) entry, frames in order.

    Attributes:
        table: pandas DataFrame with columns ``frame`` (0-based time), ``track_id``, ``detected``
            (False: the track was alive but not seen, PHALP's ghost entry), box ``x, y, w, h``
            (pixels) and the camera translation ``cam_x, cam_y, cam_z`` (the person's 3D position
            in PHALP's camera frame: x right, y down, z forward).
        pose: (N, 229) pose vectors (SMPL rotations, betas, camera) of the rows.
        location: (N, 99) location vectors (2-D joints and camera) of the rows.
        (Tracked without an HMAR checkpoint, pose, location and ``cam_*`` are NaN: see ``has_3d``.)
        image_size: (H, W) of the video.
        path: the file it was read from.
    """

    table: pd.DataFrame
    pose: np.ndarray
    location: np.ndarray
    image_size: tuple[int, int]
    path: Path

    @property
    def has_3d(self) -> bool:
        """False when the 3D columns are NaN (tracked without an HMAR checkpoint): boxes and ids only."""
        from phalp_lightning.structures import has_3d

        return has_3d(self.pose)

    @property
    def track_ids(self) -> list[int]:
        """Every track id, sorted."""
        return sorted(int(t) for t in self.table["track_id"].unique())

    @property
    def num_frames(self) -> int:
        return int(self.table["frame"].max()) + 1 if len(self.table) else 0

    def frame_tracks(self, frame: int) -> FrameTracks:
        """The entries of ``frame`` as the :class:`FrameTracks` the renderers draw."""
        import torch

        from phalp_lightning.structures import FrameDetections, FrameTracks

        rows = np.flatnonzero(self.table["frame"].to_numpy() == frame)
        part = self.table.iloc[rows]
        xywh = part[["x", "y", "w", "h"]].to_numpy(np.float32).reshape(-1, 4)
        boxes = torch.tensor(np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1))
        count = len(rows)
        detections = FrameDetections(
            video=self.path.stem, frame_index=int(frame), frame_name=str(frame), image_size=self.image_size,
            boxes=boxes, scores=torch.ones(count), appearance=torch.zeros(count, 0),
            pose=torch.from_numpy(self.pose[rows]).float(), location=torch.from_numpy(self.location[rows]).float(),
        )
        return FrameTracks(
            video=self.path.stem, frame_index=int(frame), frame_name=str(frame), image_size=self.image_size,
            track_ids=torch.tensor(part["track_id"].to_numpy(np.int64)),
            time_since_update=torch.tensor((~part["detected"].to_numpy(bool)).astype(np.int64)),
            detections=detections,
        )


def load_tracks(path: str | os.PathLike[str]) -> Tracks:
    """Read a results file written by :func:`track` / ``predict.py`` (``.npz``, or PHALP's ``.pkl``).

    The npz is read without unpickling; a ``.pkl`` (also an original PHALP output) is unpickled, which
    runs code from the file: open only pkls you trust.
    """
    import pandas as pd

    from phalp_lightning.sinks.results import load_results_npz

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no results file {path} (track a video first, or check the name)")
    if path.suffix == ".npz":
        records = load_results_npz(path)
    else:
        import joblib

        records = joblib.load(path)
    rows: list[dict[str, Any]] = []
    poses, locations = [], []
    image_size = (0, 0)
    for position, record in enumerate(records.values()):
        time = int(record.get("time", position))
        for k, track_id in enumerate(record["tid"]):
            x, y, w, h = (float(v) for v in np.asarray(record["bbox"][k]).reshape(4))
            camera = np.asarray(record["camera"][k], np.float64).reshape(3)
            rows.append({"frame": time, "track_id": int(track_id), "detected": int(record["tracked_time"][k]) == 0,
                         "x": x, "y": y, "w": w, "h": h, "cam_x": camera[0], "cam_y": camera[1], "cam_z": camera[2]})
            poses.append(np.asarray(record["pose"][k], np.float32).reshape(229))
            locations.append(np.asarray(record["loca"][k], np.float32).reshape(99))
            if record.get("size"):
                image_size = tuple(int(v) for v in record["size"][k])  # type: ignore[assignment]
    table = pd.DataFrame(rows, columns=list(TRACK_COLUMNS))
    return Tracks(
        table=table,
        pose=np.stack(poses) if poses else np.zeros((0, 229), np.float32),
        location=np.stack(locations) if locations else np.zeros((0, 99), np.float32),
        image_size=image_size, path=path,
    )


def read_frames(video: str | os.PathLike[str], frames: Sequence[int]) -> list[np.ndarray]:
    """Frames ``frames`` (0-based) of a video file or image folder, as (H, W, 3) uint8 RGB."""
    from phalp_lightning.datamodules.video import open_source

    wanted = sorted(set(int(f) for f in frames))
    source = open_source(str(video))
    try:
        images = {}
        for index in wanted:
            if index >= len(source):
                raise IndexError(f"{video}: frame {index} requested, the video has {len(source)} frames")
            images[index] = source.read(index)
    finally:
        source.close()
    return [images[int(f)] for f in frames]


def draw_frame(image: np.ndarray, tracks: Tracks, frame: int, meshes: bool = False,
               assets_dir: str | os.PathLike[str] | None = None, joints: bool = False) -> np.ndarray:
    """``image`` with the tracks of ``frame`` drawn on it: boxes and ids, and the body meshes.

    Meshes are posed from each entry's pose vector and drawn with the CPU rasteriser (no GL needed);
    tracks without 3D (no HMAR checkpoint) have none: a warning says so and boxes and ids are drawn.
    """
    from phalp_lightning.rendering.overlay import draw_tracks

    frame_tracks = tracks.frame_tracks(frame)
    if meshes and not tracks.has_3d:
        warnings.warn(f"{tracks.path} has no 3D outputs (tracked without an HMAR checkpoint): drawing boxes and ids, no meshes",
                      stacklevel=2)
        meshes = False
    if meshes:
        image = _mesh_renderer(None if assets_dir is None else str(assets_dir)).render(image, frame_tracks)
    return draw_tracks(image, frame_tracks, draw_joints=joints)


# Building the body model takes a moment: one CPU mesh renderer per assets folder, reused.
_RENDERERS: dict[str | None, Any] = {}


def _mesh_renderer(assets_dir: str | None) -> Any:
    if assets_dir not in _RENDERERS:
        from phalp_lightning.rendering.mesh import build_mesh_renderer

        _RENDERERS[assets_dir] = build_mesh_renderer("cpu", assets_dir)
    return _RENDERERS[assets_dir]


# ------------------------------------------------------------------------------------------ training
@dataclass
class TrainingRun:
    """The outputs of :func:`train`: final metrics, the last checkpoint and the CSV log."""

    output_dir: Path
    metrics: dict[str, float]
    config: Any = field(repr=False, default=None)

    @property
    def checkpoint(self) -> Path:
        """``checkpoints/last.ckpt`` of the run."""
        return self.output_dir / "checkpoints" / "last.ckpt"

    @property
    def metrics_csv(self) -> Path:
        """The CSV logger's ``metrics.csv`` (the newest version)."""
        found = sorted(self.output_dir.glob("csv/**/metrics.csv"))
        if not found:
            raise FileNotFoundError(f"no csv/**/metrics.csv under {self.output_dir} (train with logger=csv)")
        return found[-1]

    def history(self) -> pd.DataFrame:
        """The logged metrics, one row per logging step (NaN where a metric was not logged)."""
        import pandas as pd

        return pd.read_csv(self.metrics_csv)


def train(output_dir: str | os.PathLike[str], model: str = "pose_transformer", overrides: Overrides = (),
          train_shards: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
          val_shards: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None) -> TrainingRun:
    """Train a model: the run of ``python train.py model=<model> trainer=cpu logger=csv <overrides>``.

    Args:
        output_dir: the run folder (config, checkpoints/, csv/).
        model: "pose_transformer" or "hmar".
        overrides: e.g. ``["trainer.max_epochs=3"]`` (``trainer=gpu`` for a GPU), or a mapping key -> value
            whose values are quoted (``{"data.train_shards": path}``).
        train_shards, val_shards: shard specs (path, brace pattern, glob, or a list of them, e.g. from
            :func:`make_tracklet_shards`), passed quoted; None keeps the data config's.
    """
    from phalp_lightning.pipelines.train import run

    data = [override(f"data.{key}", value if isinstance(value, (str, os.PathLike)) else [os.fspath(v) for v in value])
            for key, value in (("train_shards", train_shards), ("val_shards", val_shards)) if value is not None]
    cfg = compose("train", [f"model={model}", "trainer=cpu", "logger=csv", *data, *as_overrides(overrides)], output_dir)
    metrics = run(cfg)
    return TrainingRun(Path(cfg.paths.output_dir), dict(metrics), cfg)


def one_step_pose_predictions(network: Any, pose: np.ndarray, time: np.ndarray, valid: np.ndarray,
                              history: int = 7) -> dict[str, np.ndarray]:
    """The pose transformer's next-frame prediction at every step of one track, and the constant pose.

    At each valid step t with ``history`` valid steps before it, the network sees those steps (as the
    tracker does) and predicts step t; the constant-pose baseline repeats the newest of them. All
    steps are predicted in one batch.

    Args:
        network: a :class:`PoseTransformer` in eval mode (e.g. from ``load_pose_transformer``).
        pose: (T, 229) pose vectors of the track; time: (T,) frame indices; valid: (T,) detected.
        history: entries of history per prediction (the tracker keeps 7).

    Returns:
        dict with ``time`` (K,), ``target``, ``model``, ``constant_pose`` (K, 229) numpy arrays.
    """
    import torch

    observed = np.flatnonzero(np.asarray(valid, bool))
    if len(observed) <= history:
        raise ValueError(f"the track has {len(observed)} valid steps; one-step predictions need more than {history}")
    # Row k: the history entries observed[k : k + history] predict observed[k + history].
    windows = observed[np.arange(len(observed) - history)[:, None] + np.arange(history)[None]]
    targets = observed[history:]
    pose_t = torch.as_tensor(np.asarray(pose), dtype=torch.float32)
    time_t = torch.as_tensor(np.asarray(time), dtype=torch.long)
    pose_history, time_history = pose_t[windows], time_t[windows]
    time_since_update = time_t[targets] - time_history[:, -1] - 1
    with torch.no_grad():
        predicted = network.predict_next(pose_history, time_history, time_since_update)
    return {
        "time": time_t[targets].numpy(),
        "target": pose_t[targets].numpy(),
        "model": predicted.cpu().numpy(),
        "constant_pose": pose_history[:, -1].numpy(),
    }


# ------------------------------------------------------------------------------------------ scoring
def evaluate(pred: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
             gt: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], format: str = "mot",
             gt_format: str | None = None, protocol: str = "standard",
             sequences: Sequence[str] | None = None) -> EvaluationResult:
    """Score tracking results against ground truth, as ``python evaluate.py pred=... gt=...`` does.

    Args:
        pred: result files / folders (e.g. ``TrackingRun.mot_dir``).
        gt: ground-truth files / folders (e.g. the demo video's ``gt/gt.txt``).
        format: "mot" | "posetrack" | "phalp_pkl" (of ``pred``); gt_format: of ``gt`` (default: format).
        protocol: "standard" (IoU >= 0.5) or "phalp" (PHALP's loose protocol).
        sequences: score only these ground-truth sequences.

    Returns:
        :class:`EvaluationResult` (``format_table()``, ``rows()``, ``per_sequence``, ``overall``).
    """
    from phalp_lightning.evaluation.protocol import EvaluationProtocol
    from phalp_lightning.pipelines.evaluate import evaluate_files

    protocols = {"standard": EvaluationProtocol.standard, "phalp": EvaluationProtocol.phalp}
    if protocol not in protocols:
        raise ValueError(f"protocol must be one of {sorted(protocols)}, got {protocol!r}")
    return evaluate_files(pred, gt, format=format, gt_format=gt_format, protocol=protocols[protocol](),
                          sequences=sequences)


def metrics_table(result: EvaluationResult) -> pd.DataFrame:
    """The result's per-sequence rows and the OVERALL row as a DataFrame indexed by sequence."""
    import pandas as pd

    return pd.DataFrame(result.rows()).set_index("sequence")[result.columns]
