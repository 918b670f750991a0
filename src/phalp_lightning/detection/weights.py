"""Reading detector weight files safely, and checking that they fit the network before loading them.

Detector weights come in three layouts: detectron2's model-zoo pickles (``.pkl``: ``{'model': {name:
numpy array}, '__author__': ...}``, e.g. ViTDet-H's ``model_final_f05665.pkl``), detectron2 training
outputs (``.pth``: ``{'model': state_dict, ...}``) and plain torch state dicts (torchvision). None of
them goes through a code-running unpickler unless the user says the file is trusted:

- ``.pkl``: the restricted unpickler of :mod:`phalp_lightning.assets.pickles` (arrays and containers);
- torch files: ``torch.load(weights_only=True)``;
- a file either reader refuses is refused with one line, unless ``trusted=True`` (``ckpt_trusted=true``),
  which reads it with the full unpickler after a loud warning. There is no silent fallback.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from phalp_lightning.assets.pickles import PickleRefusedError, safe_pickle_load
from phalp_lightning.errors import UserError, one_line
from phalp_lightning.utils.logging import get_logger

log = get_logger(__name__)

TRUST_HINT = "if you trust where the file comes from, allow the full unpickler with ckpt_trusted=true"


class DetectorWeightsError(UserError, ValueError):
    """A detector weights file is unreadable, refused as unsafe, or does not fit the network."""


def read_weights(path: str | os.PathLike[str], key: str = "detector.weights", trusted: bool = False) -> Any:
    """The content of a detector weights file, read without running code from it (see module docstring).

    Args:
        path: the file (``.pkl``: a pickle of arrays; anything else: a torch file).
        key: the config key that named the file, for messages.
        trusted: read a file the safe readers refuse with the full unpickler (warns).

    Raises:
        DetectorWeightsError: missing, empty, corrupt, or refused file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DetectorWeightsError(f"{key}={path}: no such file", "check the path")
    if path.stat().st_size == 0:
        raise DetectorWeightsError(f"{key}={path}: the file is empty", "copy or download it again")
    is_pickle = path.suffix == ".pkl"
    try:
        if is_pickle:
            return safe_pickle_load(path)
        return torch.load(path, map_location="cpu", weights_only=True)
    except PickleRefusedError as error:
        refused: BaseException = error
        needed = error.global_name
    except pickle.UnpicklingError as error:
        # torch's weights-only reader says which global it refused; anything else is a damaged file.
        marker = "Unsupported global: GLOBAL "
        if marker not in str(error):
            raise _corrupt(key, path, error) from error
        refused, needed = error, str(error).split(marker, 1)[1].split()[0]
    except Exception as error:  # noqa: BLE001 - any other reader failure means a truncated or foreign file
        raise _corrupt(key, path, error) from error
    if not trusted:
        raise DetectorWeightsError(
            f"{key}={path}: holds pickled Python objects the safe reader refuses ({needed})", TRUST_HINT
        ) from refused
    log.warning(
        "UNSAFE LOAD: %s=%s is read with the full unpickler (ckpt_trusted=true), which can run code stored in "
        "the file; it needs %s. Only do this for files from a source you trust.",
        key,
        path,
        needed,
    )
    try:
        if is_pickle:
            with path.open("rb") as handle:
                return pickle.load(handle, encoding="latin1")  # noqa: S301 - the user marked the file trusted
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001
        raise _corrupt(key, path, error) from error


def _corrupt(key: str, path: Path, error: BaseException) -> DetectorWeightsError:
    reason = one_line(str(error))[:200] or type(error).__name__
    return DetectorWeightsError(
        f"{key}={path}: cannot be read, the file is truncated, corrupt or not a weights file ({type(error).__name__}: {reason})",
        "copy or download it again (or point to another file)",
    )


def as_tensors(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """A state dict with numpy arrays (detectron2 pickles) as tensors, sharing their memory."""
    # Not np.ascontiguousarray: it turns 0-d arrays (BatchNorm's num_batches_tracked) into 1-d ones.
    return {
        name: torch.from_numpy(value if value.flags.c_contiguous else value.copy()) if isinstance(value, np.ndarray) else value
        for name, value in state.items()
    }


def layout_mismatch(
    state: Mapping[str, Any], expected: Mapping[str, tuple[int, ...]], ignore_missing: tuple[str, ...] = ()
) -> str | None:
    """Why ``state`` (name -> array/tensor) does not fit ``expected`` (name -> shape), or None when it does.

    Names present in the file but not in the network are tolerated (detectron2 skips them); missing
    names and any shape difference are not, except names that are, or end in ``.`` + , an entry of
    ``ignore_missing``.
    """

    def tolerated(name: str) -> bool:
        return any(name == entry or name.endswith("." + entry) for entry in ignore_missing)

    missing = [name for name in expected if name not in state and not tolerated(name)]
    shapes = [
        f"{name} {tuple(state[name].shape)} instead of {tuple(shape)}"
        for name, shape in expected.items()
        if name in state and hasattr(state[name], "shape") and tuple(state[name].shape) != tuple(shape)
    ]
    if not missing and not shapes:
        return None
    parts = []
    if missing:
        parts.append(f"{len(missing)} of the network's {len(expected)} parameters are missing (e.g. {', '.join(missing[:3])})")
    if shapes:
        parts.append(f"{len(shapes)} have another shape (e.g. {'; '.join(shapes[:2])})")
    return "; ".join(parts)
