"""Session fixtures with small synthetic data sets; import the ones you need into a test module:

    from helpers import synthetic_data
    synthetic_video = synthetic_data.synthetic_video

All are deterministic (fixed seeds) and rendered with the generated body model (``synthetic_assets``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest

VIDEO_KWARGS = dict(num_frames=6, num_people=3, height=256, width=384, seed=7)


@lru_cache(maxsize=2)
def body_model_handle(assets_root: str):
    """The generator's body-model handle on an assets folder (loaded once per session)."""
    from phalp_lightning.datamodules.synthetic.people import BodyModelHandle

    return BodyModelHandle(assets_root)


@pytest.fixture(scope="session")
def synthetic_video(tmp_path_factory: pytest.TempPathFactory, synthetic_assets: Path):
    """A 6-frame, 3-person, 256 x 384 video with MOT and PoseTrack ground truth."""
    from phalp_lightning.datamodules.synthetic import make_synthetic_video

    body = body_model_handle(str(synthetic_assets))
    return make_synthetic_video(tmp_path_factory.mktemp("synthetic_video"), body_model=body, **VIDEO_KWARGS)


CROP_KWARGS = dict(num_train=24, num_val=8, crop_size=64, shard_size=6, seed=3)
TRACKLET_KWARGS = dict(num_train_tracks=8, num_val_tracks=4, track_length=24, window=8, shard_size=10, seed=5)


@pytest.fixture(scope="session")
def synthetic_crop_shards(tmp_path_factory: pytest.TempPathFactory, synthetic_assets: Path) -> dict:
    """Crop shards at 64 px: 24 train samples in 4 shards, 8 val samples in 2 shards (manifest dict)."""
    from phalp_lightning.datamodules.synthetic import write_synthetic_crops

    body = body_model_handle(str(synthetic_assets))
    return write_synthetic_crops(tmp_path_factory.mktemp("synthetic_crops"), body_model=body, **CROP_KWARGS)


@pytest.fixture(scope="session")
def synthetic_tracklet_shards(tmp_path_factory: pytest.TempPathFactory, synthetic_assets: Path) -> dict:
    """Tracklet shards: 8 tracks x 5 windows of 8 frames for training (4 shards), 4 x 3 for validation."""
    from phalp_lightning.datamodules.synthetic import write_synthetic_tracklets

    body = body_model_handle(str(synthetic_assets))
    return write_synthetic_tracklets(tmp_path_factory.mktemp("synthetic_tracklets"), body_model=body, **TRACKLET_KWARGS)
