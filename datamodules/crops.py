"""CropDataModule: person crops for HMAR (batch keys: ``schema.CROP_BATCH_KEYS``)."""

from __future__ import annotations

from collections.abc import Sequence

from phalp_lightning.datamodules.base import ShardDataModule, ShardSpec
from phalp_lightning.datamodules.shard_decoding import CropDecoder

CROPS_COMMAND = "python -m phalp_lightning.datamodules.synthetic crops --out <data_dir>/synthetic/crops"


class CropDataModule(ShardDataModule):
    """Crop shards -> batches of HMAR input images with 2-D/3-D keypoints, SMPL and camera targets.

    ``image`` is (B, 4, S, S): ImageNet-normalised RGB then the person mask in [0, 255]; stored crops
    of another size are resized to ``crop_size``. Keypoints arrive in crop units ([-0.5, 0.5]).
    See :class:`~phalp_lightning.datamodules.base.ShardDataModule` for the shared arguments.

    Args:
        crop_size: S, the side of the images in a batch (256 for the official HMAR).
    """

    def __init__(
        self,
        train_shards: ShardSpec | None,
        val_shards: ShardSpec | None,
        test_shards: ShardSpec | None = None,
        train_weights: Sequence[float] | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        crop_size: int = 256,
        epoch_length: int | None = None,
        shuffle_buffer: int = 256,
        seed: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        shards_hint: str = CROPS_COMMAND,
    ) -> None:
        super().__init__(
            train_shards, val_shards, test_shards, train_weights, batch_size, num_workers, epoch_length,
            shuffle_buffer, seed, pin_memory, persistent_workers, shards_hint,
        )
        self.crop_size = crop_size

    def train_decoder(self) -> CropDecoder:
        return CropDecoder(self.crop_size)

    def eval_decoder(self) -> CropDecoder:
        return CropDecoder(self.crop_size)
