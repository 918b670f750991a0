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
