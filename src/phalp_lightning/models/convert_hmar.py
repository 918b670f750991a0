"""Official HMAR weights -> phalp_lightning, with one explicit key map and a strict load.

The official file (``hmar_v2_weights.pth``) is ``{"model": flat_state_dict, ...}``. PHALP's own
loader (docs/hmar.md, Official weights) keeps the entries whose key contains ``encoding_head``,
``texture_head``, ``backbone`` or ``smplx_head``, drops the first 5 characters of the key (a prefix,
almost certainly ``"HMAR."``), replaces ``smplx`` with ``smpl``, keeps the first occurrence of each
resulting key and loads non-strictly. :func:`map_official_state_dict` applies exactly that map; the
result is then checked key by key and loaded with ``strict=True``. The only keys allowed to be
absent are the ones the released code leaves possibly missing from the file (:data:`FILLABLE_KEYS`); they
are taken from the freshly built network and reported.

Command line::

    python -m phalp_lightning.models.convert_hmar hmar_v2_weights.pth hmar_v2.ckpt [--assets-dir DIR]
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from phalp_lightning.errors import UserError, exit_on_user_error
from phalp_lightning.models.checkpoints import load_checkpoint
from phalp_lightning.utils.io import atomic_output

log = logging.getLogger(__name__)

OFFICIAL_HEADS = ("encoding_head", "texture_head", "backbone", "smplx_head")
OFFICIAL_PREFIX_LENGTH = 5
# Keys the released file may lack (docs/hmar.md, Official weights). They carry nothing the official
# network uses from the file: conv1m is unused with mask_type "feat", the init_* buffers are the mean
# parameters read from smpl_mean_params.npz, and num_batches_tracked is ignored in eval.
FILLABLE_KEYS = re.compile(
    r"^(backbone\.conv1m\.weight|smpl_head\.init_(body_pose|betas|cam)|.*\.num_batches_tracked)$"
)
# Marker of checkpoints written by this package (converter or training).
CONFIG_KEY = "hmar_config"
STATE_PREFIX = "net."


class HMARCheckpointError(UserError, ValueError):
    """A checkpoint's keys or shapes do not match the HMAR network; the message lists them."""


def map_official_state_dict(official: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Apply PHALP's HMAR key map.

    Args:
        official: the ``"model"`` entry of the official file (flat state dict).

    Returns:
        (mapped state dict, keys ignored because they name none of the four HMAR heads; PHALP
        ignores them too).
    """
    mapped: dict[str, Tensor] = {}
    ignored: list[str] = []
    for key, value in official.items():
        if not any(head in key for head in OFFICIAL_HEADS):
            ignored.append(key)
            continue
        mapped.setdefault(key[OFFICIAL_PREFIX_LENGTH:].replace("smplx", "smpl"), value)
    return mapped, ignored


def _summarise(keys: list[str], limit: int = 25) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def check_state_dict(
    state_dict: Mapping[str, Tensor],
    reference: Mapping[str, Tensor],
    source: str,
    fillable: re.Pattern[str] | None = None,
) -> list[str]:
    """Compare keys and shapes with the network's; raise :class:`HMARCheckpointError` on any mismatch.

    Args:
        state_dict: candidate state dict (already mapped to HMAR names).
        reference: the network's own ``state_dict()``.
        source: file name used in the error message.
        fillable: pattern of keys that may be missing (they are returned, not raised).

    Returns:
        The missing keys that ``fillable`` allows.
    """
    missing = [key for key in reference if key not in state_dict]
    allowed = [key for key in missing if fillable is not None and fillable.match(key)]
    missing = [key for key in missing if key not in allowed]
    unexpected = [key for key in state_dict if key not in reference]
    mismatched = [
        f"{key} (file {tuple(state_dict[key].shape)}, network {tuple(reference[key].shape)})"
        for key in state_dict
        if key in reference and tuple(state_dict[key].shape) != tuple(reference[key].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_summarise(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_summarise(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): {_summarise(mismatched)}")
    if problems:
        raise HMARCheckpointError(f"{source}: state dict does not match HMAR: " + "; ".join(problems))
    return allowed


def load_official_state_dict(
    net: nn.Module, official: Mapping[str, Any], source: str = "<official checkpoint>"
) -> list[str]:
    """Load an official HMAR file's contents into ``net`` strictly.

    Args:
        net: an :class:`~phalp_lightning.models.components.hmar.HMAR`.
        official: the loaded official file (a dict with a ``"model"`` entry).
        source: file name for messages.

    Returns:
        The keys that were absent from the file and kept from ``net`` (see :data:`FILLABLE_KEYS`).
    """
    if not isinstance(official, Mapping) or "model" not in official:
        found = sorted(official) if isinstance(official, Mapping) else type(official).__name__
        raise HMARCheckpointError(
            f"{source}: not an official HMAR file (expected a dict with a 'model' entry, found {found})"
        )
    mapped, ignored = map_official_state_dict(official["model"])
    if ignored:
        log.info(
            "%s: ignoring %d key(s) outside the HMAR heads, as PHALP does: %s",
            source,
            len(ignored),
            _summarise(ignored),
        )
    reference = net.state_dict()
    filled = check_state_dict(mapped, reference, source, FILLABLE_KEYS)
    if filled:
        log.warning(
            "%s: %d key(s) absent from the file, kept from the built network: %s",
            source,
            len(filled),
            _summarise(filled),
        )
        mapped.update({key: reference[key] for key in filled})
    net.load_state_dict(mapped, strict=True)
    return filled


def torch_load(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu", trusted: bool = False
) -> Any:
    """Read an HMAR file with the package's one checkpoint reader (safe first; see ``models.checkpoints``)."""
    return load_checkpoint(path, map_location=map_location, trusted=trusted, what="HMAR checkpoint")


def lightning_checkpoint(net: nn.Module, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A checkpoint dict that ``HMARModule.load_from_checkpoint`` and ``load_hmar`` accept."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        lightning_version = version("lightning")
    except PackageNotFoundError:  # pragma: no cover - lightning is a dependency
        lightning_version = "2.0.0"
    config = dict(net.config)  # type: ignore[attr-defined]
    return {
        "state_dict": {STATE_PREFIX + key: value for key, value in net.state_dict().items()},
        CONFIG_KEY: config,
        "hyper_parameters": {"net": config},
        "pytorch-lightning_version": lightning_version,
        "epoch": 0,
        "global_step": 0,
        **dict(extra or {}),
    }


def save_atomic(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` to a temporary file, then rename (no half-written checkpoints)."""
    with atomic_output(path) as temporary:
        torch.save(obj, temporary)


def convert(
    official_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    assets_dir: str | None = None,
    trusted: bool = False,
) -> list[str]:
    """Convert the official file into a Lightning checkpoint; returns the filled keys."""
    from phalp_lightning.models.components.hmar import HMAR

    official = torch_load(official_path, trusted=trusted)  # a missing or unreadable file fails before the network is built
    net = HMAR(assets_dir=assets_dir)
    filled = load_official_state_dict(net, official, source=str(official_path))
    extra = {"phalp_lightning_conversion": {"source": Path(official_path).name, "filled_keys": filled}}
    save_atomic(lightning_checkpoint(net, extra), out_path)
    return filled


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        description="Convert official hmar_v2_weights.pth into a phalp_lightning checkpoint."
    )
    parser.add_argument("official", help="official HMAR weights (dict with a 'model' entry)")
    parser.add_argument("output", help="output checkpoint (.ckpt)")
    parser.add_argument(
        "--assets-dir", default=None, help="assets root (default: $PHALP_ASSETS or ~/.cache/phalp_lightning)"
    )
    parser.add_argument(
        "--trusted", action="store_true", help="allow the full (code-running) unpickler for a file the safe reader refuses"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    with exit_on_user_error():
        filled = convert(args.official, args.output, args.assets_dir, trusted=args.trusted)
    print(
        f"wrote {args.output}"
        + (f" ({len(filled)} key(s) absent from the file kept from the network)" if filled else "")
    )


if __name__ == "__main__":
    main()
