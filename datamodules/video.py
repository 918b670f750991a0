"""Frame sources and the VideoDataModule of the predict pipeline (docs/predict.md, Inputs).

A source is one video: a video file (anything OpenCV or PyAV decodes), a folder of images, or a
file of given boxes (PHALP's results-style pkl with ``gt_bbox``/``gt_track_id``, MOT-challenge
``det.txt``/``gt.txt``, PoseTrack JSON) with the frames they refer to. Frames are decoded lazily, one
batch at a time; a video is never held in memory. ``start_frame``/``end_frame`` slice the frame list
like Python (PHALP's ``[start:end]``); the frame index (PHALP's ``t``) is the position in the slice.

The DataModule yields ready batches (``batch_size=None`` in the DataLoader) of consecutive frames of
one video, in order; a batch never spans two videos. With several processes (DDP) each rank gets
every ``world_size``-th video, so ranks never share a video.
"""

from __future__ import annotations

import os
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from phalp_lightning.errors import UserError
from phalp_lightning.structures import Detections
from phalp_lightning.utils.logging import get_logger

log = get_logger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
BOX_EXTENSIONS = (".pkl", ".txt", ".json")


class FrameSourceError(UserError, RuntimeError):
    """A video, image folder or box file cannot be read; the message names it and what was wrong."""


class FrameSource(ABC):
    """One video as a lazily decoded, sliced list of RGB frames, optionally with given boxes."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path

    @abstractmethod
    def __len__(self) -> int:
        """Number of frames after the start/end slice."""

    @abstractmethod
    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` of the slice as (H, W, 3) uint8 RGB."""

    @abstractmethod
    def frame_name(self, index: int) -> str:
        """The frame key written to the results (an image path, or ``<video>/<%06d>.jpg``)."""

    def given_boxes(self, index: int) -> Detections | None:
        """Boxes given for frame ``index`` (with their track ids), or None when there are none."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook: sources without decoders have nothing to release
        """Release decoders; the source reopens itself on the next read."""


def _slice_range(total: int, start_frame: int | None, end_frame: int | None) -> range:
    start = None if start_frame in (None, -1) else start_frame
    end = None if end_frame in (None, -1) else end_frame
    return range(total)[slice(start, end)]


class VideoFileSource(FrameSource):
    """A video file decoded with OpenCV, or PyAV when OpenCV cannot open it.

    Frames are read sequentially; a read out of order seeks. The frame count comes from the
    container; a frame that then fails to decode raises :class:`FrameSourceError`.
    """

    def __init__(self, path: str | os.PathLike[str], start_frame: int | None = None, end_frame: int | None = None) -> None:
        path = Path(path)
        super().__init__(name=source_name(path), path=path)
        if not path.is_file():
            raise FrameSourceError(f"video {path}: no such file")
        if path.stat().st_size == 0:
            raise FrameSourceError(f"video {path}: the file is empty")
        self._capture: Any = None
        self._av: Any = None
        self._position = 0
        self.backend, total = self._probe()
        self.frames = _slice_range(total, start_frame, end_frame)

    def _probe(self) -> tuple[str, int]:
        import cv2

        capture = cv2.VideoCapture(str(self.path))
        try:
            if capture.isOpened():
                total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
                ok, _ = capture.read()
                if ok and total > 0:
                    # Container frame counts can be wrong: trust it only if its last frame decodes.
                    capture.set(cv2.CAP_PROP_POS_FRAMES, total - 1)
                    if capture.grab():
                        return "opencv", total
                    capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    counted = 0
                    while capture.grab():
                        counted += 1
                    if counted > 0:
                        return "opencv", counted
        finally:
            capture.release()
        try:
            import av
        except ImportError:
            raise FrameSourceError(f"video {self.path}: OpenCV cannot decode it (corrupt, empty or unsupported container) and PyAV is not installed") from None
        try:
            with av.open(str(self.path)) as container:
                total = sum(1 for _ in container.decode(video=0))
        except (av.error.FFmpegError, ValueError, IndexError) as error:  # IndexError: no video stream
            raise FrameSourceError(f"video {self.path}: cannot decode it ({error})") from error
        if total == 0:
            raise FrameSourceError(f"video {self.path}: contains no decodable frames")
        return "pyav", total

    def __len__(self) -> int:
        return len(self.frames)

    def frame_name(self, index: int) -> str:
        # PHALP extracts frames to <name>/img/%06d.jpg numbered from 1 within the slice.
        return f"{self.name}/{index + 1:06d}.jpg"

    def read(self, index: int) -> np.ndarray:
        target = self.frames[index]
        if self.backend == "opencv":
            return self._read_opencv(target)
        return self._read_pyav(target)

    def _read_opencv(self, target: int) -> np.ndarray:
        import cv2

        if self._capture is None:
            self._capture = cv2.VideoCapture(str(self.path))
            self._position = 0
        if target != self._position:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, target)
            self._position = target
        ok, frame = self._capture.read()
        if not ok:
            raise FrameSourceError(f"video {self.path}: frame {target} cannot be decoded (truncated or corrupt file)")
        self._position += 1
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def _read_pyav(self, target: int) -> np.ndarray:
        import av

        if self._av is None or target < self._position:
            self.close()
            container = av.open(str(self.path))
            self._av = (container, container.decode(video=0))
            self._position = 0
        try:
            while True:
                frame = next(self._av[1])
                self._position += 1
                if self._position - 1 == target:
                    return frame.to_ndarray(format="rgb24")
        except (StopIteration, av.error.FFmpegError) as error:
            raise FrameSourceError(f"video {self.path}: frame {target} cannot be decoded ({error or 'end of stream'})") from error

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None
        if self._av is not None:
            self._av[0].close()
            self._av = None

    def __getstate__(self) -> dict[str, Any]:
        # Decoders do not pickle (DataLoader workers); each process reopens its own.
        state = dict(self.__dict__)
        state.update(_capture=None, _av=None, _position=0)
        return state


class ImageListSource(FrameSource):
    """Frames stored as image files (an image folder, or the frames a box file refers to)."""

    def __init__(
        self,
        name: str,
        path: Path,
        images: Sequence[Path],
        start_frame: int | None = None,
        end_frame: int | None = None,
        boxes: Sequence[Detections | None] | None = None,
    ) -> None:
        super().__init__(name=name, path=path)
        selected = _slice_range(len(images), start_frame, end_frame)
        self.images = [Path(images[i]) for i in selected]
        self.boxes = [boxes[i] for i in selected] if boxes is not None else None
        if not self.images:
            raise FrameSourceError(f"{path}: no frames (after start/end slicing)")

    def __len__(self) -> int:
        return len(self.images)

    def frame_name(self, index: int) -> str:
        return str(self.images[index])

    def read(self, index: int) -> np.ndarray:
        import cv2

        image = cv2.imread(str(self.images[index]), cv2.IMREAD_COLOR)
        if image is None:
            raise FrameSourceError(f"{self.path}: image {self.images[index]} is missing or cannot be decoded")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def given_boxes(self, index: int) -> Detections | None:
        if self.boxes is None:
            return None
        return self.boxes[index]


def image_folder_source(folder: str | os.PathLike[str], start_frame: int | None = None, end_frame: int | None = None) -> ImageListSource:
    """A folder of frames (sorted by name; .jpg, .jpeg, .png, .bmp). A MOT sequence folder uses its ``img1/``."""
    folder = Path(folder)
    name = source_name(folder)
    if (folder / "img1").is_dir():
        folder = folder / "img1"
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not images:
        raise FrameSourceError(f"image folder {folder}: contains no {'/'.join(IMAGE_EXTENSIONS)} files")
    return ImageListSource(name, folder, images, start_frame, end_frame)


def _given(
    boxes_xywh: Any, track_ids: np.ndarray | None, scores: np.ndarray | None = None, where: str = "boxes file"
) -> Detections | None:
    """Given boxes [x, y, w, h] -> Detections (xyxy); None when the list is empty.

    ``scores`` are the file's confidences (MOT det files), else 1. A list that is not N x 4 raises
    :class:`FrameSourceError` naming ``where`` (the file and frame), so only that video fails.
    """
    try:
        boxes_xywh = np.asarray(boxes_xywh, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise FrameSourceError(f"{where}: boxes are not numbers ({error})", "give an N x 4 array [x, y, w, h] per frame") from error
    if boxes_xywh.size == 0:
        return None
    if boxes_xywh.ndim == 1 and boxes_xywh.shape[0] == 4:
        boxes_xywh = boxes_xywh[None]
    if boxes_xywh.ndim != 2 or boxes_xywh.shape[1] != 4:
        raise FrameSourceError(f"{where}: boxes have shape {tuple(boxes_xywh.shape)}, expected N x 4 [x, y, w, h]", "fix or regenerate the boxes file")
    if not np.isfinite(boxes_xywh).all():
        raise FrameSourceError(f"{where}: boxes contain NaN or infinite values", "fix or regenerate the boxes file")
    boxes = torch.from_numpy(np.concatenate([boxes_xywh[:, :2], boxes_xywh[:, :2] + boxes_xywh[:, 2:]], axis=1))
    ids = None
    if track_ids is not None and len(track_ids) == len(boxes_xywh):
        ids = torch.as_tensor(np.asarray(track_ids, dtype=np.int64))
    confidence = torch.ones(len(boxes)) if scores is None else torch.as_tensor(np.asarray(scores, dtype=np.float32)).reshape(-1)
    return Detections(boxes=boxes, scores=confidence, track_ids=ids)


def phalp_boxes_source(path: Path, base_path: Path | None, start_frame: int | None, end_frame: int | None) -> ImageListSource:
    """PHALP's given-boxes pkl: ``{basename: {'gt_bbox': (N,4) xywh, 'extra_data': {'gt_track_id': ...}}}``."""
    import joblib

    try:
        records = joblib.load(path)
    except Exception as error:  # joblib raises many types for a bad file; all mean "not a readable pkl"
        raise FrameSourceError(f"boxes file {path}: cannot be read as a joblib/pickle file ({error})") from error
    if not isinstance(records, dict):
        raise FrameSourceError(f"boxes file {path}: expected a dict of frame name -> boxes, got {type(records).__name__}")
    base = base_path or path.parent
    names = sorted(records)
    boxes = []
    for name in names:
        record = records[name]
        if "gt_bbox" not in record:
            raise FrameSourceError(f"boxes file {path}: frame {name!r} has no 'gt_bbox' key")
        ids = (record.get("extra_data") or {}).get("gt_track_id")
        ids = None if ids is None or len(ids) == 0 else np.asarray(ids)
        boxes.append(_given(record["gt_bbox"], ids, where=f"boxes file {path}, frame {name!r}"))
    return ImageListSource(source_name(path), path, [base / name for name in names], start_frame, end_frame, boxes)


def mot_boxes_source(path: Path, base_path: Path | None, start_frame: int | None, end_frame: int | None) -> ImageListSource:
    """MOT-challenge ``det.txt``/``gt.txt`` (frame, id, x, y, w, h, conf, ...; frames 1-based) with its ``img1/`` folder.

    In a ``gt/gt.txt`` with class columns, only rows flagged for evaluation (column 7 != 0) of class 1
    (pedestrian) are kept; ``det.txt`` ids are not track ids and are dropped. A ``det.txt``'s
    confidences are kept as the boxes' scores (and written to the MOT output's conf column); a
    ``gt.txt``'s conf column is an evaluation flag, so its boxes score 1.
    """
    from phalp_lightning.datamodules.formats.mot import MOTFormatError, read_mot

    sequence_dir = path.parent.parent if path.parent.name in ("det", "gt") else path.parent
    frames_dir = base_path or sequence_dir / "img1"
    if not Path(frames_dir).is_dir():
        raise FrameSourceError(f"boxes file {path}: frame folder {frames_dir} not found; pass source.boxes_base_path=<folder of frames>")
    images = sorted(p for p in Path(frames_dir).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    try:
        rows = read_mot(path)
    except MOTFormatError as error:
        raise FrameSourceError(f"boxes file {path}: {error}") from error
    is_gt = path.parent.name == "gt"
    if is_gt and rows.extra.shape[1] >= 1:
        keep = (rows.confidences != 0) & (rows.extra[:, 0] == 1)
        rows = type(rows)(rows.frames[keep], rows.track_ids[keep], rows.boxes_xywh[keep], rows.confidences[keep], rows.extra[keep], rows.path)
    # A det.txt's column 7 is the detector's confidence, kept as the score (the tracker blends UV maps
    # with score^2, so it must lie in [0, 1]); a gt.txt's is an evaluation flag.
    keep_scores = not is_gt and len(rows.confidences) > 0
    if keep_scores and not ((rows.confidences >= 0) & (rows.confidences <= 1)).all():
        warnings.warn(f"boxes file {path}: confidences outside [0, 1] (detector margins?); every given box scores 1", stacklevel=2)
        keep_scores = False
    boxes = []
    for frame_number in range(1, len(images) + 1):
        frame_rows = rows.frame(frame_number)
        ids = None if path.parent.name == "det" else frame_rows.track_ids
        scores = frame_rows.confidences if keep_scores else None
        boxes.append(_given(frame_rows.boxes_xywh, ids, scores, where=f"boxes file {path}, frame {frame_number}"))
    return ImageListSource(source_name(path), path, images, start_frame, end_frame, boxes)


def posetrack_boxes_source(path: Path, base_path: Path | None, start_frame: int | None, end_frame: int | None) -> ImageListSource:
    """PoseTrack 18/21 JSON (``images`` with ``file_name``, ``annotations`` with ``bbox`` xywh and ``track_id``)."""
    from phalp_lightning.datamodules.formats.posetrack import PoseTrackFormatError, read_posetrack

    try:
        video = read_posetrack(path)
    except PoseTrackFormatError as error:
        raise FrameSourceError(f"boxes file {path}: {error}") from error
    base = base_path or path.parent
    boxes = []
    for frame in video.frames:
        people = [person for person in frame.people if person.box_xywh is not None]
        where = f"boxes file {path}, image {frame.file_name}"
        boxes.append(_given([p.box_xywh for p in people], np.array([p.track_id for p in people]), where=where))
    return ImageListSource(source_name(path), path, [base / frame.file_name for frame in video.frames], start_frame, end_frame, boxes)


def source_name(path: str | os.PathLike[str]) -> str:
    """The name a source's outputs are written under, from its path alone (without opening it).

    Video file: the base name up to the first dot (PHALP); folder: its name (a MOT sequence for its
    ``img1/``); box file: its stem, or the MOT sequence name for ``<seq>/det|gt/<file>.txt``.
    """
    path = Path(path).expanduser()
    if path.is_dir() or not path.suffix:
        return path.parent.name if path.name == "img1" else path.name
    suffix = path.suffix.lower()
    if suffix == ".txt" and path.parent.name in ("det", "gt"):
        return path.parent.parent.name
    if suffix in BOX_EXTENSIONS:
        return path.stem
    return path.name.split(".")[0]


def open_source(
    path: str | os.PathLike[str],
    start_frame: int | None = None,
    end_frame: int | None = None,
    boxes_base_path: str | os.PathLike[str] | None = None,
) -> FrameSource:
    """The frame source for ``path``, chosen by what it is.

    Args:
        path: a video file, a folder of images (or a MOT sequence folder with ``img1/``), or a boxes
            file: ``.pkl`` (PHALP), ``.txt`` (MOT det/gt), ``.json`` (PoseTrack).
        start_frame, end_frame: Python-slice bounds on the frame list (None or -1 = open).
        boxes_base_path: folder the frame names of a boxes file are relative to (default: its folder;
            for MOT, the sequence's ``img1/``).
    """
    path = Path(path).expanduser()
    base = Path(boxes_base_path).expanduser() if boxes_base_path else None
    if path.is_dir():
        return image_folder_source(path, start_frame, end_frame)
    if not path.exists():
        raise FrameSourceError(f"video {path}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix == ".pkl":
        return phalp_boxes_source(path, base, start_frame, end_frame)
    if suffix == ".txt":
        return mot_boxes_source(path, base, start_frame, end_frame)
    if suffix == ".json":
        return posetrack_boxes_source(path, base, start_frame, end_frame)
    return VideoFileSource(path, start_frame, end_frame)


class VideoChunks(Dataset):
    """Batches of consecutive frames: item k is chunk k of one video, never spanning two videos."""

    def __init__(self, sources: Sequence[FrameSource], batch_size: int, placeholder: bool = False) -> None:
        self.sources = list(sources)
        # Set when a video fails: its remaining chunks are not decoded. In shared memory, so
        # DataLoader workers see what the main process sets.
        self.stopped = torch.zeros(len(self.sources), dtype=torch.bool).share_memory_()
        self.chunks = [
            (video, start, min(start + batch_size, len(source)))
            for video, source in enumerate(self.sources)
            for start in range(0, len(source), batch_size)
        ]
        if placeholder and not self.chunks:
            # A DDP rank without a video still needs one batch: Lightning refuses a rank whose
            # loader is empty while others have batches. The batch carries no frames and is ignored.
            self.chunks = [(-1, 0, 0)]

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, item: int) -> dict[str, Any]:
        """A batch: ``images`` (B, H, W, 3) uint8 RGB, ``frame_index`` (B,), names, given boxes, flags.

        A frame that cannot be decoded gives a batch with ``error`` set (and no images) instead of
        raising, so the other videos of the run go on; the video's later chunks are then not decoded
        (nor those of a video :meth:`stop` was called for).
        """
        video, start, stop = self.chunks[item]
        if video < 0:
            return {"video": "", "video_path": "", "num_frames": 0, "frame_index": torch.zeros(0, dtype=torch.long), "frame_name": [],
                    "given": [], "is_first": False, "is_last": False, "images": None, "error": "no video on this rank", "placeholder": True}  # fmt: skip
        source = self.sources[video]
        batch: dict[str, Any] = {
            "video": source.name,
            "video_path": str(source.path),
            "num_frames": len(source),
            "frame_index": torch.arange(start, stop),
            "frame_name": [source.frame_name(i) for i in range(start, stop)],
            "given": [source.given_boxes(i) for i in range(start, stop)],
            "is_first": start == 0,
            "is_last": stop == len(source),
            "error": None,
        }
        if self.stopped[video]:
            batch.update(images=None, error=f"video {source.path}: not decoded after an earlier failure", stopped=True)
            if stop == len(source):
                source.close()
            return batch
        try:
            frames = [source.read(i) for i in range(start, stop)]
        except FrameSourceError as error:
            self.stopped[video] = True
            source.close()
            batch.update(images=None, error=str(error))
            return batch
        shapes = {frame.shape for frame in frames}
        if len(shapes) > 1:
            self.stopped[video] = True
            batch.update(images=None, error=f"video {source.path}: frames {start}..{stop - 1} differ in size {sorted(shapes)}")
            return batch
        batch["images"] = torch.from_numpy(np.stack(frames))
        if stop == len(source):
            source.close()
        return batch

    def stop(self, name: str) -> None:
        """Skip the rest of video ``name`` (it failed downstream): no more decoding, detection or HMAR."""
        for video, source in enumerate(self.sources):
            if source.name == name:
                self.stopped[video] = True


def _keep_batch(batch: dict[str, Any]) -> dict[str, Any]:
    return batch


class VideoDataModule(L.LightningDataModule):
    """Predict-only DataModule over one or several videos.

    Args:
        videos: one path or a list of paths (see :func:`open_source`).
        start_frame, end_frame: slice of every video's frame list (None or -1 = open).
        batch_size: frames per batch (detection and HMAR run once per batch).
        num_workers: DataLoader workers decoding frames ahead (0 = in the main process).
        boxes_base_path: frame folder for boxes files.
        exclude: video names to skip (finished videos on a resumed run).
    """

    def __init__(
        self,
        videos: str | Sequence[str],
        start_frame: int | None = None,
        end_frame: int | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        boxes_base_path: str | None = None,
        exclude: Sequence[str] = (),
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise UserError(f"source.batch_size={batch_size}: must be >= 1", "set source.batch_size to a positive number of frames")
        self.videos = [videos] if isinstance(videos, (str, os.PathLike)) else list(videos)
        if not self.videos:
            raise UserError("video=[]: no video given", "pass video=<file or folder> (or a list)")
        self.start_frame = start_frame
        self.end_frame = end_frame
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.boxes_base_path = boxes_base_path
        self.exclude = set(exclude)
        self.sources: list[FrameSource] = []
        self.failures: dict[str, str] = {}
        self.skipped: list[str] = []
        self._chunks: VideoChunks | None = None

    def setup(self, stage: str | None = None) -> None:
        """Open this rank's videos; a video that cannot be opened is recorded in ``failures``."""
        rank, world = 0, 1
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            rank, world = trainer.global_rank, trainer.world_size
        self.sources, self.failures, self.skipped = [], {}, []
        names: dict[str, str] = {}
        for path in self.videos[rank::world]:
            try:
                source = open_source(path, self.start_frame, self.end_frame, self.boxes_base_path)
            except FrameSourceError as error:
                self.failures[str(path)] = str(error)
                continue
            if source.name in names:
                raise UserError(
                    f"videos {names[source.name]} and {path} have the same name {source.name!r}: their outputs would collide",
                    "rename one of them, or track them in separate runs (output_dir=...)",
                )
            names[source.name] = str(path)
            if source.name in self.exclude:
                self.skipped.append(source.name)
                source.close()
                continue
            self.sources.append(source)

    def stop_video(self, name: str) -> None:
        """Called when video ``name`` failed: its remaining frames are not decoded or run through the models."""
        if self._chunks is not None:
            self._chunks.stop(name)

    def predict_dataloader(self) -> DataLoader:
        world = getattr(getattr(self, "trainer", None), "world_size", 1)
        self._chunks = VideoChunks(self.sources, self.batch_size, placeholder=world > 1)
        return DataLoader(
            self._chunks,
            batch_size=None,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=_keep_batch,
        )

