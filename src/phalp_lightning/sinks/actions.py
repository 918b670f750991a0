"""Per-track action probabilities from the pose transformer's action head (LART-style), per video.

:class:`TrackActionsWriter` is a track writer: it collects each confirmed track's detected pose
vectors while a video is tracked and, when the video ends, scores every track with
:meth:`PoseTransformer.action_probabilities` over windows of ``frame_length`` frames (weighted by
their detections). It writes ``results/<prefix><video>.actions.json``::

    {"action_names": [...], "tracks": {"<track id>": {"detections": n, "probabilities": {name: p}}}}
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from phalp_lightning.structures import FrameTracks, VideoInfo
from phalp_lightning.utils.io import atomic_write_text

log = logging.getLogger(__name__)


class TrackActionsWriter:
    """Writes per-track action probabilities of a pose transformer that has an action head.

    Args:
        network: a :class:`~phalp_lightning.models.components.pose_transformer.PoseTransformer`
            with ``num_action_classes > 0`` (eval mode).
        prefix: file-name prefix, as the results writer's.
        windows_per_call: windows scored per network call.
    """

    needs_images = False

    def __init__(self, network: torch.nn.Module, prefix: str = "demo_", windows_per_call: int = 256) -> None:
        if not hasattr(network, "action_head_ava"):
            raise ValueError("TrackActionsWriter needs a pose transformer with an action head")
        count = int(network.config["num_action_classes"])
        self.network = network
        if network.action_names is None:
            log.warning(
                "the pose transformer's action head has no class names: actions.json says class_0..class_%d; "
                "for the official AVA head convert the checkpoint with --action-label-map <label map of the "
                "evaluated classes (.pbtxt)> (docs/pose_transformer.md, Actions)", count - 1,
            )
        self.names = list(network.action_names or [f"class_{index}" for index in range(count)])
        self.prefix = prefix
        self.windows_per_call = windows_per_call
        self._video: VideoInfo | None = None
        self._tracks: dict[int, tuple[list[int], list[torch.Tensor]]] = {}

    def outputs(self, video: VideoInfo) -> list[Path]:
        return [video.output_dir / "results" / f"{self.prefix}{video.name}.actions.json"]

    def open(self, video: VideoInfo) -> None:
        self._video, self._tracks = video, {}

    def write(self, tracks: FrameTracks, image: np.ndarray | None = None) -> None:
        detected = tracks.detected
        poses = tracks.detections.pose[detected].float().cpu()
        for track_id, pose in zip(tracks.track_ids[detected].tolist(), poses, strict=True):
            frames, rows = self._tracks.setdefault(int(track_id), ([], []))
            frames.append(tracks.frame_index)
            rows.append(pose)

    def track_probabilities(self) -> dict[int, tuple[int, list[float]]]:
        """track id -> (detections, probabilities), from windows of ``frame_length`` frames."""
        length = int(self.network.frame_length)
        owners, window_pose, window_time = [], [], []
        for track_id, (frames, rows) in self._tracks.items():
            times = torch.tensor(frames, dtype=torch.int64)
            poses = torch.stack(rows)
            window_index = (times - times[0]) // length
            for window in window_index.unique().tolist():
                chosen = window_index == window
                owners.append(track_id)
                window_pose.append(poses[chosen])
                window_time.append(times[chosen])
        results: dict[int, tuple[int, list[float]]] = {}
        if not owners:
            return results
        width = max(len(times) for times in window_time)
        count = len(owners)
        pose = torch.zeros(count, width, window_pose[0].shape[-1])
        time = torch.zeros(count, width, dtype=torch.int64)
        valid = torch.zeros(count, width, dtype=torch.bool)
        for index, (poses, times) in enumerate(zip(window_pose, window_time, strict=True)):
            pose[index, : len(times)], time[index, : len(times)], valid[index, : len(times)] = poses, times, True
        probabilities = torch.cat(
            [
                self.network.action_probabilities(
                    pose[start : start + self.windows_per_call],
                    time[start : start + self.windows_per_call],
                    valid[start : start + self.windows_per_call],
                ).cpu()
                for start in range(0, count, self.windows_per_call)
            ]
        )
        weights = valid.sum(dim=1).float()
        owner = torch.tensor(owners)
        for track_id in self._tracks:
            mine = owner == track_id
            mean = (probabilities[mine] * weights[mine, None]).sum(0) / weights[mine].sum()
            results[track_id] = (int(weights[mine].sum()), mean.tolist())
        return results

    def close(self) -> list[Path]:
        if self._video is None:
            raise RuntimeError("TrackActionsWriter.close() before open()")
        scored = self.track_probabilities()
        content = {
            "action_names": self.names,
            "tracks": {
                str(track_id): {"detections": count, "probabilities": dict(zip(self.names, values, strict=True))}
                for track_id, (count, values) in sorted(scored.items())
            },
        }
        (path,) = self.outputs(self._video)
        atomic_write_text(path, json.dumps(content, indent=1))
        self._video, self._tracks = None, {}
        return [path]

    def abort(self) -> None:
        self._video, self._tracks = None, {}
