"""Helpers for losses that must mean the same thing on 1 process and on N DDP ranks."""

from __future__ import annotations

import torch
from torch import Tensor


def global_sum(value: Tensor) -> tuple[Tensor, int]:
    """Sum of ``value`` over all DDP ranks (no gradient), and the world size.

    DDP averages the ranks' gradients, so a loss ``sum_r / (global_total / world_size)`` on every rank
    gives exactly the gradient of ``sum / global_total`` on one process with the whole batch, where a
    per-rank normaliser (``sum_r / total_r``) weights the ranks' samples unequally.
    Without an initialised process group this is ``(value, 1)``.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value, 1
    total = value.detach().clone()
    torch.distributed.all_reduce(total)
    return total, torch.distributed.get_world_size()
