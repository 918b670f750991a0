"""The distributed shard stream: which rank and worker reads which sample, epoch by epoch.

:class:`ShardStream` is the IterableDataset both DataModules use. It splits the work over DDP ranks
and DataLoader workers ("slots" = ranks x workers) so that no sample is read by two slots in an
epoch and none is left out:

- training, with at least as many shards as slots: shards are dealt out round robin (after a
  shuffle shared by all slots);
- training with fewer shards than slots, and validation (``balanced_eval``, the default): every slot
  reads all shards and keeps every ``slots``-th sample, so ranks differ by at most one sample.

Training streams are endless: each slot cycles through its own part (reshuffled every pass), several
datasets are mixed by weight, a shuffle buffer decorrelates neighbours, and the epoch ends after
``epoch_length`` samples in total (the same number of batches on every rank, which DDP needs).
Validation streams read every sample exactly once, in order.
"""

from __future__ import annotations

import glob
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from phalp_lightning.datamodules.schema import ShardError, ShardNotFoundError
from phalp_lightning.datamodules.shard_decoding import iterate_shard
from torch.utils.data import IterableDataset

SYNTHETIC_COMMAND = "python -m phalp_lightning.datamodules.synthetic all --out <data_dir>/synthetic"

# ---------------------------------------------------------------------------------------------
# Shard lists
# ---------------------------------------------------------------------------------------------


def expand_shards(spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], hint: str = SYNTHETIC_COMMAND) -> list[str]:
    """Expand a shard spec into existing files.

    Args:
        spec: a path, a brace pattern (``train-{000000..000009}.tar``), a glob, or a list of these.
        hint: the command that creates the shards, quoted in the error.

    Raises:
        FileNotFoundError: a named shard does not exist (the message names it and ``hint``).
    """
    import braceexpand

    items = [spec] if isinstance(spec, str | os.PathLike) else list(spec)
    urls: list[str] = []
    for item in items:
        for expanded in braceexpand.braceexpand(str(item)):
            if any(char in expanded for char in "*?["):
                matches = sorted(glob.glob(expanded))
                if not matches:
                    raise ShardNotFoundError(f"no shard matches {expanded!r}; create shards with: {hint}")
                urls.extend(matches)
            elif not Path(expanded).is_file():
                raise ShardNotFoundError(f"shard not found: {expanded}; create shards with: {hint}")
            else:
                urls.append(expanded)
    if not urls:
        raise ShardNotFoundError(f"the shard spec {spec!r} names no file; create shards with: {hint}")
    return urls

# ---------------------------------------------------------------------------------------------
# Streaming
# ---------------------------------------------------------------------------------------------


@dataclass
class ShardSource:
    """One dataset of a mixture: its shard files and its mixing weight."""

    urls: list[str]
    weight: float = 1.0
    name: str = ""


def distributed_info() -> tuple[int, int]:
    """(rank, world_size) from torch.distributed when initialised, else RANK / WORLD_SIZE, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class ShardStream(IterableDataset):
    """Samples from one or several shard sets, split over ranks and workers (see the module doc).

    Args:
        sources: the datasets (shard lists with mixing weights).
        decode: raw sample -> tensor dict; called with ``(sample, rng)`` when ``pass_rng``.
        train: endless, shuffled, weight-mixed stream of ``epoch_length`` samples per epoch; else
            one ordered pass over every sample.
        epoch_length: total samples per epoch over all ranks (training only).
        batch_size: per-slot sample counts are rounded up to whole batches (so every rank runs the
            same number of full batches).
        num_workers: the DataLoader's worker count (for the length).
        shuffle_buffer: samples held for shuffling, per dataset (training; 0 or 1 disables it);
            shard order is shuffled as well.
        seed: base seed; the stream of a slot depends on (seed, epoch, slot) only.
        rank, world_size: override the detected DDP position (tests, custom launchers).
        pass_rng: call ``decode(sample, rng)`` (for random crops).
        balanced_eval: split validation sample by sample (balanced ranks; every slot reads every
            shard) instead of shard by shard (less reading, ranks may differ by a shard).
    """

    def __init__(
        self,
        sources: Sequence[ShardSource],
        decode: Callable[..., dict[str, torch.Tensor]],
        train: bool,
        epoch_length: int | None = None,
        batch_size: int = 1,
        num_workers: int = 0,
        shuffle_buffer: int = 0,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        pass_rng: bool = False,
        balanced_eval: bool = True,
    ) -> None:
        super().__init__()
        if not sources or any(not source.urls for source in sources):
            raise ValueError("ShardStream needs at least one source with at least one shard")
        if train and (epoch_length is None or epoch_length < 1):
            raise ValueError(f"a training stream needs epoch_length >= 1, got {epoch_length}")
        weights = np.asarray([source.weight for source in sources], np.float64)
        if (weights <= 0).any() or not np.isfinite(weights).all():
            raise ValueError(f"mixing weights must be positive, got {weights.tolist()}")
        self.sources = list(sources)
        self.weights = weights / weights.sum()
        self.decode = decode
        self.train = train
        self.epoch_length = epoch_length
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.pass_rng = pass_rng
        self.balanced_eval = balanced_eval
        self._epoch = 0
        self._iterations = 0
        # Set to an epoch number to replay the same stream every epoch (overfitting a few batches).
        self.fixed_epoch: int | None = None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (reshuffles the training stream); called by :class:`EpochDataLoader`."""
        self._epoch = epoch
        self._iterations = 0

    def _position(self) -> tuple[int, int]:
        rank, world = distributed_info()
        rank = self.rank if self.rank is not None else rank
        world = self.world_size if self.world_size is not None else world
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return rank * workers + worker, world * workers

    def samples_per_slot(self, slots: int) -> int:
        """Training samples each (rank, worker) yields per epoch: a whole number of batches."""
        batches = math.ceil(self.epoch_length / (slots * self.batch_size))
        return max(1, batches) * self.batch_size

    def __len__(self) -> int:
        if not self.train:
            raise TypeError("a validation ShardStream has no fixed length")
        rank, world = distributed_info()
        world = self.world_size if self.world_size is not None else world
        workers = max(1, self.num_workers)
        return self.samples_per_slot(world * workers) * workers

    def _slot_samples(self, source: ShardSource, slot: int, slots: int, rng: np.random.Generator | None) -> Iterator[dict[str, Any]]:
        """One pass over the part of ``source`` that belongs to ``slot``."""
        urls = list(source.urls)
        if rng is not None:
            # The same permutation on every slot (seeded by epoch only), so the parts stay disjoint.
            urls = [urls[i] for i in np.random.default_rng([self.seed, self._current_epoch, 7]).permutation(len(urls))]
        by_shard = len(urls) >= slots and (self.train or not self.balanced_eval)
        if by_shard:
            own = urls[slot::slots]
            if rng is not None:
                own = [own[i] for i in rng.permutation(len(own))]
            for url in own:
                yield from iterate_shard(url)
        else:
            index = 0
            for url in urls:
                for sample in iterate_shard(url):
                    if index % slots == slot:
                        yield sample
                    index += 1

    def _endless(self, source: ShardSource, slot: int, slots: int, rng: np.random.Generator) -> Iterator[dict[str, Any]]:
        """Endless passes over the slot's part, shuffled within each pass (shard order + buffer).

        The buffer is flushed at the end of every pass, so every sample of a pass comes out before
        any sample of the next one: an epoch as long as the data shows each sample exactly once.
        """
        while True:
            produced = False
            buffer: list[dict[str, Any]] = []
            for sample in self._slot_samples(source, slot, slots, rng):
                produced = True
                if self.shuffle_buffer <= 1:
                    yield sample
                    continue
                buffer.append(sample)
                if len(buffer) >= self.shuffle_buffer:
                    pick = int(rng.integers(len(buffer)))
                    buffer[pick], buffer[-1] = buffer[-1], buffer[pick]
                    yield buffer.pop()
            for pick in rng.permutation(len(buffer)):
                yield buffer[pick]
            if not produced:
                raise ShardError(
                    f"dataset {source.name or source.urls[0]!r} has no sample for rank/worker slot {slot} of {slots}: "
                    "write more (smaller) shards or use fewer workers"
                )

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        self._current_epoch = self._epoch + self._iterations if self.fixed_epoch is None else self.fixed_epoch
        self._iterations += 1
        slot, slots = self._position()
        if not self.train:
            for source in self.sources:
                for sample in self._slot_samples(source, slot, slots, None):
                    yield self.decode(sample, None) if self.pass_rng else self.decode(sample)
            return
        rng = np.random.default_rng([self.seed, self._current_epoch, slot])
        streams = [self._endless(source, slot, slots, rng) for source in self.sources]
        for _ in range(self.samples_per_slot(slots)):
            choice = int(rng.choice(len(streams), p=self.weights)) if len(streams) > 1 else 0
            sample = next(streams[choice])
            yield self.decode(sample, rng) if self.pass_rng else self.decode(sample)


class EpochDataLoader(torch.utils.data.DataLoader):
    """A DataLoader that tells its :class:`ShardStream` which epoch starts at each ``iter()``.

    Args:
        epoch_source: returns the epoch that is starting (the trainer's ``current_epoch``), so a run
            resumed from a checkpoint continues the data stream of its epoch; None counts ``iter()`` calls.
    """

    def __init__(self, *args: Any, epoch_source: Callable[[], int] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._epoch = 0
        self._epoch_source = epoch_source

    def __iter__(self):
        epoch = self._epoch_source() if self._epoch_source is not None else self._epoch
        if isinstance(self.dataset, ShardStream):
            self.dataset.set_epoch(epoch)
        self._epoch = epoch + 1
        return super().__iter__()
