"""The restricted unpickler for data pickles: numpy arrays, scipy sparse matrices and containers only.

Released data files (SMPL side files, AVA label maps, detectron2 weight pickles) are Python pickles,
which can run code while being read. :func:`safe_pickle_load` builds only the inert objects such
files need and raises :class:`PickleRefusedError` (naming the class) for anything else, before that
class is imported or called.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

# Globals a data pickle may name: array reconstruction, dtypes, sparse matrices, plain containers.
_SAFE_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
    ("collections", "defaultdict"),
    ("copyreg", "_reconstructor"),
    ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
    ("builtins", "object"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "slice"),
    ("builtins", "complex"),
    ("builtins", "bytearray"),
    ("builtins", "dict"),
    ("builtins", "list"),
    ("builtins", "tuple"),
}
_SAFE_NUMPY = {"_reconstruct", "scalar", "_frombuffer"}
_SAFE_SPARSE = {"csc_matrix", "csr_matrix", "coo_matrix"}


class PickleRefusedError(pickle.UnpicklingError):
    """The pickle names a class a data file should not need; nothing of it was imported or run."""

    def __init__(self, module: str, name: str, message: str) -> None:
        super().__init__(message)
        self.global_name = f"{module}.{name}"


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that builds numpy arrays, scipy sparse matrices and containers, and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        top = module.split(".")[0]
        allowed = (
            (module, name) in _SAFE_GLOBALS
            # numpy 1 and 2 spell the array-rebuilding helpers' modules differently (core/_core).
            or (top == "numpy" and (name in _SAFE_NUMPY or module == "numpy.dtypes"))
            or (module.startswith("scipy.sparse") and name in _SAFE_SPARSE)
        )
        if not allowed:
            if top == "chumpy":
                raise PickleRefusedError(
                    module,
                    name,
                    "an official SMPL pickle with chumpy objects; convert it once with "
                    "`python -m phalp_lightning.assets convert-smpl <that file>`",
                )
            raise PickleRefusedError(
                module, name, f"the pickle refers to {module}.{name}, which a data file should not need (not loaded: it could run code)"
            )
        return super().find_class(module, name)


def safe_pickle_load(path: str | os.PathLike[str]) -> Any:
    """Load a data pickle (Python 2 ones too) without running code from it."""
    with Path(path).open("rb") as handle:
        return SafeUnpickler(handle, encoding="latin1").load()
