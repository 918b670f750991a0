"""Synthetic data with exact ground truth, all in one place.

``mannequin`` (the body-model asset set), ``people``, ``video``, ``crop_shards``, ``tracklets`` and
``sequences`` (random ground-truth / tracker-output box pairs for the metrics).

Command line: ``python -m phalp_lightning.datamodules.synthetic {video,crops,tracklets,all} --out DIR``.
"""

from phalp_lightning.datamodules.synthetic.crop_shards import write_synthetic_crops
from phalp_lightning.datamodules.synthetic.tracklets import write_synthetic_tracklets
from phalp_lightning.datamodules.synthetic.video import SyntheticVideo, make_synthetic_video

__all__ = ["SyntheticVideo", "make_synthetic_video", "write_synthetic_crops", "write_synthetic_tracklets"]
