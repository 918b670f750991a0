"""Convert the official (Python 2, chumpy) SMPL pickle into a pickle of plain numpy arrays.

``smplx`` can read the official file only with chumpy importable, and chumpy does not import on
current Pythons. The arrays inside the chumpy objects are plain numpy, so a restricted unpickler
that stands in for chumpy's classes recovers them without executing chumpy code.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from phalp_lightning.errors import UserError
from phalp_lightning.utils.io import atomic_output

_GET_SMPL = (
    "pass the neutral model downloaded after registering at https://smpl.is.tue.mpg.de "
    "(basicModel_neutral_lbs_10_207_0_v1.0.0.pkl)"
)


class SMPLSourceError(UserError, ValueError):
    """The file given to convert-smpl is not the SMPL model pickle."""


SMPL_ARRAY_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")


class _ChumpyArray:
    """Receives the pickled state of a chumpy object; ``value`` is its numpy array."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    @property
    def value(self) -> np.ndarray:
        state = self.state
        if isinstance(state, dict):
            for key in ("x", "a", "r"):
                if key in state and isinstance(state[key], np.ndarray):
                    return state[key]
            arrays = [v for v in state.values() if isinstance(v, np.ndarray)]
            if len(arrays) == 1:
                return arrays[0]
        raise ValueError("a chumpy object in the SMPL pickle holds no single array; is this an SMPL model file?")


class _SMPLUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] == "chumpy":
            return _ChumpyArray
        return super().find_class(module, name)


def _plain(value: Any) -> Any:
    if isinstance(value, _ChumpyArray):
        return np.asarray(value.value)
    if hasattr(value, "toarray") and "scipy.sparse" in type(value).__module__:
        return value
    return value


def convert_smpl_pickle(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Read an official SMPL pickle and write the seven arrays ``smplx`` needs as plain numpy."""
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise SMPLSourceError(f"SMPL source file not found: {source}", _GET_SMPL)
    with source.open("rb") as handle:
        try:
            data = _SMPLUnpickler(handle, encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError) as error:
            raise SMPLSourceError(f"{source} is not a readable SMPL pickle: {error}", _GET_SMPL) from error
    if not isinstance(data, dict):
        raise SMPLSourceError(f"{source} holds a {type(data).__name__}, not the SMPL dict of arrays", _GET_SMPL)
    missing = [key for key in SMPL_ARRAY_KEYS if key not in data]
    if missing:
        raise SMPLSourceError(f"{source} lacks the SMPL arrays {missing}", _GET_SMPL)
    plain = {key: _plain(data[key]) for key in SMPL_ARRAY_KEYS}
    with atomic_output(target) as temporary, temporary.open("wb") as handle:
        pickle.dump(plain, handle, protocol=4)
    return target
