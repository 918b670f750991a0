"""The shared LightningDataModule over webdataset shards (crops and tracklets subclass it)."""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
from phalp_lightning.datamodules.shard_decoding import count_shard_samples
from phalp_lightning.datamodules.shard_streams import (
    SYNTHETIC_COMMAND,
    EpochDataLoader,
    ShardSource,
    ShardStream,
    distributed_info,
    expand_shards,
)

log = logging.getLogger(__name__)

ShardSpec = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def count_samples(urls: Sequence[str]) -> int:
    """Number of samples in tar shards (reads only the member headers; a truncated shard is named)."""
    return count_shard_samples(urls)


class ShardDataModule(L.LightningDataModule, ABC):
    """Train/val(/test) loaders over shard sets, mixed by weight, split over ranks and workers.

    Args:
        train_shards: one shard spec (path, brace pattern, glob) or a list of specs, one per dataset
            to mix; None disables training data.
        val_shards: spec or list of specs, read in full, in order, once per validation.
        test_shards: like ``val_shards`` for ``trainer.test`` (None: use ``val_shards``).
        train_weights: mixing weight per training dataset (None: equal).
        batch_size: samples per batch on each rank.
        num_workers: DataLoader workers per rank.
        epoch_length: training samples per epoch over all ranks (None: the training set's size).
        shuffle_buffer: samples kept for shuffling in training.
        seed: seed of shard order, mixing and shuffling (varied per epoch and per rank/worker).
        pin_memory, persistent_workers: passed to the DataLoaders.
        shards_hint: the command that writes missing shards, quoted in the error.
    """

    def __init__(
        self,
        train_shards: ShardSpec | None,
        val_shards: ShardSpec | None,
        test_shards: ShardSpec | None = None,
        train_weights: Sequence[float] | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        epoch_length: int | None = None,
        shuffle_buffer: int = 256,
        seed: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        shards_hint: str = SYNTHETIC_COMMAND,
    ) -> None:
        super().__init__()
        self.train_shards = train_shards
        self.val_shards = val_shards
        self.test_shards = test_shards
        self.train_weights = list(train_weights) if train_weights is not None else None
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.epoch_length = epoch_length
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.shards_hint = shards_hint
        self.train_dataset: ShardStream | None = None
        self.val_dataset: ShardStream | None = None
        self.test_dataset: ShardStream | None = None

    @abstractmethod
    def train_decoder(self) -> Callable[..., dict[str, Any]]:
        """Raw training sample -> tensor dict (called as ``decode(sample, rng)`` when :attr:`pass_rng`)."""

    @abstractmethod
    def eval_decoder(self) -> Callable[..., dict[str, Any]]:
        """Raw validation/test sample -> tensor dict (deterministic)."""

    @property
    def pass_rng(self) -> bool:
        """Whether the decoders take an rng (random crops)."""
        return False

    @staticmethod
    def _specs(spec: ShardSpec) -> list[ShardSpec]:
        """A list of dataset specs: a plain string or path is one dataset."""
        if isinstance(spec, str | os.PathLike):
            return [spec]
        return list(spec)

    def _sources(self, spec: ShardSpec, weights: Sequence[float] | None = None) -> list[ShardSource]:
        specs = self._specs(spec)
        if weights is not None and len(weights) != len(specs):
            raise ValueError(f"train_weights has {len(weights)} entries for {len(specs)} training datasets {specs}")
        return [
            ShardSource(expand_shards(item, self.shards_hint), float(weights[i]) if weights else 1.0, str(item))
            for i, item in enumerate(specs)
        ]

    def _rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return trainer.global_rank, trainer.world_size
        return distributed_info()

    def setup(self, stage: str | None = None) -> None:
        """Resolve the shard lists (missing shards raise here, naming the file and the command)."""
        rank, world = self._rank_world()
        if stage in (None, "fit") and self.train_shards is not None and self.train_dataset is None:
            sources = self._sources(self.train_shards, self.train_weights)
            epoch_length = self.epoch_length or count_samples([url for source in sources for url in source.urls])
            self.train_dataset = ShardStream(
                sources, self.train_decoder(), train=True, epoch_length=epoch_length, batch_size=self.batch_size,
                num_workers=self.num_workers, shuffle_buffer=self.shuffle_buffer, seed=self.seed,
                rank=rank, world_size=world, pass_rng=self.pass_rng,
            )
            trainer = getattr(self, "trainer", None)
            if trainer is not None and getattr(trainer, "overfit_batches", 0):
                # Overfitting means the same few batches every epoch: stop reshuffling.
                self.train_dataset.fixed_epoch = 0
            log.info("training on %s (epoch of %d samples over %d rank(s))", [s.name for s in sources], epoch_length, world)
        if stage in (None, "fit", "validate") and self.val_shards is not None and self.val_dataset is None:
            self.val_dataset = self._eval_stream(self.val_shards, rank, world)
        if stage in (None, "test") and self.test_dataset is None and (self.test_shards or self.val_shards) is not None:
            self.test_dataset = self._eval_stream(self.test_shards or self.val_shards, rank, world)

    def _eval_stream(self, spec: ShardSpec, rank: int, world: int) -> ShardStream:
        return ShardStream(
            self._sources(spec), self.eval_decoder(), train=False, batch_size=self.batch_size,
            num_workers=self.num_workers, seed=self.seed, rank=rank, world_size=world, pass_rng=self.pass_rng,
        )

    def _loader(self, dataset: ShardStream | None, name: str, epoch_source: Callable[[], int] | None = None) -> EpochDataLoader:
        if dataset is None:
            raise RuntimeError(f"no {name} data: set {name}_shards and call setup() first")
        return EpochDataLoader(
            dataset, batch_size=self.batch_size, num_workers=self.num_workers, pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers, epoch_source=epoch_source,
        )

    def _trainer_epoch(self) -> int:
        # What Lightning hands a sampler's set_epoch; unlike current_epoch it already counts an epoch
        # whose end-of-epoch checkpoint a run resumes from.
        return self.trainer.fit_loop.epoch_progress.current.processed

    def train_dataloader(self) -> EpochDataLoader:
        # Under a trainer the stream follows its epoch: a resumed run reads the epoch it resumes in.
        trainer = getattr(self, "trainer", None)
        return self._loader(self.train_dataset, "train", self._trainer_epoch if trainer is not None else None)

    def val_dataloader(self) -> EpochDataLoader:
        return self._loader(self.val_dataset, "val")

    def test_dataloader(self) -> EpochDataLoader:
        return self._loader(self.test_dataset, "test")
