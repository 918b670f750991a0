"""What ``predict.py`` and ``train.py`` check (or fetch) before a run starts.

A configured file that carries the name of a released file (``ckpt=.../hmar_v2_weights.pth``,
``pose_predictor_ckpt=.../pose_predictor.pth``, ``detector.weights=.../model_final_f05665.pkl``,
``model.net.mean_std=.../mean_std.npy``, ...), or a released file a detector reads from the assets
folder (``detector=vitdet`` with ``detector.weights=null``), and does not exist stops the run with
one line naming the download command. With ``assets.download=true`` (off by default) such files, and the groups the
run always needs (the ``3d`` side files), are fetched first instead; nothing is fetched otherwise.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig

from phalp_lightning.assets import ASSETS, AssetMissingError, asset_path
from phalp_lightning.assets.remote import REMOTE_FILES, RemoteFile, download_command, remote_for, select

log = logging.getLogger(__name__)


def _released_names() -> dict[str, RemoteFile]:
    """File name -> published file, under its saved name and its published name."""
    names: dict[str, RemoteFile] = {}
    for remote in REMOTE_FILES:
        names[Path(ASSETS[remote.asset].relpath).name] = remote
        names[Path(remote.mirror_path).name] = remote
    return names


def _string_leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(dotted key, value) for every string value; values that do not resolve are skipped."""
    if isinstance(node, DictConfig):
        keys = [str(key) for key in node.keys()]
    elif isinstance(node, ListConfig):
        keys = [str(index) for index in range(len(node))]
    else:
        return
    for key in keys:
        if prefix in ("", "hydra") and key == "hydra":
            continue
        try:
            value = node[int(key)] if isinstance(node, ListConfig) else node[key]
        except Exception:  # noqa: BLE001 - unresolvable or missing (???) values are not file paths yet
            continue
        dotted = f"{prefix}.{key}" if prefix else key
        if isinstance(value, (DictConfig, ListConfig)):
            yield from _string_leaves(value, dotted)
        elif isinstance(value, str):
            yield dotted, value


def referenced_released_files(cfg: DictConfig) -> list[tuple[str, Path, RemoteFile]]:
    """(config key, path, published file) for each configured path named like a released file."""
    names = _released_names()
    found = []
    for key, value in _string_leaves(cfg):
        if "://" in value or not value.strip():
            continue
        remote = names.get(Path(value).name)
        if remote is not None:
            found.append((key, Path(value).expanduser(), remote))
    # A detector whose weights are null reads a released file from the assets folder (detector=vitdet).
    detector = cfg.get("detector")
    if isinstance(detector, DictConfig) and detector.get("weights_asset") and not detector.get("weights"):
        remote = remote_for(str(detector.weights_asset))
        if remote is not None:
            root = (cfg.get("paths") or {}).get("assets_dir")
            found.append(("detector.weights", asset_path(remote.asset, root), remote))
    return found


def prepare_run_assets(cfg: DictConfig, groups: tuple[str, ...] = ("3d",)) -> None:
    """Stop with the download command for a missing released file, or fetch with ``assets.download=true``.

    Args:
        cfg: the run's composed config (reads ``assets.download``, ``assets.base_url``, ``paths.assets_dir``).
        groups: groups the run always needs; fetched only with ``assets.download=true``.
    """
    settings = cfg.get("assets") or {}
    root = (cfg.get("paths") or {}).get("assets_dir")
    missing = [(key, path, remote) for key, path, remote in referenced_released_files(cfg) if not path.is_file()]
    # Processes started together by a launcher (torchrun, SLURM) would write the same files: only
    # the first downloads. Lightning's own launcher starts the other ranks after this has run.
    first_process = all(os.environ.get(name, "0") == "0" for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID"))
    if not (settings.get("download", False) and first_process):
        if missing:
            key, path, remote = missing[0]
            saved = asset_path(remote.asset, root)
            where = "" if path == saved else f" (it saves it as {saved}; point {key} there)"
            raise AssetMissingError(
                f"{key}={path}: no such file; it is a released file ({ASSETS[remote.asset].description})",
                f"run `{download_command(remote.group)}`{where}, or add assets.download=true to fetch it before "
                "the run (with a multi-process launcher, download once beforehand)",
            )
        return
    from phalp_lightning.pipelines.assets.download import (
        DownloadOptions,
        check_for,
        download_assets,
        download_file,
        progress_display,
    )

    base_url = settings.get("base_url")
    options = DownloadOptions(progress=bool(cfg.get("progress_bar", True)))
    download_assets(select(list(groups)), root, base_url, options=options, report=log.info)
    with progress_display(options.progress) as progress:
        for key, path, remote in missing:
            if not path.is_file():  # the groups may have brought it
                outcome = download_file(remote.url(base_url), path, check_for(remote, root), options=options, progress=progress)
                log.info("%s=%s: %s", key, path, outcome)
