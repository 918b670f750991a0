"""What must mean the same thing on 1 process and on N DDP ranks: losses, and each rank's log file."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

# Where a process finds its rank before any process group exists, in Lightning's order
# (lightning.fabric.utilities.rank_zero): torchrun sets RANK, Lightning's own relaunch of the
# script sets LOCAL_RANK in each child, srun sets SLURM_PROCID, jsrun JSM_NAMESPACE_RANK.
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def global_sum(value: Tensor) -> tuple[Tensor, int]:
    """Sum of ``value`` over all DDP ranks (no gradient), and the world size.

    DDP averages the ranks' gradients, so a loss ``sum_r / (global_total / world_size)`` on every rank
    gives exactly the gradient of ``sum / global_total`` on one process with the whole batch, where a
    per-rank normaliser (``sum_r / total_r``) weights the ranks' samples unequally.
    Without an initialised process group this is ``(value, 1)``.
    """
    import torch

    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value, 1
    total = value.detach().clone()
    torch.distributed.all_reduce(total)
    return total, torch.distributed.get_world_size()


def process_rank(environ: Mapping[str, str] | None = None) -> int:
    """This process's rank as the launcher's environment says (0 when nothing says otherwise)."""
    environ = os.environ if environ is None else environ
    for name in RANK_VARIABLES:
        if environ.get(name):
            return int(environ[name])
    return 0


def rank_log_path(filename: str | os.PathLike[str], rank: int) -> Path:
    """``<task>.log`` on rank 0, ``<task>_rank<r>.log`` on rank r: one log per process, named after the task."""
    path = Path(filename)
    return path if rank == 0 else path.with_name(f"{path.stem}_rank{rank}{path.suffix}")


class RankFileHandler(logging.FileHandler):
    """Hydra's per-run log file, one per DDP process, each named after the task that runs.

    Lightning's ``strategy=ddp`` relaunches the script for ranks 1.. with ``hydra.job.name=
    train_ddp_process_<r>``, which Hydra's default handler turns into ``train_ddp_process_<r>.log`` even in
    a predict run; ``configs/hydra/default.yaml`` names the file after ``task_name`` and this class adds
    the rank. ``delay``: the file appears with its first record, so a run with logging disabled leaves none.
    """

    def __init__(self, filename: str | os.PathLike[str], mode: str = "a", encoding: str | None = None, delay: bool = True) -> None:
        super().__init__(rank_log_path(filename, process_rank()), mode=mode, encoding=encoding, delay=delay)
