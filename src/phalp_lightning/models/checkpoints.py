"""The one checkpoint reader: safe (weights-only) loading, one clear error for a bad file.

Every model file of the package (HMAR, the pose transformer, their official releases, our Lightning
checkpoints) goes through :func:`load_checkpoint`:

- torch's weights-only unpickler reads it, with a short allowlist of harmless classes that our own
  Lightning checkpoints and PHALP's official pose-transformer file pickle beside the tensors
  (``functools.partial`` of a torch optimizer or scheduler class, OmegaConf containers);
- a missing, empty, truncated or corrupt file is a :class:`CheckpointError` naming the file;
- a file that needs any other class is refused (it could run code while being read) unless the
  caller passes ``trusted=True`` (``ckpt_trusted=true`` on the command line); the full unpickler is
  then used with a loud warning. There is no silent fallback from the safe reader to the unsafe one.
"""

from __future__ import annotations

import functools
import os
import pickle
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from phalp_lightning.errors import UserError
from phalp_lightning.utils.logging import get_logger

log = get_logger(__name__)

TRUST_HINT = "if you trust where the file comes from, allow the full unpickler with ckpt_trusted=true (Python: trusted=True)"


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file is missing, unreadable, or needs the unsafe unpickler; names the file."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint path names no file."""


@functools.lru_cache(maxsize=1)
def safe_globals() -> tuple[Any, ...]:
    """Classes allowed besides tensors: inert containers and optimiser/scheduler classes (never called with code)."""
    import collections
    import typing

    allowed: list[Any] = [functools.partial, collections.defaultdict, collections.OrderedDict, typing.Any]
    allowed += [dict, list, tuple, set, frozenset, int, float, str, bool, bytes]
    allowed += [
        value
        for module in (torch.optim, torch.optim.lr_scheduler)
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, (torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler))
    ]
    try:
        from omegaconf import DictConfig, ListConfig, base, nodes

        allowed += [DictConfig, ListConfig, base.ContainerMetadata, base.Metadata]
        allowed += [value for value in vars(nodes).values() if isinstance(value, type) and issubclass(value, base.Node)]
    except ImportError:  # pragma: no cover - omegaconf comes with hydra
        pass
    try:
        # Hydra's wrapper of a `_partial_: true` target: a functools.partial subclass (built, never called, here).
        from hydra._internal.target_policy import _DeferredTarget

        allowed.append(_DeferredTarget)
    except ImportError:  # older Hydra pickles plain functools.partial
        pass
    from phalp_lightning.models.schedules import WarmupCosine

    # Our LR-schedule factor, a plain object; checkpoints written before models.schedules name it by
    # its old module, which torch accepts as an (object, name) pair.
    allowed += [WarmupCosine, (WarmupCosine, "phalp_lightning.models.pose_transformer_module.WarmupCosine")]
    return tuple(allowed)


def _unsafe_globals(path: Path, error: BaseException) -> list[str] | None:
    """The classes a file needs beyond the allowlist; None when the file itself is unreadable."""
    if zipfile.is_zipfile(path):
        try:
            needed = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # noqa: BLE001 - any failure to list its contents means the archive is broken
            return None
        allowed = {item[1] if isinstance(item, tuple) else f"{item.__module__}.{item.__qualname__}"
                   for item in safe_globals()}
        # Everything listed is allowed yet loading failed: name them all rather than call the file corrupt.
        return [name for name in needed if name not in allowed] or needed or None
    # Legacy (non-zip) files cannot be listed; torch's message names the refused class.
    message = str(error)
    marker = "Unsupported global: GLOBAL "
    if marker in message:
        return [message.split(marker, 1)[1].split()[0]]
    return None


def _corrupt(what: str, path: Path, error: BaseException) -> CheckpointError:
    reason = " ".join(str(error).split())[:200] or type(error).__name__
    return CheckpointError(
        f"{what} {path}: cannot be read, the file is truncated or corrupt ({type(error).__name__}: {reason})",
        "copy or download it again (or point to another checkpoint)",
    )


def load_checkpoint(
    path: str | os.PathLike[str],
    map_location: str | torch.device | None = "cpu",
    trusted: bool = False,
    what: str = "checkpoint",
    extra_safe_globals: Iterable[Any] = (),
) -> Any:
    """``torch.load`` a model file safely; see the module docstring for the policy.

    Args:
        path: the file.
        map_location: passed to ``torch.load``.
        trusted: allow the full (code-running) unpickler for a file the safe one refuses, with a warning.
        what: what the file is, for messages ("HMAR checkpoint", "pose predictor checkpoint").
        extra_safe_globals: more classes the caller knows to be inert.

    Raises:
        CheckpointError: missing, empty, truncated or corrupt file; or unsafe classes without ``trusted``.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointNotFoundError(f"{what} {path}: no such file", "check the path")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{what} {path}: the file is empty", "copy or download it again")
    try:
        with torch.serialization.safe_globals([*safe_globals(), *extra_safe_globals]):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - classified below: corrupt file or unsafe contents
        failure = error
    needed = _unsafe_globals(path, failure)
    if needed is None:
        raise _corrupt(what, path, failure) from failure
    if not trusted:
        raise CheckpointError(
            f"{what} {path}: holds pickled Python objects the safe loader refuses ({', '.join(needed[:5])})", TRUST_HINT
        ) from failure
    log.warning(
        "UNSAFE LOAD: %s %s is read with the full unpickler (trusted=True), which can run code stored in the file; "
        "it needs %s. Only do this for files from a source you trust.",
        what,
        path,
        ", ".join(needed[:5]),
    )
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except (pickle.UnpicklingError, EOFError, RuntimeError, OSError, ValueError, IndexError, KeyError) as error:
        raise _corrupt(what, path, error) from error
