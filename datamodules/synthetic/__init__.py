"""Synthetic data with exact ground truth: rendered walking people, crops, tracklets and videos.

Command line: ``python -m phalp_lightning.datamodules.synthetic {video,crops,tracklets,all} --out DIR``.
"""

from phalp_lightning.datamodules.synthetic.crops import write_synthetic_crops
from phalp_lightning.datamodules.synthetic.tracklets import write_synthetic_tracklets
from phalp_lightning.datamodules.synthetic.video import SyntheticVideo, make_synthetic_video

__all__ = ["SyntheticVideo", "make_synthetic_video", "write_synthetic_crops", "write_synthetic_tracklets"]
