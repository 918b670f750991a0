"""PHALP's pose transformer (``lart_transformer`` of pose_transformer_v2), re-written lucidrains-style.

The network reads a track's history as ``frame_length`` slots of 229-d pose vectors (utils.vectors
layout, normalised with the ``mean_std`` asset), replaces missing or masked slots by a learned mask
token, and decodes every slot back to a 229-d vector in natural units: rotation matrices and betas
from an HMR-style iterative SMPL head, the camera ``(t_x, t_y, t_z/200)`` from a small MLP.

Layout (docs/pose_transformer.md, Architecture), with D = ``dim``, T = ``frame_length``:

    pose (B,T,229) -> pose_shape_encoder -> (B,T,D); masked slots := mask_token
    + pos_embedding_learned1 -> transformer1 (depth blocks, masked attention)
    -> conv_en (Conv1d, stride s) -> conv_de (ConvTranspose1d) back to T
    + pos_embedding_learned2 -> transformer2 (1 block, no masking)
    -> [class_token, tokens] (B,1+T,D) -> readout per slot -> (B,T,229)

Parameter names follow the official checkpoint exactly, so its ``encoder.*`` weights load with
``strict=True`` after stripping the leading ``encoder.`` (see models/convert_pose_transformer.py).
``transformer`` (a second, unused stack), ``pos_embedding`` and the ``pe`` buffer are never used in
the forward pass; they are only built when a checkpoint carries them.

The ``mean``/``std`` buffers are not persistent: no checkpoint of the original carries them.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from einops import rearrange
from torch import Tensor, nn

from phalp_lightning.models.components.heads import SMPLHead, read_smpl_mean_params
from phalp_lightning.utils.geometry import axis_angle_to_rotmat, rotmat_to_axis_angle
from phalp_lightning.utils.vectors import NUM_BODY_JOINTS, POSE_BETAS, POSE_CAMERA, POSE_DIM

# Attention logits of blocked (query, key) pairs are *assigned* this value, as in the original.
MASKED_LOGIT = -1000.0
# Added to std before dividing, as in the original normalisation.
STD_EPS = 1e-10
NUM_ROT6D = 6 * (NUM_BODY_JOINTS + 1)  # 144: global orient + 23 body joints, 6-D each
NUM_CAMERA = 3
_ROTATIONS = slice(0, 9 * (NUM_BODY_JOINTS + 1))
# How the read-out forms a slot's pose: "none" is the original (absolute vectors from the mean
# body); "last" and "velocity" add the read-out to an anchor taken from the visible slots.
OUTPUT_ANCHORS = ("none", "last", "velocity")


class DropPath(nn.Module):
    """Stochastic depth on a residual branch: drops the whole branch per sample while training."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x * x.new_empty(shape).bernoulli_(keep) / keep


class PreNorm(nn.Module):
    """LayerNorm, then ``fn``; extra arguments go to ``fn``."""

    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: Tensor, *args: Tensor) -> Tensor:
        return self.fn(self.norm(x), *args)


class FeedForward(nn.Module):
    """Linear -> GELU -> Dropout -> Linear -> Dropout (state-dict names ``net.0``, ``net.3``)."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def attention_block_mask(has_detection: Tensor, mask_detection: Tensor) -> Tensor:
    """Which (query, key) pairs attention must ignore.

    A pair is blocked when either token is absent, or when the key is masked: masked tokens still
    ask (they are queries) but are never looked at (never keys).

    Args:
        has_detection: (B, N) bool, token exists.
        mask_detection: (B, N) bool, token is masked.

    Returns:
        (B, N, N) bool, True where the logit is replaced by ``MASKED_LOGIT``.
    """
    present = has_detection[:, :, None] & has_detection[:, None, :]
    return ~present | mask_detection[:, None, :]


class Attention(nn.Module):
    """Multi-head self-attention with PHALP's masking by assignment (logit := -1000)."""

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64, dropout: float = 0.0) -> None:
        super().__init__()
        inner_dim = heads * dim_head
        self.heads = heads
        self.scale = dim_head**-0.5
        self.to_qkv = nn.Linear(dim, inner_dim * 3, bias=False)
        self.attend_dropout = nn.Dropout(dropout)
        project_out = not (heads == 1 and dim_head == dim)
        self.to_out = (
            nn.Sequential(nn.Linear(inner_dim, dim), nn.Dropout(dropout)) if project_out else nn.Identity()
        )

    def forward(self, x: Tensor, has_detection: Tensor, mask_detection: Tensor) -> Tensor:
        """x (B,N,D), has_detection / mask_detection (B,N) bool -> (B,N,D)."""
        q, k, v = (
            rearrange(t, "b n (h d) -> b h n d", h=self.heads) for t in self.to_qkv(x).chunk(3, dim=-1)
        )
        logits = torch.matmul(q, k.transpose(-1, -2)) * self.scale
        blocked = attention_block_mask(has_detection, mask_detection)
        logits = logits.masked_fill(blocked[:, None], MASKED_LOGIT)
        weights = self.attend_dropout(logits.softmax(dim=-1))
        out = rearrange(torch.matmul(weights, v), "b h n d -> b n (h d)")
        return self.to_out(out)


class Transformer(nn.Module):
    """``depth`` pre-norm blocks of masked attention and feed-forward, one shared DropPath."""

    def __init__(
        self,
        dim: int,
        depth: int,
        heads: int,
        dim_head: int,
        mlp_dim: int,
        dropout: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.drop_path = DropPath(drop_path)
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    PreNorm(dim, Attention(dim, heads=heads, dim_head=dim_head, dropout=dropout)),
                    PreNorm(dim, FeedForward(dim, mlp_dim, dropout=dropout)),
                ]
            )
            for _ in range(depth)
        )

    def forward(self, x: Tensor, has_detection: Tensor, mask_detection: Tensor) -> Tensor:
        for attention, feed_forward in self.layers:  # type: ignore[misc]
            x = x + self.drop_path(attention(x, has_detection, mask_detection))
            x = x + self.drop_path(feed_forward(x))
        return x


def scatter_to_slots(values: Tensor, slots: Tensor, keep: Tensor, length: int) -> tuple[Tensor, Tensor]:
    """Write each sequence's entries into ``length`` time slots; among entries sharing a slot the last wins.

    Args:
        values: (K, H, C) entries, oldest first.
        slots: (K, H) int64 slot of each entry, in [0, length) where ``keep``.
        keep: (K, H) bool, entries to write.
        length: number of slots.

    Returns:
        sequence (K, length, C) with zeros at empty slots, observed (K, length) bool.
    """
    num, history = slots.shape
    same_slot_later = (slots[:, :, None] == slots[:, None, :]) & keep[:, None, :]
    overwritten = same_slot_later.triu(diagonal=1).any(dim=-1)
    write = keep & ~overwritten
    rows = torch.arange(num, device=slots.device)[:, None].expand(num, history)
    sequence = values.new_zeros(num, length, values.shape[-1])
    sequence[rows[write], slots[write]] = values[write]
    observed = torch.zeros(num, length, dtype=torch.bool, device=slots.device)
    observed[rows[write], slots[write]] = True
    return sequence, observed


def slot_anchors(
    sequence: Tensor, visible: Tensor, mode: str, max_steps: float = 0.0
) -> tuple[Tensor, Tensor]:
    """The pose each slot's read-out is added to, from the visible slots at or before it.

    For slot s let a1 be the newest visible slot <= s and a2 the visible slot before a1.
    ``"last"``: the pose at a1. ``"velocity"``: the motion from a2 to a1 continued for
    ``(s - a1) / (a1 - a2)`` steps (rotations by a power of their relative rotation, the camera
    linearly); without a2 it is the pose at a1. Betas are always a1's: a body's shape does not move.
    Slots before the first visible one take the first visible pose; rows with no visible slot get
    zeros.

    Args:
        sequence: (B, T, 229) natural-unit poses (values at non-visible slots are ignored).
        visible: (B, T) bool, slots the network sees.
        mode: "last" or "velocity".
        max_steps: with "velocity", the motion is continued for at most this many steps, then
            held (0: no limit). A periodic motion's last velocity only holds for a while.

    Returns:
        anchors (B, T, 229) and each slot's distance ``s - a1`` (B, T) float (0 at visible slots
        and before the first one), both without gradient.
    """
    if mode not in ("last", "velocity"):
        raise ValueError(f"anchor mode must be 'last' or 'velocity', got {mode!r}")
    with torch.no_grad():
        batch, length, _ = sequence.shape
        positions = torch.arange(length, device=sequence.device).expand(batch, length)
        marked = torch.where(visible, positions, torch.full_like(positions, -1))
        newest = marked.cummax(dim=1).values  # a1, -1 before the first visible slot
        first = torch.where(visible, positions, torch.full_like(positions, length)).min(dim=1).values
        newest = torch.where(newest >= 0, newest, first[:, None].clamp(max=length - 1))
        rows = torch.arange(batch, device=sequence.device)[:, None]
        anchor = sequence[rows, newest]
        if mode == "velocity":
            # a2: the newest visible slot strictly before a1 (-1 when there is none).
            before = torch.cat([marked.new_full((batch, 1), -1), marked.cummax(dim=1).values[:, :-1]], dim=1)
            previous = before.gather(1, newest)
            has_previous = (previous >= 0) & (positions > newest)
            steps = torch.where(
                has_previous, (positions - newest).float() / (newest - previous).clamp(min=1).float(), 0.0
            )
            if max_steps > 0:
                steps = steps.clamp(max=float(max_steps))
            older = sequence[rows, previous.clamp(min=0)]
            joints = NUM_BODY_JOINTS + 1
            new_rot = anchor[..., _ROTATIONS].reshape(batch, length, joints, 3, 3).double()
            old_rot = older[..., _ROTATIONS].reshape(batch, length, joints, 3, 3).double()
            step_rot = rotmat_to_axis_angle(new_rot @ old_rot.transpose(-1, -2))
            moved = axis_angle_to_rotmat(step_rot * steps[..., None, None].double()) @ new_rot
            anchor = anchor.clone()
            anchor[..., _ROTATIONS] = moved.reshape(batch, length, -1).to(anchor.dtype)
            anchor[..., POSE_CAMERA] = anchor[..., POSE_CAMERA] + steps[..., None] * (
                anchor[..., POSE_CAMERA] - older[..., POSE_CAMERA]
            )
        any_visible = visible.any(dim=1)[:, None, None]
        distance = (positions - newest).clamp(min=0).float()
        return torch.where(any_visible, anchor, torch.zeros_like(anchor)), distance


def damped_steps(steps: Tensor, max_steps: float = 0.0, decay: float = 1.0) -> Tensor:
    """How far a damped, capped constant velocity moves after ``steps`` steps (in steps of the last motion).

    Step i (i = 1, 2, ...) moves ``decay ** (i - 1)`` of the last motion, so n steps move
    ``(1 - decay ** n) / (1 - decay)`` (n for ``decay`` 1, fractional n included); the result is
    then capped at ``max_steps`` (0: no cap).
    """
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"decay must be in (0, 1], got {decay}")
    moved = steps if decay == 1.0 else (1.0 - torch.pow(torch.full_like(steps, decay), steps)) / (1.0 - decay)
    return moved.clamp(max=float(max_steps)) if max_steps > 0 else moved


def extrapolate_pose(previous: Tensor, newest: Tensor, steps: Tensor) -> Tensor:
    """Continue the motion from ``previous`` to ``newest`` (..., 229) for ``steps`` (...) steps (fractional).

    Rotations by a fractional power of their relative rotation (through axis-angle, in float64);
    betas and camera linearly.
    """
    lead = newest.shape[:-1]
    joints = NUM_BODY_JOINTS + 1
    new_rot = newest[..., _ROTATIONS].reshape(*lead, joints, 3, 3).double()
    old_rot = previous[..., _ROTATIONS].reshape(*lead, joints, 3, 3).double()
    step_rot = rotmat_to_axis_angle(new_rot @ old_rot.transpose(-1, -2))
    moved = axis_angle_to_rotmat(step_rot * steps.double()[..., None, None]) @ new_rot
    out = newest + (newest - previous) * steps.to(newest.dtype)[..., None]
    out[..., _ROTATIONS] = moved.reshape(*lead, -1).to(newest.dtype)
    return out


# Predictors without a network the tracker can use instead of the pose transformer.
BASELINE_PREDICTORS = ("constant_pose", "constant_velocity", "damped_velocity")


def baseline_prediction(
    name: str, previous: Tensor, newest: Tensor, steps: Tensor, max_steps: float = 0.0, decay: float = 1.0
) -> Tensor:
    """One of BASELINE_PREDICTORS from the newest two history entries (N, 229); ``steps`` (N,) after newest.

    ``steps`` is counted in units of the last gap between the two entries (fractional when a
    detection was missed between them). "damped_velocity" uses ``max_steps`` and ``decay``
    (:func:`damped_steps`).
    """
    if name == "constant_pose":
        return newest.clone()
    if name == "constant_velocity":
        return extrapolate_pose(previous, newest, steps)
    if name == "damped_velocity":
        return extrapolate_pose(previous, newest, damped_steps(steps, max_steps, decay))
    raise ValueError(f"unknown baseline {name!r}; known: {BASELINE_PREDICTORS}")


def sinusoidal_table(length: int, dim: int) -> Tensor:
    """1-D sinusoidal position table (length, dim): sin on even, cos on odd channels."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)[:, : dim // 2]
    return table


def read_mean_std(path: str | os.PathLike[str]) -> tuple[Tensor, Tensor]:
    """Read the ``mean_std`` asset: an array (2, 1, K), K <= 229, padded to 229 with 0 (mean) and 1 (std).

    Returns:
        mean (229,), std (229,) float32.
    """
    array = np.load(path)
    if array.ndim != 3 or array.shape[0] != 2 or array.shape[1] != 1 or array.shape[2] > POSE_DIM:
        raise ValueError(
            f"{path}: mean_std must have shape (2, 1, K) with K <= {POSE_DIM}, got {array.shape}"
        )
    width = array.shape[2]
    mean = torch.zeros(POSE_DIM)
    std = torch.ones(POSE_DIM)
    mean[:width] = torch.from_numpy(np.asarray(array[0, 0], dtype=np.float32))
    std[:width] = torch.from_numpy(np.asarray(array[1, 0], dtype=np.float32))
    return mean, std


class PoseTransformer(nn.Module):
    """PHALP's pose predictor network: masked-token transformer over a track's pose history.

    Args:
        dim: token width D (``in_feat``; 128 in the candidate official config).
        depth: blocks in ``transformer1`` (16).
        heads: attention heads (16).
        dim_head: per-head width (64).
        mlp_dim: feed-forward width (512).
        frame_length: number of time slots T (125); must be divisible by ``conv_stride``.
        conv_stride: stride of the conv bottleneck (5).
        conv_pad: padding of the conv bottleneck (1); kernel = stride + 2 * pad.
        pose_hidden_dim: hidden width of the 229 -> D pose encoder (``mid_dim``, 229).
        num_smpl_heads: number of read-out heads (1); only head 0 is used.
        num_action_classes: AVA action classes of ``action_head_ava`` (60); 0 builds no action head.
        dropout: attention / feed-forward dropout.
        drop_path: stochastic depth of the transformer residual branches.
        smpl_head_hidden_dim: fc width of the SMPL head (1024).
        smpl_head_iterations: iterative refinement steps of the SMPL head (3).
        smpl_head_dropout: dropout inside the SMPL head (0.5).
        with_unused_transformer: also build the unused ``transformer`` stack (for checkpoints that carry it).
        with_sinusoidal_table: also build the unused ``pos_embedding`` parameter and ``pe`` buffer.
        sinusoidal_length: rows of that table (10000).
        mean_std: path of the ``mean_std`` asset; identity normalisation when None.
        smpl_mean_params: path of ``smpl_mean_params.npz`` to initialise the SMPL head; identity
            rotations, zero betas and camera (0.9, 0, 0) when None. (A loaded checkpoint overwrites
            these buffers anyway.)
        reference_quirks: :meth:`predict_next` reads every track at track 0's slot, as PHALP does.
        position_init_std: std of the initial learned position embeddings (the original: 1.0).
        output_anchor: how a slot's pose is formed (see :func:`slot_anchors`). ``"none"`` (the
            original, and what official checkpoints use): the SMPL head's absolute vectors.
            ``"last"`` / ``"velocity"``: the head's rotations are applied on top of the anchor's
            (``R = R_head @ R_anchor``), its betas and the camera head's output are added to the
            anchor's; the heads then start at zero correction, so an untrained network predicts
            the anchor (the constant pose or the constant velocity). Stored in the config.
        correction_horizon_power: p; with an anchor, the rotation and camera corrections of a slot
            d slots after the newest visible one are scaled by ``d ** p`` (rotations through their
            axis-angle). The anchor's error grows about like d**2, so p = 2 lets the head predict
            corrections of one size at every horizon, and the next frame's stays small. Stored
            in the config.
        correction_scale_max_distance: c; the correction scale is ``min(d, c) ** p`` (0: no limit).
            The anchor's error grows like d**2 only at first; further on, a constant scale keeps
            the head's targets of one size. Stored in the config.
        anchor_max_steps: with ``output_anchor="velocity"``, the anchor continues the last motion
            for at most this many steps, then holds (0: no limit). Stored in the config.
        action_names: names of the ``num_action_classes`` action classes (stored in the config;
            predict writes per-track probabilities under these names).
    """

    def __init__(
        self,
        dim: int = 128,
        depth: int = 16,
        heads: int = 16,
        dim_head: int = 64,
        mlp_dim: int = 512,
        frame_length: int = 125,
        conv_stride: int = 5,
        conv_pad: int = 1,
        pose_hidden_dim: int = POSE_DIM,
        num_smpl_heads: int = 1,
        num_action_classes: int = 60,
        dropout: float = 0.0,
        drop_path: float = 0.0,
        smpl_head_hidden_dim: int = 1024,
        smpl_head_iterations: int = 3,
        smpl_head_dropout: float = 0.5,
        with_unused_transformer: bool = False,
        with_sinusoidal_table: bool = False,
        sinusoidal_length: int = 10000,
        mean_std: str | None = None,
        smpl_mean_params: str | None = None,
        reference_quirks: bool = False,
        position_init_std: float = 0.02,
        output_anchor: str = "none",
        action_names: list[str] | tuple[str, ...] | None = None,
        correction_horizon_power: float = 0.0,
        anchor_max_steps: float = 0.0,
        correction_scale_max_distance: float = 0.0,
    ) -> None:
        super().__init__()
        if output_anchor not in OUTPUT_ANCHORS:
            raise ValueError(f"output_anchor must be one of {OUTPUT_ANCHORS}, got {output_anchor!r}")
        if output_anchor != "none" and smpl_mean_params is not None:
            raise ValueError(
                f"output_anchor={output_anchor!r} reads corrections, which start at the identity: "
                "leave smpl_mean_params unset"
            )
        if frame_length % conv_stride != 0:
            raise ValueError(f"frame_length={frame_length} must be divisible by conv_stride={conv_stride}")
        if num_smpl_heads < 1:
            raise ValueError(f"num_smpl_heads must be >= 1, got {num_smpl_heads}")
        # Architecture arguments, saved with our checkpoints so a loader can rebuild the network.
        self.config: dict[str, int | float | bool] = dict(
            dim=dim, depth=depth, heads=heads, dim_head=dim_head, mlp_dim=mlp_dim, frame_length=frame_length,
            conv_stride=conv_stride, conv_pad=conv_pad, pose_hidden_dim=pose_hidden_dim,
            num_smpl_heads=num_smpl_heads, num_action_classes=num_action_classes, dropout=dropout,
            drop_path=drop_path, smpl_head_hidden_dim=smpl_head_hidden_dim,
            smpl_head_iterations=smpl_head_iterations, smpl_head_dropout=smpl_head_dropout,
            with_unused_transformer=with_unused_transformer, with_sinusoidal_table=with_sinusoidal_table,
            sinusoidal_length=sinusoidal_length,
        )  # fmt: skip
        if output_anchor != "none":  # absent from the config of the original layout
            self.config["output_anchor"] = output_anchor
            self.config["correction_horizon_power"] = float(correction_horizon_power)
            self.config["anchor_max_steps"] = float(anchor_max_steps)
            self.config["correction_scale_max_distance"] = float(correction_scale_max_distance)
        self.output_anchor = output_anchor
        self.correction_horizon_power = float(correction_horizon_power)
        self.anchor_max_steps = float(anchor_max_steps)
        self.correction_scale_max_distance = float(correction_scale_max_distance)
        if action_names is not None:
            if len(action_names) != num_action_classes:
                raise ValueError(
                    f"{len(action_names)} action_names for num_action_classes={num_action_classes}"
                )
            self.config["action_names"] = [str(name) for name in action_names]
        self.action_names: list[str] | None = None if action_names is None else [str(n) for n in action_names]
        self.dim = dim
        self.frame_length = frame_length
        self.reference_quirks = reference_quirks
        # Set by use_for_tracking: the baseline predict_next returns instead of the network's output
        # (name, max_steps, decay) where validation found the network no better; None = the network.
        self.tracking_fallback: dict | None = None
        self.validation_record: dict | None = None  # the checkpoint's, kept when converting

        self.mask_token = nn.Parameter(torch.randn(dim))
        self.class_token = nn.Parameter(torch.randn(1, 1, dim))
        if with_sinusoidal_table:
            table = sinusoidal_table(sinusoidal_length, dim)
            self.pos_embedding = nn.Parameter(table.clone())
            self.register_buffer("pe", table)
        # The original initialises these with randn (std 1); std 0.02 (as in ViT) lets pose content,
        # not position offsets, dominate the residual stream at the start of training. Loaded
        # checkpoints overwrite them, so this only affects training from scratch.
        self.pos_embedding_learned1 = nn.Parameter(position_init_std * torch.randn(1, frame_length, dim))
        self.pos_embedding_learned2 = nn.Parameter(position_init_std * torch.randn(1, frame_length, dim))
        if with_unused_transformer:
            self.transformer = Transformer(dim, depth, heads, dim_head, mlp_dim, dropout, drop_path)
        self.transformer1 = Transformer(dim, depth, heads, dim_head, mlp_dim, dropout, drop_path)
        self.transformer2 = Transformer(dim, 1, heads, dim_head, mlp_dim, dropout, drop_path)
        kernel = conv_stride + 2 * conv_pad
        self.conv_en = nn.Conv1d(dim, dim, kernel, stride=conv_stride, padding=conv_pad)
        self.conv_de = nn.ConvTranspose1d(dim, dim, kernel, stride=conv_stride, padding=conv_pad)
        self.pose_shape_encoder = nn.Sequential(
            nn.Linear(POSE_DIM, pose_hidden_dim), nn.ReLU(), nn.Linear(pose_hidden_dim, dim)
        )

        mean_pose = mean_betas = mean_camera = None
        if smpl_mean_params is not None:
            mean_pose, mean_betas, mean_camera = read_smpl_mean_params(smpl_mean_params)
        self.smpl_head = nn.ModuleList(
            SMPLHead(
                mean_pose,
                mean_betas,
                mean_camera,
                input_dim=dim,
                hidden_dim=smpl_head_hidden_dim,
                num_iterations=smpl_head_iterations,
                dropout=smpl_head_dropout,
            )
            for _ in range(num_smpl_heads)
        )
        self.loca_head = nn.ModuleList(
            nn.Sequential(
                nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, NUM_CAMERA)
            )
            for _ in range(num_smpl_heads)
        )
        if num_action_classes > 0:
            self.action_head_ava = nn.ModuleList(
                nn.Sequential(nn.Linear(dim, num_action_classes)) for _ in range(num_smpl_heads)
            )
        if output_anchor != "none":
            # Corrections start at exactly zero: the untrained network predicts its anchor.
            for head in self.smpl_head:
                for layer in (head.decpose, head.decshape, head.deccam):
                    nn.init.zeros_(layer.weight)
                    nn.init.zeros_(layer.bias)
            for head in self.loca_head:
                nn.init.zeros_(head[-1].weight)
                nn.init.zeros_(head[-1].bias)

        mean, std = (
            read_mean_std(mean_std) if mean_std is not None else (torch.zeros(POSE_DIM), torch.ones(POSE_DIM))
        )
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    # ------------------------------------------------------------------ normalisation
    def set_normalisation(self, mean: Tensor, std: Tensor) -> None:
        """Replace the input normalisation: mean, std (229,) (or (K,), padded with 0 and 1)."""
        mean = mean.reshape(-1).to(self.mean)
        std = std.reshape(-1).to(self.std)
        if mean.numel() > POSE_DIM or std.numel() != mean.numel():
            raise ValueError(
                f"mean/std must both have K <= {POSE_DIM} entries, got {mean.numel()} and {std.numel()}"
            )
        self.mean.zero_()
        self.std.fill_(1.0)
        self.mean[: mean.numel()] = mean
        self.std[: std.numel()] = std

    def normalise(self, pose: Tensor) -> Tensor:
        """(..., 229) natural units -> network input units ``(pose - mean) / (std + 1e-10)``."""
        return (pose - self.mean) / (self.std + STD_EPS)

    # ------------------------------------------------------------------ network
    def forward(self, pose: Tensor, has_detection: Tensor, mask_detection: Tensor) -> Tensor:
        """Encode a batch of slot sequences.

        Args:
            pose: (B, T, 229) normalised pose vectors (values at masked slots are ignored).
            has_detection: (B, T) bool, the slot exists (False: padding, never attended).
            mask_detection: (B, T) bool, the slot is replaced by the mask token and never used as a key.

        Returns:
            (B, 1 + T, D): the class token, then one token per slot.
        """
        batch, length = has_detection.shape
        if length != self.frame_length or pose.shape[:2] != (batch, length):
            raise ValueError(
                f"expected pose (B, {self.frame_length}, {POSE_DIM}) and masks (B, {self.frame_length}); "
                f"got pose {tuple(pose.shape)}, has_detection {tuple(has_detection.shape)}"
            )
        has_detection = has_detection.bool()
        mask_detection = mask_detection.bool()
        tokens = self.pose_shape_encoder(pose.float())
        tokens = torch.where(mask_detection[..., None], self.mask_token.to(tokens.dtype), tokens)
        tokens = self.transformer1(tokens + self.pos_embedding_learned1, has_detection, mask_detection)
        tokens = self.conv_de(self.conv_en(tokens.transpose(1, 2))).transpose(1, 2)
        tokens = tokens + self.pos_embedding_learned2
        everyone = torch.ones_like(has_detection)
        tokens = self.transformer2(tokens, everyone, torch.zeros_like(mask_detection))
        return torch.cat([self.class_token.expand(batch, -1, -1), tokens], dim=1)

    def readout(
        self, tokens: Tensor, head: int = 0, anchor: Tensor | None = None, distance: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Decode slot tokens (..., D) into natural-unit vectors.

        Args:
            tokens: (..., D) slot tokens.
            head: read-out head index.
            anchor: (..., 229) the slots' anchors (:func:`slot_anchors`); required unless
                ``output_anchor`` is "none", ignored then.
            distance: (...) slots since the newest visible one (:func:`slot_anchors`); needed
                when ``correction_horizon_power`` is not 0.

        Returns:
            dict with ``pose`` (..., 229) = [global_orient 9 | body_pose 207 | betas 10 | camera 3] and,
            when the network has an action head, ``action_logits`` (..., A).
        """
        lead = tokens.shape[:-1]
        flat = tokens.reshape(-1, tokens.shape[-1])
        smpl, _, _ = self.smpl_head[head](flat)  # the head's own camera is unused: loca_head gives it
        camera = self.loca_head[head](flat)
        pose = torch.cat(
            [
                smpl["global_orient"].reshape(-1, 9),
                smpl["body_pose"].reshape(-1, NUM_BODY_JOINTS * 9),
                smpl["betas"],
                camera,
            ],
            dim=-1,
        )
        pose = pose.reshape(*lead, POSE_DIM)
        if self.output_anchor != "none":
            if anchor is None or anchor.shape != pose.shape:
                raise ValueError(
                    f"output_anchor={self.output_anchor!r} needs an anchor of shape {tuple(pose.shape)}, "
                    f"got {None if anchor is None else tuple(anchor.shape)}"
                )
            joints = NUM_BODY_JOINTS + 1
            correction = pose[..., _ROTATIONS].reshape(*lead, joints, 3, 3)
            camera_correction = pose[..., POSE_CAMERA]
            if self.correction_horizon_power:
                if distance is None:
                    raise ValueError("correction_horizon_power needs the slots' distance")
                distance = distance.to(pose.dtype)
                if self.correction_scale_max_distance > 0:
                    distance = distance.clamp(max=self.correction_scale_max_distance)
                scale = distance.pow(self.correction_horizon_power)[..., None]
                correction = axis_angle_to_rotmat(rotmat_to_axis_angle(correction) * scale[..., None])
                camera_correction = camera_correction * scale
            base = anchor[..., _ROTATIONS].reshape(*lead, joints, 3, 3).to(pose.dtype)
            rotations = (correction @ base).reshape(*lead, -1)
            shape = anchor[..., POSE_BETAS].to(pose.dtype) + pose[..., POSE_BETAS]
            camera_out = anchor[..., POSE_CAMERA].to(pose.dtype) + camera_correction
            pose = torch.cat([rotations, shape, camera_out], dim=-1)
        out = {"pose": pose}
        if hasattr(self, "action_head_ava"):
            out["action_logits"] = self.action_head_ava[head](flat).reshape(*lead, -1)
        return out

    def decode(self, sequence: Tensor, visible: Tensor, head: int = 0) -> dict[str, Tensor]:
        """Run the network on slot sequences in natural units and read out every slot.

        Every slot exists; those not ``visible`` are mask tokens (the tracker's 'zero' masking).

        Args:
            sequence: (B, T, 229) natural-unit poses (values at non-visible slots are ignored).
            visible: (B, T) bool.

        Returns:
            :meth:`readout` of the (B, T) slot tokens.
        """
        tokens = self(self.normalise(sequence), torch.ones_like(visible), ~visible)[:, 1:]
        if self.output_anchor == "none":
            return self.readout(tokens, head)
        anchor, distance = slot_anchors(sequence, visible, self.output_anchor, self.anchor_max_steps)
        return self.readout(tokens, head, anchor, distance)

    @torch.no_grad()
    def action_probabilities(self, pose: Tensor, time: Tensor, valid: Tensor) -> Tensor:
        """Per-sequence action probabilities: the sigmoid of the action head, averaged over the valid slots.

        Every valid entry is visible (nothing is masked), placed at ``time - time of the first
        valid entry``; entries beyond ``frame_length`` slots are left out. Call in eval mode.

        Args:
            pose: (N, W, 229) natural units; time: (N, W) int64 frame indices; valid: (N, W) bool.

        Returns:
            (N, A) probabilities (A = ``num_action_classes``).
        """
        if not hasattr(self, "action_head_ava"):
            raise ValueError("this pose transformer has no action head (num_action_classes=0)")
        device = self.mean.device
        pose, time, valid = pose.to(device, torch.float32), time.to(device, torch.long), valid.to(device).bool()
        positions = torch.arange(time.shape[1], device=device).expand_as(time)
        first = torch.where(valid, positions, positions + time.shape[1]).argmin(dim=1)
        slots = time - time.gather(1, first[:, None])
        keep = valid & (slots >= 0) & (slots < self.frame_length)
        sequence, observed = scatter_to_slots(pose, slots.clamp(min=0), keep, self.frame_length)
        scores = self.decode(sequence, observed)["action_logits"].sigmoid()
        weight = observed.float()[..., None]
        return (scores * weight).sum(dim=1) / weight.sum(dim=1).clamp(min=1.0)

    # ------------------------------------------------------------------ tracking
    def use_for_tracking(self, record: dict, noise_deg: float | None = None) -> str:
        """Decide from a validation record whether ``predict_next`` runs the network or a baseline.

        ``record`` (written next to the weights by the noise study, see docs/pose_transformer.md):
        ``{"operating_noise_deg": x, "levels": [{"noise_deg", "model_wins", "best_baseline":
        {"name", "max_steps", "decay"}}, ...]}``. The level used is the smallest validated one at or
        above ``noise_deg`` (default: the record's operating level); above every validated level,
        the largest one (said in the returned line). Returns the line to log at start.
        """
        levels = sorted(record.get("levels") or [], key=lambda level: float(level["noise_deg"]))
        if not levels:
            raise ValueError("validation record has no levels")
        wanted = float(record.get("operating_noise_deg", 0.0) if noise_deg is None else noise_deg)
        chosen = next((level for level in levels if float(level["noise_deg"]) >= wanted), levels[-1])
        beyond = wanted > float(levels[-1]["noise_deg"])
        where = (
            f"pose noise {wanted:g} deg per joint"
            + (f" (above every validated level; judged at {float(chosen['noise_deg']):g} deg)" if beyond
               else f" (validated level {float(chosen['noise_deg']):g} deg)")
        )  # fmt: skip
        baseline = dict(chosen["best_baseline"])
        if chosen["model_wins"]:
            self.tracking_fallback = None
            return (
                f"pose predictor: the network is used at {where}: it beat the best of the baselines at every "
                f"validated horizon (the fallback there would be {baseline['name']})"
            )
        self.tracking_fallback = baseline
        return (
            f"pose predictor: the network is NOT used at {where}: it did not beat the best baseline there; "
            f"the tracker uses {baseline['name']} (max_steps {baseline.get('max_steps', 0)}, decay {baseline.get('decay', 1.0)}) instead"
        )

    def history_slots(self, time_history: Tensor) -> Tensor:
        """Slot of each history entry: ``min(t - t_oldest, T - 1)`` (clamped at 0 for unsorted input).

        Args:
            time_history: (K, H) int64 absolute frame indices, oldest first.

        Returns:
            (K, H) int64.
        """
        return (time_history - time_history[:, :1]).clamp(min=0, max=self.frame_length - 1)

    def target_slots(self, time_history: Tensor, time_since_update: Tensor) -> Tensor:
        """Slot read out for each track: ``min(slot_newest + time_since_update + 1, T - 1)``; (K,) int64.

        With ``reference_quirks`` every entry is track 0's slot (PHALP's gather-and-take-[0] bug).
        """
        newest = self.history_slots(time_history)[:, -1]
        slots = (newest + time_since_update.to(newest) + 1).clamp(max=self.frame_length - 1)
        if self.reference_quirks:
            slots = slots[:1].expand_as(slots)
        return slots

    @torch.no_grad()
    def predict_next(self, pose_history: Tensor, time_history: Tensor, time_since_update: Tensor) -> Tensor:
        """Predict each track's next pose vector from its history (PHALP ``predict_next``).

        Every track's history is written into ``frame_length`` slots relative to its oldest entry
        (later entries overwrite earlier ones at the same slot), empty slots become mask tokens, and
        the decoded vector at ``min(slot_newest + time_since_update + 1, T - 1)`` is returned. Call
        on a network in eval mode. With ``reference_quirks=True`` every track is read at track 0's
        slot instead of its own, reproducing PHALP; this only differs from the default when tracks
        in the batch have different gaps.

        Args:
            pose_history: (K, H, 229) pose vectors in natural units, oldest first.
            time_history: (K, H) int64 absolute frame indices of those entries.
            time_since_update: (K,) int64 frames since each track's last detection (0 = just matched).

        Returns:
            (K, 229) predicted pose vectors in natural units.
        """
        num_tracks, history, width = pose_history.shape
        if (
            width != POSE_DIM
            or time_history.shape != (num_tracks, history)
            or time_since_update.shape != (num_tracks,)
        ):
            raise ValueError(
                f"predict_next expects pose_history (K,H,{POSE_DIM}), time_history (K,H), time_since_update (K,); "
                f"got {tuple(pose_history.shape)}, {tuple(time_history.shape)}, {tuple(time_since_update.shape)}"
            )
        device = self.mean.device
        if num_tracks == 0:
            return torch.zeros(0, POSE_DIM, device=device)
        time_history = time_history.to(device=device, dtype=torch.long)
        time_since_update = time_since_update.to(device=device, dtype=torch.long)
        if self.tracking_fallback is not None:
            pose_history = pose_history.to(device=device, dtype=torch.float32)
            gap = (time_history[:, -1] - time_history[:, -2]).clamp(min=1).float() if history > 1 else None
            steps = (time_since_update + 1).float() / gap if gap is not None else torch.zeros(num_tracks, device=device)
            fallback = self.tracking_fallback
            return baseline_prediction(
                fallback["name"], pose_history[:, max(history - 2, 0)], pose_history[:, -1], steps,
                float(fallback.get("max_steps", 0.0)), float(fallback.get("decay", 1.0)),
            )  # fmt: skip
        slots = self.history_slots(time_history)
        sequence, observed = scatter_to_slots(
            pose_history.to(device=device, dtype=torch.float32),
            slots,
            torch.ones_like(slots, dtype=torch.bool),
            self.frame_length,
        )

        # 'zero' masking: every slot exists, the unobserved ones are mask tokens.
        tokens = self(self.normalise(sequence), torch.ones_like(observed), ~observed)[:, 1:]
        read_at = self.target_slots(time_history, time_since_update)
        rows = torch.arange(num_tracks, device=device)
        if self.output_anchor == "none":
            return self.readout(tokens[rows, read_at])["pose"]
        anchor, distance = slot_anchors(sequence, observed, self.output_anchor, self.anchor_max_steps)
        return self.readout(tokens[rows, read_at], anchor=anchor[rows, read_at], distance=distance[rows, read_at])["pose"]
