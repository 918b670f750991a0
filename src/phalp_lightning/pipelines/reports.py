"""The run's video reports across ranks: gathered onto rank 0, saved, and read back by predict.

Spawned DDP ranks cannot hand their :class:`~phalp_lightning.structures.VideoReport` s back in
memory: at the end of a predict run :class:`GatherReports` collects every rank's through the process
group, rank 0 saves them (JSON, atomically), and the launching process reads them with
:func:`load_reports` to summarise the run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback

from phalp_lightning.structures import VideoReport
from phalp_lightning.tracking.callback import TrackerCallback
from phalp_lightning.utils.io import atomic_write_text


class GatherReports(Callback):
    """Saves every rank's reports of ``tracker_callback`` at ``path`` when predict ends."""

    def __init__(self, tracker_callback: TrackerCallback, path: str | Path) -> None:
        self.tracker_callback = tracker_callback
        self.path = Path(path)

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        # Teardown runs on every rank, also on one that had no video (Lightning then skips the predict
        # loop and its hooks), so the collective below cannot leave a rank waiting.
        if stage != "predict":
            return
        self.tracker_callback.finish()  # the last video's report is complete before it is sent
        gathered = gather_objects([report.to_dict() for report in self.tracker_callback.reports])
        if trainer.is_global_zero:
            atomic_write_text(self.path, json.dumps([item for rank in gathered for item in rank]))
        trainer.strategy.barrier("predict-reports")


def gather_objects(value: Any) -> list[Any]:
    """``value`` of every rank, in rank order (``[value]`` without a process group)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def load_reports(path: str | Path) -> list[VideoReport]:
    """The reports :class:`GatherReports` saved at ``path`` (every rank's)."""
    return [VideoReport.from_dict(item) for item in json.loads(Path(path).read_text())]
