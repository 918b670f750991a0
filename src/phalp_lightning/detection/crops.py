"""Person crops of the detections, HMAR's input (docs/geometry.md, "Person crops").

The implementation lives in :mod:`phalp_lightning.utils.crops`, below both detection and the training
data builders, so that training and predict cut crops with the same code; these are its names.
"""

from phalp_lightning.utils.crops import (
    PersonCrops,
    crop_affine,
    crop_people,
    crop_sampling_axes,
    crop_sampling_grid,
    crop_squares,
    expand_to_aspect,
)
from phalp_lightning.utils.image import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PersonCrops",
    "crop_affine",
    "crop_people",
    "crop_sampling_axes",
    "crop_sampling_grid",
    "crop_squares",
    "expand_to_aspect",
]
