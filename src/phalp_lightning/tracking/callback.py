"""TrackerCallback: runs the tracker over the TrackingSystem's per-frame detections, in order, and feeds writers.

The stateful, non-differentiable half of the predict loop (docs/architecture.md): ``predict_step``
returns :class:`~phalp_lightning.structures.BatchDetections`; this callback, a
``BasePredictionWriter`` called after every batch, passes each frame to ``tracker.update`` strictly in
order, hands every completed :class:`~phalp_lightning.structures.FrameTracks` to the writers, and at
the end of a video flushes the tracker (``finalize``) and closes the writers (files appear
atomically). A video whose frames or model step fail is reported, its writers are aborted, and the
run goes on with the next video.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.callbacks import BasePredictionWriter

from phalp_lightning.structures import FrameDetections, FrameTracks, TrackWriter, VideoInfo, VideoReport
from phalp_lightning.utils.logging import get_logger

log = get_logger(__name__)


class TrackerCallback(BasePredictionWriter):
    """Per-video tracking and writing after every predict batch.

    Args:
        tracker: a tracker with ``reset()``, ``update(FrameDetections) -> list[FrameTracks]`` and
            ``finalize() -> list[FrameTracks]`` (PHALPTracker); reset for every video, so ids restart at 1.
        writers: the :class:`~phalp_lightning.sinks.base.TrackWriter` s each video is written with.
        output_dir: folder the writers write under.
        fps: frame rate passed to video writers.

    ``reports`` holds one :class:`~phalp_lightning.structures.VideoReport` per video of this rank;
    gathering them across ranks is the pipeline's (:mod:`phalp_lightning.pipelines.reports`).
    """

    def __init__(
        self, tracker: Any, writers: Sequence[TrackWriter], output_dir: str | Path, fps: float = 30.0
    ) -> None:
        super().__init__(write_interval="batch")
        self.tracker = tracker
        self.writers = list(writers)
        self.output_dir = Path(output_dir)
        self.fps = fps
        self.reports: list[VideoReport] = []
        self._current: VideoReport | None = None
        self._frames: dict[int, FrameDetections] = {}
        self._images: dict[int, np.ndarray] = {}
        self._next_frame = 0
        self._started = 0.0
        self._batch_started: float | None = None
        self._trainer: Any = None

    @property
    def needs_images(self) -> bool:
        return any(writer.needs_images for writer in self.writers)

    def video_info(self, name: str, source: str, num_frames: int) -> VideoInfo:
        return VideoInfo(name=name, source=source, num_frames=num_frames, output_dir=self.output_dir, fps=self.fps)

    def _start(self, batch: dict[str, Any]) -> None:
        self._current = VideoReport(name=batch["video"], source=batch["video_path"])
        self.reports.append(self._current)
        self._frames, self._images, self._next_frame = {}, {}, 0
        # The clock starts before the video's first batch is detected and lifted, not after.
        self._started = self._batch_started or time.perf_counter()
        self.tracker.reset()
        info = self.video_info(batch["video"], batch["video_path"], int(batch["num_frames"]))
        for writer in self.writers:
            writer.open(info)

    def _fail(self, message: str) -> None:
        assert self._current is not None
        log.error("video %s failed: %s", self._current.name, message)
        self._current.error = message
        for writer in self.writers:
            writer.abort()
        self._elapsed()
        # The video's remaining frames are not decoded, detected or run through HMAR.
        stop_video = getattr(getattr(self._trainer, "datamodule", None), "stop_video", None)
        if stop_video is not None:
            stop_video(self._current.name)

    def _elapsed(self) -> None:
        assert self._current is not None
        self._current.seconds = time.perf_counter() - self._started

    def _emit(self, frames: list[FrameTracks]) -> None:
        assert self._current is not None
        for tracks in sorted(frames, key=lambda item: item.frame_index):
            if tracks.frame_index < self._next_frame:
                raise RuntimeError(f"tracker emitted frame {tracks.frame_index} of {tracks.video} twice or out of order")
            # A frame the tracker skipped has no confirmed track; writers still get it, in order.
            for missing in range(self._next_frame, tracks.frame_index):
                self._write(FrameTracks.empty(self._frames[missing]))
            self._write(tracks)

    def _write(self, tracks: FrameTracks) -> None:
        assert self._current is not None
        image = self._images.pop(tracks.frame_index, None)
        self._frames.pop(tracks.frame_index, None)
        for writer in self.writers:
            writer.write(tracks, image)
        self._current.frames += 1
        self._current.track_ids.update(int(t) for t in tracks.track_ids[tracks.detected])
        self._next_frame = tracks.frame_index + 1

    def finish(self) -> None:
        """Flush and close the current video (if any); safe to call again."""
        current = self._current
        if current is None:
            return
        try:
            if current.error is None:
                self._emit(self.tracker.finalize())
                for missing in sorted(index for index in self._frames if index >= self._next_frame):
                    self._write(FrameTracks.empty(self._frames[missing]))
                outputs: list[Path] = []
                for writer in self.writers:
                    outputs.extend(writer.close())
                current.outputs = [str(path) for path in outputs]
                self._elapsed()
                self._warn_dropped_boxes(current)
        except (RuntimeError, ValueError, KeyError, IndexError, OSError) as error:
            self._fail(f"{type(error).__name__}: {error}")
        finally:
            self._current = None
            self._frames, self._images = {}, {}

    def _warn_dropped_boxes(self, report: VideoReport) -> None:
        if not report.given_boxes_dropped:
            return
        share = report.given_boxes_dropped / report.given_boxes
        message = (
            "video %s: %d of %d given boxes (%.0f%%) were dropped by the small-box filter (narrower than "
            "system.min_box_width or shorter than system.min_box_height, in frame pixels); lower those to keep them"
        )
        args = (report.name, report.given_boxes_dropped, report.given_boxes, 100 * share)
        if share > 0.5:
            log.warning("MOST GIVEN BOXES DROPPED: " + message, *args)
        else:
            log.warning(message, *args)

    def on_predict_batch_start(self, trainer: Any, pl_module: Any, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._batch_started = time.perf_counter()

    def write_on_batch_end(
        self,
        trainer: Any,
        pl_module: Any,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: dict[str, Any],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Track the frames of one batch (called by Lightning after ``predict_step``)."""
        self._trainer = trainer
        if batch.get("placeholder"):  # the frameless batch of a DDP rank without a video
            return
        if self._current is None or self._current.name != batch["video"] or batch["is_first"]:
            self.finish()
            self._start(batch)
        current = self._current
        assert current is not None
        if current.error is None:
            if prediction.error is not None:
                self._fail(prediction.error)
            else:
                try:
                    self._count_given(prediction.frames, batch, pl_module)
                    self._track(prediction.frames, batch)
                except (RuntimeError, ValueError, KeyError, IndexError) as error:
                    self._fail(f"{type(error).__name__}: {error}")
        if batch["is_last"]:
            self.finish()
        self._show_progress(trainer, current)

    @staticmethod
    def _progress_bars(trainer: Any) -> list[Any]:
        return [callback for callback in getattr(trainer, "callbacks", []) if hasattr(callback, "show_video")]

    def _show_progress(self, trainer: Any, current: VideoReport) -> None:
        bars = self._progress_bars(trainer)
        if bars:
            if current.error is None and current is self._current:
                self._elapsed()
            for bar in bars:
                bar.show_video(current.name, current.frames, current.fps)

    def _count_given(self, frames: list[FrameDetections], batch: dict[str, Any], pl_module: Any) -> None:
        """Given boxes of these frames, and how many the small-box filter removed (a frame's kept rows)."""
        if self._current is None or not getattr(pl_module, "use_given_boxes", True):
            return
        for frame, given in zip(frames, batch.get("given") or [None] * len(frames), strict=False):
            if given is not None:
                self._current.given_boxes += len(given)
                self._current.given_boxes_dropped += len(given) - len(frame.boxes)

    def _track(self, frames: list[FrameDetections], batch: dict[str, Any]) -> None:
        images = batch["images"] if self.needs_images else None
        for k, frame in enumerate(frames):
            self._frames[frame.frame_index] = frame
            if images is not None:
                self._images[frame.frame_index] = images[k].cpu().numpy()
            self._emit(self.tracker.update(frame))

    def on_predict_end(self, trainer: Any, pl_module: Any) -> None:
        # A video whose last batch never came (e.g. a limit_predict_batches run) is still flushed.
        self.finish()

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage == "predict":
            self.finish()

