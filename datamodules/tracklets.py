"""TrackletDataModule: pose/location windows for the pose transformer (``schema.TRACKLET_BATCH_KEYS``)."""

from __future__ import annotations

from collections.abc import Sequence

from phalp_lightning.datamodules.base import ShardDataModule, ShardSpec
from phalp_lightning.datamodules.shard_decoding import TrackletDecoder

TRACKLETS_COMMAND = "python -m phalp_lightning.datamodules.synthetic tracklets --out <data_dir>/synthetic/tracklets"


class TrackletDataModule(ShardDataModule):
    """Tracklet shards -> batches ``pose (B,T,229)``, ``location (B,T,99)``, ``time (B,T)``, ``valid (B,T)``.

    Values are in natural units (the LightningModule normalises). See
    :class:`~phalp_lightning.datamodules.base.ShardDataModule` for the shared arguments.

    Args:
        sequence_length: T of a batch; longer windows are cropped (at random in training, from the
            start in validation), shorter ones padded with ``valid = False``. None keeps the stored T
            (then all shards must share it).
        load_appearance: add ``appearance`` (B,T,4096); every sample must carry it.
        load_actions: add ``actions`` (B,T,num_actions) and ``has_actions`` (B,).
        num_actions: action vocabulary size (AVA: 80).
    """

    def __init__(
        self,
        train_shards: ShardSpec | None,
        val_shards: ShardSpec | None,
        test_shards: ShardSpec | None = None,
        train_weights: Sequence[float] | None = None,
        batch_size: int = 16,
        num_workers: int = 0,
        sequence_length: int | None = None,
        load_appearance: bool = False,
        load_actions: bool = False,
        num_actions: int = 80,
        epoch_length: int | None = None,
        shuffle_buffer: int = 256,
        seed: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        shards_hint: str = TRACKLETS_COMMAND,
    ) -> None:
        super().__init__(
            train_shards, val_shards, test_shards, train_weights, batch_size, num_workers, epoch_length,
            shuffle_buffer, seed, pin_memory, persistent_workers, shards_hint,
        )
        self.sequence_length = sequence_length
        self.load_appearance = load_appearance
        self.load_actions = load_actions
        self.num_actions = num_actions

    @property
    def pass_rng(self) -> bool:
        return True

    def _decoder(self, random_crop: bool) -> TrackletDecoder:
        return TrackletDecoder(self.sequence_length, random_crop, self.load_appearance, self.load_actions, self.num_actions)

    def train_decoder(self) -> TrackletDecoder:
        return self._decoder(random_crop=True)

    def eval_decoder(self) -> TrackletDecoder:
        return self._decoder(random_crop=False)
