"""Load the official PHALP pose predictor (or our own checkpoint) into :class:`PoseTransformer`.

Key map (docs/pose_transformer.md, Key map). The official ``pose_predictor.pth`` (``pose_predictor_40006.ckpt``)
is a Lightning checkpoint whose ``state_dict`` holds the network under the prefix ``encoder.``:

    encoder.<name>  ->  <name>        (only the *leading* "encoder." is removed)
    anything else   ->  dropped       (e.g. a training module's own smpl.* buffers)
    encoder.action_head_kinetics.*  -> dropped with a warning (no such head in PHALP's network)

PHALP master renames with ``k.replace("encoder.", "")``, which also turns
``encoder.pose_shape_encoder.0.weight`` into ``pose_shape_0.weight``; its non-strict load then
silently leaves the pose encoder at random initialisation. We strip the prefix only, and load with
``strict=True``; ``skip_pose_encoder=True`` reproduces master's behaviour on purpose.

Everything the network's shapes fix (width, depth, frame length, MLP width, kernel, pose-encoder
width, number of heads and action classes, which unused tensors exist) is read from the state
dict. Two splits are not visible in shapes and come from the YAML (``configs:`` node) or our
checkpoint's saved config: heads vs. dim_head (default dim_head 64) and stride vs. pad (default
pad 1). A warning says when a default was used.

Our own checkpoints (``PoseTransformerModule``) use the same ``encoder.`` prefix and additionally
carry ``pose_transformer_config`` (constructor arguments) and ``pose_normalisation`` (mean, std).

CLI: ``python -m phalp_lightning.models.convert_pose_transformer OFFICIAL.ckpt OUT.ckpt [--config YAML]
[--mean-std mean_std.npy]`` writes a checkpoint in our format (config and normalisation included).
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
from torch import Tensor

from phalp_lightning.errors import UserError, exit_on_user_error
from phalp_lightning.models.checkpoints import load_checkpoint
from phalp_lightning.models.components.pose_transformer import PoseTransformer, read_mean_std
from phalp_lightning.utils.io import atomic_output

log = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "encoder."
# Heads that some training modules carry but PHALP's network does not have.
DROPPABLE_PREFIXES = ("action_head_kinetics.",)
CONFIG_KEY = "pose_transformer_config"
# Per noise level: did the network beat the best baseline (and which baseline that was); read by the loader.
VALIDATION_KEY = "pose_predictor_validation"
NORMALISATION_KEY = "pose_normalisation"
DEFAULT_DIM_HEAD = 64
DEFAULT_CONV_PAD = 1


class PoseCheckpointError(UserError, ValueError):
    """A pose-transformer checkpoint or its config does not fit the network; names the file."""


class CheckpointKeyError(UserError, KeyError):
    """A state dict does not match the network: the message lists missing and unexpected keys."""

    def __str__(self) -> str:  # KeyError would repr() the message, quoting and escaping it
        return str(self.args[0]) if self.args else ""


def strip_encoder_prefix(state_dict: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Keep keys starting with ``encoder.`` and remove exactly that leading prefix.

    Returns:
        (network state dict, names of the dropped keys).
    """
    kept = {
        key[len(CHECKPOINT_PREFIX) :]: value
        for key, value in state_dict.items()
        if key.startswith(CHECKPOINT_PREFIX)
    }
    dropped = [key for key in state_dict if not key.startswith(CHECKPOINT_PREFIX)]
    return kept, dropped


def _count_indexed(state_dict: Mapping[str, Tensor], prefix: str) -> int:
    """1 + the largest N among keys ``<prefix>N.*`` (0 when there are none)."""
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)\.")
    indices = {int(match.group(1)) for key in state_dict if (match := pattern.match(key))}
    return max(indices) + 1 if indices else 0


def _require(state_dict: Mapping[str, Tensor], key: str, source: str) -> Tensor:
    if key not in state_dict:
        raise CheckpointKeyError(
            f"{source}: cannot infer the pose transformer architecture, key {key!r} is missing "
            f"(found {len(state_dict)} keys, e.g. {sorted(state_dict)[:8]})"
        )
    return state_dict[key]


def infer_architecture(
    state_dict: Mapping[str, Tensor], overrides: Mapping[str, Any] | None = None, source: str = "state_dict"
) -> dict[str, Any]:
    """Constructor arguments of :class:`PoseTransformer` that reproduce ``state_dict``'s shapes.

    Args:
        state_dict: network keys (prefix already stripped).
        overrides: values that shapes cannot tell (``heads``/``dim_head``, ``conv_stride``/``conv_pad``)
            or that must win, e.g. from the official YAML.
        source: name used in error messages.
    """
    overrides = dict(overrides or {})
    mask_token = _require(state_dict, "mask_token", source)
    dim = int(mask_token.shape[0])
    frame_length = int(_require(state_dict, "pos_embedding_learned1", source).shape[1])
    depth = _count_indexed(state_dict, "transformer1.layers.")
    if depth == 0:
        raise CheckpointKeyError(
            f"{source}: no transformer1.layers.* keys; not a pose transformer state dict"
        )
    inner = int(_require(state_dict, "transformer1.layers.0.0.fn.to_qkv.weight", source).shape[0]) // 3
    mlp_dim = int(_require(state_dict, "transformer1.layers.0.1.fn.net.0.weight", source).shape[0])
    kernel = int(_require(state_dict, "conv_en.weight", source).shape[2])
    pose_hidden_dim = int(_require(state_dict, "pose_shape_encoder.0.weight", source).shape[0])
    num_smpl_heads = _count_indexed(state_dict, "smpl_head.")
    smpl_hidden = int(_require(state_dict, "smpl_head.0.fc1.weight", source).shape[0])
    action = state_dict.get("action_head_ava.0.0.weight")

    if "heads" in overrides and "dim_head" not in overrides:
        overrides["dim_head"] = inner // int(overrides["heads"])
    if "dim_head" in overrides and "heads" not in overrides:
        overrides["heads"] = inner // int(overrides["dim_head"])
    if "heads" not in overrides:
        log.warning(
            "%s: heads/dim_head not given; assuming dim_head=%d, heads=%d",
            source,
            DEFAULT_DIM_HEAD,
            inner // DEFAULT_DIM_HEAD,
        )
        overrides["dim_head"] = DEFAULT_DIM_HEAD
        overrides["heads"] = max(inner // DEFAULT_DIM_HEAD, 1)
    if int(overrides["heads"]) * int(overrides["dim_head"]) != inner:
        raise PoseCheckpointError(
            f"{source}: heads*dim_head = {overrides['heads']}*{overrides['dim_head']} != {inner} (to_qkv rows / 3)"
        )
    if "conv_stride" in overrides and "conv_pad" not in overrides:
        overrides["conv_pad"] = (kernel - int(overrides["conv_stride"])) // 2
    if "conv_stride" not in overrides:
        pad = int(overrides.get("conv_pad", DEFAULT_CONV_PAD))
        if "conv_pad" not in overrides:
            log.warning(
                "%s: conv stride/pad not given; assuming pad=%d, stride=%d", source, pad, kernel - 2 * pad
            )
        overrides["conv_pad"] = pad
        overrides["conv_stride"] = kernel - 2 * pad
    if int(overrides["conv_stride"]) + 2 * int(overrides["conv_pad"]) != kernel:
        raise PoseCheckpointError(f"{source}: conv_stride + 2*conv_pad must equal the kernel size {kernel}")

    architecture: dict[str, Any] = dict(
        dim=dim,
        depth=depth,
        mlp_dim=mlp_dim,
        frame_length=frame_length,
        pose_hidden_dim=pose_hidden_dim,
        num_smpl_heads=max(num_smpl_heads, 1),
        num_action_classes=int(action.shape[0]) if action is not None else 0,
        smpl_head_hidden_dim=smpl_hidden,
        with_unused_transformer=_count_indexed(state_dict, "transformer.layers.") > 0,
        with_sinusoidal_table="pos_embedding" in state_dict or "pe" in state_dict,
    )
    if "pe" in state_dict:
        architecture["sinusoidal_length"] = int(state_dict["pe"].shape[0])
    for key in (
        "heads",
        "dim_head",
        "conv_stride",
        "conv_pad",
        "dropout",
        "drop_path",
        "smpl_head_iterations",
        "smpl_head_dropout",
        "output_anchor",
        "action_names",
        "correction_horizon_power",
        "anchor_max_steps",
        "correction_scale_max_distance",
    ):
        if key in overrides:
            architecture[key] = overrides[key]
    return architecture


def official_config_overrides(config: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    """Constructor arguments from the official YAML (top-level ``configs:`` node) or a plain mapping.

    A mapping that already uses our argument names (``heads``, ``conv_stride`` ...) is returned as is.
    """
    if not isinstance(config, Mapping):
        from omegaconf import OmegaConf

        loaded = OmegaConf.to_container(OmegaConf.load(config), resolve=True)
        if not isinstance(loaded, dict):
            raise PoseCheckpointError(f"{config}: expected a YAML mapping")
        config = loaded.get("configs", loaded)
    config = dict(config)
    if "transformer" not in config:
        return config
    transformer = config["transformer"]
    overrides: dict[str, Any] = {
        "heads": transformer["heads"],
        "dim_head": transformer["dim_head"],
        "dropout": transformer.get("dropout", 0.0),
        "drop_path": transformer.get("droppath", 0.0),
    }
    conv = transformer.get("conv") or {}
    if "stride" in conv:
        overrides["conv_stride"] = conv["stride"]
    if "pad" in conv:
        overrides["conv_pad"] = conv["pad"]
    if config.get("mask_type_test", "zero") != "zero":
        log.warning(
            "config mask_type_test=%r; predict_next always uses 'zero' masking", config["mask_type_test"]
        )
    return overrides


def check_keys(network: torch.nn.Module, state_dict: Mapping[str, Tensor], source: str) -> dict[str, Tensor]:
    """Drop known-unused heads (with a warning) and raise :class:`CheckpointKeyError` on any other mismatch.

    Returns:
        The state dict to load with ``strict=True``.
    """
    expected = set(network.state_dict())
    droppable = [key for key in state_dict if key not in expected and key.startswith(DROPPABLE_PREFIXES)]
    if droppable:
        log.warning("%s: dropping %d keys unused by PHALP's network: %s", source, len(droppable), droppable)
    state = {key: value for key, value in state_dict.items() if key not in droppable}
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        raise CheckpointKeyError(
            f"{source}: state dict does not match PoseTransformer("
            f"{', '.join(f'{k}={v}' for k, v in getattr(network, 'config', {}).items())}).\n"
            f"  missing keys ({len(missing)}): {missing}\n  unexpected keys ({len(unexpected)}): {unexpected}"
        )
    return state


def build_from_state_dict(
    state_dict: Mapping[str, Tensor],
    overrides: Mapping[str, Any] | None = None,
    source: str = "state_dict",
    skip_pose_encoder: bool = False,
    **network_kwargs: Any,
) -> PoseTransformer:
    """Build a :class:`PoseTransformer` shaped like ``state_dict`` (no prefix) and load it strictly.

    Args:
        state_dict: network keys.
        overrides: architecture values the shapes cannot tell (see :func:`infer_architecture`).
        source: name used in messages.
        skip_pose_encoder: leave ``pose_shape_encoder`` at its random initialisation, as PHALP
            master's loader does (only for reproducing that behaviour).
        network_kwargs: extra constructor arguments (``mean_std``, ``reference_quirks``).
    """
    architecture = infer_architecture(state_dict, overrides, source)
    network = PoseTransformer(**architecture, **network_kwargs)
    state = check_keys(network, state_dict, source)
    if skip_pose_encoder:
        own = network.state_dict()
        state = {
            key: own[key] if key.startswith("pose_shape_encoder.") else value for key, value in state.items()
        }
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:  # shape mismatches: re-raise naming the file
        raise PoseCheckpointError(f"{source}: cannot load into PoseTransformer: {error}") from error
    return network


def load_checkpoint_file(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu", trusted: bool = False
) -> dict[str, Any]:
    """Read a pose-transformer checkpoint with the package's one safe reader (``models.checkpoints``).

    The official file pickles its OmegaConf config; OmegaConf containers are on the reader's
    allowlist, so it loads without ``trusted``.
    """
    checkpoint = load_checkpoint(path, map_location=map_location, trusted=trusted, what="pose predictor checkpoint")
    if not isinstance(checkpoint, dict):
        raise CheckpointKeyError(f"{path}: expected a checkpoint dict, got {type(checkpoint).__name__}")
    return checkpoint


def load_pose_transformer(
    path: str | os.PathLike[str],
    config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    map_location: str | torch.device = "cpu",
    mean_std: str | os.PathLike[str] | None = None,
    reference_quirks: bool = False,
    skip_pose_encoder: bool = False,
    trusted: bool = False,
    noise_deg: float | None = None,
) -> PoseTransformer:
    """Load our checkpoint or the official ``pose_predictor.pth`` (+ its YAML) as an eval-mode network.

    Args:
        path: checkpoint file: a dict with ``state_dict`` (keys ``encoder.*``) or a bare state dict.
        config: the official YAML (``configs:`` node) or a mapping of constructor arguments; for
            our checkpoints the saved config is used and ``config`` only overrides it.
        map_location: device to load onto.
        mean_std: the ``mean_std`` asset. Default: the normalisation saved in our checkpoint, else
            the registered asset (``phalp_lightning.assets.resolve("mean_std")``).
        reference_quirks: see :meth:`PoseTransformer.predict_next`.
        skip_pose_encoder: reproduce PHALP master's loader bug (random pose encoder); never for real use.
        trusted: allow the code-running unpickler for a file the safe reader refuses (warns).
        noise_deg: per-joint pose noise (degrees) of the poses the tracker will feed; with the
            checkpoint's validation record (``VALIDATION_KEY``) this decides whether ``predict_next``
            runs the network or the best baseline (logged). Default: the record's operating level.

    Returns:
        The network in eval mode.
    """
    checkpoint = load_checkpoint_file(path, map_location, trusted=trusted)
    raw = checkpoint.get("state_dict", checkpoint)
    if not isinstance(raw, Mapping) or not raw:
        raise PoseCheckpointError(f"{path}: no state_dict in checkpoint (top-level keys {sorted(checkpoint)[:10]})")
    state_dict, dropped = strip_encoder_prefix(raw)
    if not state_dict:
        raise CheckpointKeyError(
            f"{path}: no key starts with {CHECKPOINT_PREFIX!r} (keys {sorted(raw)[:10]})"
        )
    if dropped:
        log.info("%s: ignoring %d keys outside %r: %s", path, len(dropped), CHECKPOINT_PREFIX, dropped[:10])

    overrides: dict[str, Any] = dict(checkpoint.get(CONFIG_KEY) or {})
    if config is not None:
        overrides.update(official_config_overrides(config))
    network = build_from_state_dict(
        state_dict,
        overrides,
        source=str(path),
        skip_pose_encoder=skip_pose_encoder,
        reference_quirks=reference_quirks,
    )
    if mean_std is not None:
        network.set_normalisation(*read_mean_std(mean_std))
    elif NORMALISATION_KEY in checkpoint:
        saved = checkpoint[NORMALISATION_KEY]
        network.set_normalisation(torch.as_tensor(saved["mean"]), torch.as_tensor(saved["std"]))
    else:
        from phalp_lightning.assets import resolve

        network.set_normalisation(*read_mean_std(resolve("mean_std")))
    record = checkpoint.get(VALIDATION_KEY)
    if record:
        network.validation_record = dict(record)
        line = network.use_for_tracking(record, noise_deg)
        (log.info if network.tracking_fallback is None else log.warning)("%s: %s", path, line)
    elif noise_deg is not None:
        raise PoseCheckpointError(
            f"{path}: noise_deg={noise_deg} given, but the checkpoint has no validation record ({VALIDATION_KEY!r}) "
            "to say whether the network beats the baselines at that noise; write one with "
            "experiments/pose_transformer_cpu_training/noise_study.py or leave noise_deg unset"
        )
    else:
        log.warning(
            "%s: no validation record: the pose predictor is used without evidence that it beats the "
            "constant-pose / constant-velocity baselines on noisy poses (docs/pose_transformer.md, Noise)", path
        )
    return network.to(map_location).eval()


def convert(
    official: str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: str | os.PathLike[str] | None = None,
    mean_std: str | os.PathLike[str] | None = None,
    trusted: bool = False,
    action_label_map: str | os.PathLike[str] | None = None,
) -> Path:
    """Write the official checkpoint as our checkpoint (``encoder.*`` + config + normalisation), atomically.

    ``action_label_map``: AVA label map (``.pbtxt``) of the evaluated classes; its names, in id
    order, become the action head's class names (what predict writes in actions.json).
    """
    network = load_pose_transformer(official, config=config, mean_std=mean_std, trusted=trusted)
    if action_label_map is not None:
        from phalp_lightning.datamodules.formats.ava import AVAClassMapping

        names = list(AVAClassMapping.from_label_map(action_label_map).names)
        classes = int(network.config.get("num_action_classes", 0))
        if len(names) != classes:
            raise PoseCheckpointError(f"{action_label_map}: {len(names)} classes, the checkpoint's action head has {classes}")
        network.action_names = names
        network.config["action_names"] = names
    checkpoint = {
        "state_dict": {CHECKPOINT_PREFIX + key: value for key, value in network.state_dict().items()},
        CONFIG_KEY: dict(network.config),
        NORMALISATION_KEY: {"mean": network.mean.clone(), "std": network.std.clone()},
    }
    if getattr(network, "validation_record", None):
        checkpoint[VALIDATION_KEY] = network.validation_record
    out = Path(out)
    with atomic_output(out) as temporary:
        torch.save(checkpoint, temporary)
    return out


def main(argv: list[str] | None = None) -> None:
    """CLI entry point (see module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("official", help="official pose_predictor.pth / pose_predictor_40006.ckpt")
    parser.add_argument("out", help="output checkpoint path")
    parser.add_argument("--config", default=None, help="official pose_predictor.yaml (config_40006.yaml)")
    parser.add_argument("--mean-std", default=None, help="mean_std.npy (default: the registered asset)")
    parser.add_argument("--action-label-map", default=None, help="AVA label map .pbtxt of the evaluated classes: names the action head's classes")
    parser.add_argument(
        "--trusted", action="store_true", help="allow the full (code-running) unpickler for a file the safe reader refuses"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    with exit_on_user_error():
        written = convert(args.official, args.out, args.config, args.mean_std, trusted=args.trusted, action_label_map=args.action_label_map)
    log.info("wrote %s", written)


if __name__ == "__main__":
    main()
