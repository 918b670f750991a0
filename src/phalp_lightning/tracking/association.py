"""PHALP's association cost (EQ_019) and the thresholded Hungarian assignment.

All functions work on every track and detection at once. T = tracks, D = detections, P = pairs.
The cost of track i and detection j is (docs/tracker.md)::

    (1 + beta_T r_T) (1 + beta_P min(d_P, 1.5))
        * exp(d_L / (0.1 + tanh(c_xy)) / beta_L) * exp(d_N / (0.1 + tanh(c_N)) / beta_N)

with the texture distance r_T, the squared pose distance d_P over the first 226 pose entries, the
image distance d_L of the location points, the log depth ratio d_N, and the track's location and
depth uncertainties c_xy and c_N read from its (predicted) location vector.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from phalp_lightning.utils.vectors import POSE_SMPL, location_point

AppearanceEncoder = Callable[[Tensor], Tensor]

# PHALP EQ_019 weights (texture, pose, location, depth) and pose clip.
EQ019_BETAS = (4.0536, 1.3070, 0.3792, 4.1658)
EQ019_POSE_CLIP = 1.5
# Appearance codes are compared after division by 1000, as in PHALP.
APPEARANCE_SCALE = 1000.0
TEXTURE_WEIGHT = 100.0
_FLOAT64_MAX = torch.finfo(torch.float64).max
# Maps at least this large (bytes) are encoded run by run straight from storage on the CPU.
DIRECT_ENCODE_MIN_MAP_BYTES = 1 << 18


def pose_distance(track_pose: Tensor, detection_pose: Tensor) -> Tensor:
    """Squared L2 distance over the SMPL part (first 226 entries) of the pose vectors.

    Computed as ``|a|^2 + |b|^2 - 2 a.b`` in float32 and clipped at 0, as PHALP does.

    Args:
        track_pose: (T, 229); detection_pose: (D, 229).

    Returns:
        (T, D) float32.
    """
    a = track_pose[:, POSE_SMPL].float()
    b = detection_pose[:, POSE_SMPL].float()
    # Scalars on the right: the same products without Python's reflected-operator wrappers.
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - (a * 2.0) @ b.T
    return squared.clamp_min(0.0)


def location_terms(
    track_location: Tensor, detection_location: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Location distance, depth distance and the track's two uncertainties.

    Args:
        track_location: (T, 99) predicted (or, for a one-frame-old track, raw) location vectors.
        detection_location: (D, 99) raw location vectors.

    Returns:
        d_L (T, D) image distance of the location points, d_N (T, D) ``|ln(z_track / z_det)|``,
        c_xy (T,) ``sqrt(L[93]^2 + L[94]^2)`` and c_N (T,) ``|ln(1 / L[95])|``.
    """
    track_point = location_point(track_location).float()
    detection_point = location_point(detection_location).float()
    image_distance = torch.linalg.vector_norm(track_point[:, None, :] - detection_point[None, :, :], dim=-1)
    ratio = track_location[:, 92].float()[:, None] / detection_location[:, 92].float()[None, :]
    ratio = torch.where(ratio > 1, torch.reciprocal(ratio), ratio)  # what 1.0 / ratio computes
    depth_distance = -torch.log(ratio)
    location_uncertainty = torch.sqrt(torch.square(track_location[:, 93].float()) + torch.square(track_location[:, 94].float()))
    depth_uncertainty = torch.abs(torch.log(torch.reciprocal(track_location[:, 95].float())))
    return image_distance, depth_distance, location_uncertainty, depth_uncertainty


def pose_location_depth_cost(
    track_pose: Tensor,
    track_location: Tensor,
    detection_pose: Tensor,
    detection_location: Tensor,
    betas: Sequence[float] = EQ019_BETAS,
    pose_clip: float = EQ019_POSE_CLIP,
) -> Tensor:
    """The EQ_019 cost without its texture factor: pose, location and depth factors multiplied.

    (Not the 2D motion cue of :mod:`.motion`, which is a different, box-based cue.)

    Args:
        track_pose: (T, 229); track_location: (T, 99); detection_pose: (D, 229); detection_location: (D, 99).
        betas: (beta_T, beta_P, beta_L, beta_N).
        pose_clip: upper clip of the squared pose distance.

    Returns:
        (T, D) float64, every finite entry >= 1.
    """
    _, beta_pose, beta_location, beta_depth = betas
    pose_term = pose_distance(track_pose, detection_pose).clamp_max(pose_clip)
    image_distance, depth_distance, location_unc, depth_unc = location_terms(
        track_location, detection_location
    )
    # Scalars on the right (x + 0.1 for 0.1 + x, ...): the same IEEE operations, without Python's
    # reflected-operator wrappers.
    location_factor = torch.exp(image_distance / (torch.tanh(location_unc) + 0.1)[:, None] / beta_location)
    depth_factor = torch.exp(depth_distance / (torch.tanh(depth_unc) + 0.1)[:, None] / beta_depth)
    pose_factor = pose_term * beta_pose + 1.0
    return pose_factor.double() * location_factor.double() * depth_factor.double()


def masked_pair_maps(
    track_uv: Tensor, detection_uv: Tensor, pairs: Tensor, out: Tensor | None = None
) -> Tensor:
    """The pair-wise jointly visible UV maps that the texture distance encodes.

    Texels visible in both maps (mask channel > 0.5) are kept; all four channels are zeroed
    elsewhere, so the mask channel becomes 1/0.

    Args:
        track_uv: (T, 4, S, S); detection_uv: (D, 4, S, S); pairs: (P, 2) int64 (track, detection).
        out: optional (>= 2P, 4, S, S) float32 buffer to fill (avoids re-allocating per batch).

    Returns:
        (2P, 4, S, S) float32: the P masked track maps, then the P masked detection maps.
    """
    count = pairs.shape[0]
    shape = (2 * count, *track_uv.shape[1:])
    maps = (
        torch.empty(shape, dtype=torch.float32, device=track_uv.device) if out is None else out[: 2 * count]
    )
    maps[:count] = track_uv[pairs[:, 0]]
    maps[count:] = detection_uv[pairs[:, 1]]
    visible = (maps[:count, 3:4] > 0.5) & (maps[count:, 3:4] > 0.5)
    maps.view(2, count, *track_uv.shape[1:]).mul_(visible)
    return maps


def pack_visibility(visible: Tensor) -> np.ndarray:
    """(n, S, S) visibility (bool, or 0/1 floats) on the CPU -> (n, W) uint64 words, one bit per texel."""
    flat = visible.flatten(1).numpy()
    bits = np.packbits(flat if flat.dtype == np.bool_ else flat != 0, axis=1)  # (n, ceil(N / 8)) uint8
    pad = -bits.shape[1] % 8
    if pad:
        bits = np.pad(bits, ((0, 0), (0, pad)))
    return bits.view(np.uint64)


def packed_texel_overlap(
    track_words: np.ndarray, detection_words: np.ndarray, track_slot: Tensor, detection_slot: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`visible_texel_overlap` on masks already packed by :func:`pack_visibility` (CPU)."""
    slots_t, slots_d = track_slot.numpy(), detection_slot.numpy()
    shared = np.concatenate(
        [
            np.bitwise_count(track_words[slots_t[k : k + 1024]] & detection_words[slots_d[k : k + 1024]]).sum(
                1, dtype=np.int64
            )
            for k in range(0, slots_t.shape[0], 1024)
        ]
    )
    count = lambda words: torch.from_numpy(np.bitwise_count(words).sum(1, dtype=np.int64))  # noqa: E731
    return torch.from_numpy(shared), count(track_words), count(detection_words)


def visible_texel_overlap(
    track_visible: Tensor,
    detection_visible: Tensor,
    track_slot: Tensor,
    detection_slot: Tensor,
    bit_count: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """Exact texel counts of the visibility masks: per pair shared, per track and per detection.

    On the CPU the masks are packed into 64-bit words and counted with ``np.bitwise_count`` (64x
    less memory traffic than summing booleans); elsewhere the booleans are summed on the device.

    Args:
        track_visible: (T, S, S) bool; detection_visible: (D, S, S) bool.
        track_slot, detection_slot: (P,) int64 rows of the two masks forming each pair.
        bit_count: count packed bits on the CPU (False: sum booleans, as on other devices).

    Returns:
        shared (P,), track_count (T,), detection_count (D,), all int64 on the masks' device.
    """
    if track_visible.device.type != "cpu" or not bit_count:
        flat_t, flat_d = track_visible.flatten(1), detection_visible.flatten(1)
        shared = torch.cat(
            [
                (flat_t[track_slot[k : k + 256]] & flat_d[detection_slot[k : k + 256]]).sum(1)
                for k in range(0, track_slot.shape[0], 256)
            ]
        )
        return shared, flat_t.sum(1), flat_d.sum(1)
    return packed_texel_overlap(
        pack_visibility(track_visible), pack_visibility(detection_visible), track_slot, detection_slot
    )


def _mask_channel(maps: Tensor, rows: Tensor) -> Tensor:
    """(n, S, S) mask channel of ``maps[rows]`` (sorted distinct rows): a view when they are consecutive."""
    if rows.numel() and int(rows[-1]) - int(rows[0]) + 1 == rows.shape[0]:
        return maps[int(rows[0]) : int(rows[-1]) + 1, 3]
    return torch.index_select(maps[:, 3], 0, rows)


def _reusable(
    workspace: dict[str, Tensor] | None,
    name: str,
    shape: tuple[int, ...],
    like: Tensor,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """A (shape) buffer on ``like``'s device, kept in ``workspace`` between calls when given.

    Reusing it avoids faulting in fresh pages for tens of MiB of maps every frame.
    """
    buffer = None if workspace is None else workspace.get(name)
    if (
        buffer is None
        or buffer.shape[1:] != shape[1:]
        or buffer.shape[0] < shape[0]
        or buffer.device != like.device
        or buffer.dtype != dtype
    ):
        buffer = torch.empty(shape, dtype=dtype, device=like.device)
        if workspace is not None:
            workspace[name] = buffer
    return buffer[: shape[0]]


def texture_distance(
    track_uv: Tensor,
    detection_uv: Tensor,
    pairs: Tensor,
    encoder: AppearanceEncoder,
    pairs_per_batch: int = 16,
    stats: dict[str, int] | None = None,
    workspace: dict[str, Tensor] | None = None,
    masked: bool = False,
    visibility: tuple[np.ndarray, np.ndarray] | None = None,
) -> Tensor:
    """PHALP's per-pair texture distance ``r_T = 100 |enc(U_t * M) / 1000 - enc(U_d * M) / 1000|^2``.

    M is the set of texels visible in both maps, so in general both maps of every pair are encoded.
    Three exact shortcuts, decided from exact texel counts of the visibility masks, avoid most of
    that work; each yields the same encoder inputs (hence codes) as the per-pair formula:

    - M empty: both masked maps are all zero, so both codes are the same and ``r_T = 0``; nothing
      is encoded (the usual case between people seen from different sides).
    - M = V_t (the track's visible texels are all visible in the detection): ``U_t * M = U_t * V_t``
      does not depend on the detection; it is encoded once per track for all such pairs.
    - M = V_d: likewise once per detection.

    The remaining masked maps and the per-track/per-detection maps of all pairs go through the
    encoder together, ``2 * pairs_per_batch`` maps per call, assembled in one reused buffer. The
    encoder must give a map the same code whatever else is in its batch (true of convolutions and
    pooling; HMAR's encoder on the CPU gives bit-identical codes) and must not modify its input.

    Args:
        track_uv: (T, 4, S, S); detection_uv: (D, 4, S, S).
        pairs: (P, 2) int64 (track index, detection index).
        encoder: maps (B, 4, S, S) -> (B, 4096) appearance codes (HMAR.encode_appearance).
        pairs_per_batch: half the maps per encoder call; bounds memory at 2 * pairs_per_batch maps.
        stats: if given, increased: ``texture_pairs_disjoint`` (pairs with r_T = 0 by an empty M),
            ``encoded_maps`` (maps encoded), ``encoder_calls`` (encoder forwards).
        workspace: a dict kept by the caller between calls to reuse the map buffer.
        masked: both inputs are already in masked form (RGB 0 where not visible, mask channel 1/0,
            as the track bank stores them): a map's own masked version is then the map itself, and
            a pair's is the map times the other map's mask channel, so no comparison is repeated.
            The encoder inputs equal the per-pair formula's up to the sign of zeros.
        visibility: (track words, detection words): every row's visibility packed by
            :func:`pack_visibility`, kept up to date by the caller (the track bank updates its
            tracks' words when it blends), so the masks are not compared and packed again each
            frame. CPU and masked form only.

    Returns:
        (P,) float64.
    """
    total = pairs.shape[0]
    device = track_uv.device
    distances = torch.zeros(total, dtype=torch.float64, device=device)
    if total == 0:
        return distances
    track_rows, track_slot = torch.unique(pairs[:, 0], return_inverse=True)
    detection_rows, detection_slot = torch.unique(pairs[:, 1], return_inverse=True)
    if visibility is not None:
        if not masked or device.type != "cpu":
            raise ValueError("packed visibility words need masked maps on the CPU")
        shared, track_count, detection_count = packed_texel_overlap(
            visibility[0][track_rows.numpy()], visibility[1][detection_rows.numpy()], track_slot, detection_slot
        )
    else:
        track_visible = _mask_channel(track_uv, track_rows) > 0.5  # (T', S, S)
        detection_visible = _mask_channel(detection_uv, detection_rows) > 0.5
        shared, track_count, detection_count = visible_texel_overlap(
            track_visible, detection_visible, track_slot, detection_slot
        )
    overlapping = shared > 0
    track_whole = overlapping & (shared == track_count[track_slot])
    detection_whole = overlapping & (shared == detection_count[detection_slot])
    own_tracks = torch.unique(track_slot[track_whole])
    own_detections = torch.unique(detection_slot[detection_whole])
    pair_tracks = (overlapping & ~track_whole).nonzero().flatten()
    pair_detections = (overlapping & ~detection_whole).nonzero().flatten()

    def pair_mask(pair_index: Tensor) -> Tensor:
        return track_visible[track_slot[pair_index]] & detection_visible[detection_slot[pair_index]]

    # The maps to encode, in four groups: (source maps, source rows, mask to multiply each map with;
    # None = none needed). Masked inputs only need the other map's 0/1 mask channel.
    if masked:
        groups = [
            (track_uv, track_rows[own_tracks], None),
            (detection_uv, detection_rows[own_detections], None),
            (
                track_uv,
                track_rows[track_slot[pair_tracks]],
                lambda k: detection_uv[detection_rows[detection_slot[pair_tracks[k]]], 3:4],
            ),
            (
                detection_uv,
                detection_rows[detection_slot[pair_detections]],
                lambda k: track_uv[track_rows[track_slot[pair_detections[k]]], 3:4].to(detection_uv.dtype),
            ),
        ]
    else:
        groups = [
            (track_uv, track_rows[own_tracks], lambda k: track_visible[own_tracks[k]][:, None]),
            (detection_uv, detection_rows[own_detections], lambda k: detection_visible[own_detections[k]][:, None]),
            (track_uv, track_rows[track_slot[pair_tracks]], lambda k: pair_mask(pair_tracks[k])[:, None]),
            (
                detection_uv,
                detection_rows[detection_slot[pair_detections]],
                lambda k: pair_mask(pair_detections[k])[:, None],
            ),
        ]
    sizes = [int(rows.shape[0]) for _, rows, _ in groups]
    offsets = [sum(sizes[:g]) for g in range(4)]
    num_maps = sum(sizes)
    if stats is not None:
        stats["texture_pairs_disjoint"] = stats.get("texture_pairs_disjoint", 0) + int(total - overlapping.sum())
        stats["encoded_maps"] = stats.get("encoded_maps", 0) + num_maps
    if num_maps == 0:
        return distances

    batch = max(1, 2 * pairs_per_batch)
    codes: Tensor | None = None
    calls = 0

    def store(first: int, encoded: Tensor) -> None:
        nonlocal codes
        if codes is None:
            codes = torch.empty((num_maps, *encoded.shape[1:]), dtype=encoded.dtype, device=device)
        codes[first : first + encoded.shape[0]] = encoded.to(device)

    # A group that needs no mask and reads float32 rows (e.g. a frame's masked detection maps, the
    # tracks' own maps) is encoded straight from its source, run of consecutive rows by run, without
    # a copy (so the encoder must not write into its input, which no nn.Module forward does). On an
    # accelerator a gather is cheap and small launches are not, and small maps are cheaper to
    # gather than to encode in many calls: there only a group that is one run.
    assembled = []
    for (source, rows, mask), first, size in zip(groups, offsets, sizes, strict=True):
        bounds = [0, size]
        if mask is None and size > 0 and source.dtype == torch.float32:
            bounds = [0, *((rows[1:] != rows[:-1] + 1).nonzero().flatten() + 1).tolist(), size]
        split_ok = device.type == "cpu" and source[0].numel() * source.element_size() >= DIRECT_ENCODE_MIN_MAP_BYTES
        if size == 0 or mask is not None or source.dtype != torch.float32 or (len(bounds) > 2 and not split_ok):
            assembled.append((source, rows, mask, first, size))
            continue
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            base = int(rows[lo]) - lo
            for start in range(lo, hi, batch):
                stop = min(start + batch, hi)
                with torch.no_grad():
                    store(first + start, encoder(source[base + start : base + stop]))
                calls += 1

    # The other maps: gathered (and masked) into one reused buffer, batch by batch across groups.
    num_assembled = sum(size for *_, size in assembled)
    if num_assembled:
        buffer = _reusable(
            workspace, "texture_maps", (min(batch, num_assembled), *track_uv.shape[1:]), track_uv
        )
    for start in range(0, num_assembled, batch):
        stop = min(start + batch, num_assembled)
        pieces = []  # (global first code row, count) of each group part in this batch
        local_first = 0
        for source, rows, mask, first, size in assembled:
            lo, hi = max(start, local_first), min(stop, local_first + size)
            if lo < hi:
                local = torch.arange(lo - local_first, hi - local_first, device=device)
                target = buffer[lo - start : hi - start]
                if source.dtype == target.dtype:
                    torch.index_select(source, 0, rows[local], out=target)
                else:
                    target.copy_(source.index_select(0, rows[local]))
                if mask is not None:
                    target.mul_(mask(local))
                pieces.append((first + lo - local_first, hi - lo))
            local_first += size
        with torch.no_grad():
            encoded = encoder(buffer[: stop - start])
        calls += 1
        position = 0
        for first, count in pieces:
            store(first, encoded[position : position + count])
            position += count
    if stats is not None:
        stats["encoder_calls"] = stats.get("encoder_calls", 0) + calls
    assert codes is not None

    # Code row of each overlapping pair's two sides.
    def positions(selected: Tensor, count: int) -> Tensor:
        lookup = torch.full((count,), -1, dtype=torch.int64, device=device)
        lookup[selected] = torch.arange(selected.shape[0], device=device)
        return lookup

    track_code = torch.empty(total, dtype=torch.int64, device=device)
    track_code[track_whole] = offsets[0] + positions(own_tracks, track_rows.shape[0])[track_slot[track_whole]]
    track_code[pair_tracks] = offsets[2] + torch.arange(pair_tracks.shape[0], device=device)
    detection_code = torch.empty(total, dtype=torch.int64, device=device)
    detection_code[detection_whole] = (
        offsets[1] + positions(own_detections, detection_rows.shape[0])[detection_slot[detection_whole]]
    )
    detection_code[pair_detections] = offsets[3] + torch.arange(pair_detections.shape[0], device=device)
    # The per-pair formula's float64 steps, each code scaled once instead of once per pair.
    codes = codes.flatten(1)
    scaled = _reusable(workspace, "texture_codes", tuple(codes.shape), codes, torch.float64)
    scaled.copy_(codes).div_(APPEARANCE_SCALE)  # codes.double() / 1000, in float64
    scored = overlapping.nonzero().flatten()
    chunk_size = 64
    difference = _reusable(
        workspace, "texture_differences", (min(chunk_size, scored.shape[0]), codes.shape[1]), codes, torch.float64
    )
    other = _reusable(workspace, "texture_others", tuple(difference.shape), codes, torch.float64)
    for start in range(0, scored.shape[0], chunk_size):
        chunk = scored[start : start + chunk_size]
        n = chunk.shape[0]
        torch.index_select(scaled, 0, track_code[chunk], out=difference[:n])
        torch.index_select(scaled, 0, detection_code[chunk], out=other[:n])
        difference[:n].sub_(other[:n]).pow_(2)
        distances[chunk] = TEXTURE_WEIGHT * difference[:n].sum(dim=1)
    return distances


def appearance_code_distance(track_appearance: Tensor, detection_appearance: Tensor) -> Tensor:
    """Squared L2 between appearance codes divided by 1000 (PHALP's 'A' cue); (T, D) float64."""
    a = track_appearance.double() / APPEARANCE_SCALE
    b = detection_appearance.double() / APPEARANCE_SCALE
    return ((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T).clamp_min(0.0)


@dataclass
class TrackFeatures:
    """Track-side features at matching time (T rows, tracker-list order)."""

    pose: Tensor  # (T, 229) predicted pose
    location: Tensor  # (T, 99) predicted location
    appearance: Tensor | None  # (T, 4096) last detection's appearance code; may be None when ``uv`` is used
    uv: Tensor | None  # (C, 4, S, S) blended UV maps (the bank's storage), or None
    uv_rows: Tensor | None = None  # (T,) row of ``uv`` for each track; None = row t is track t


def eq019_cost(
    tracks: TrackFeatures,
    detection_pose: Tensor,
    detection_location: Tensor,
    detection_appearance: Tensor,
    detection_uv: Tensor | None,
    encoder: AppearanceEncoder | None,
    betas: Sequence[float] = EQ019_BETAS,
    pose_clip: float = EQ019_POSE_CLIP,
    gate_threshold: float | None = None,
    pairs_per_batch: int = 16,
    nan_cost: float = 0.0,
    stats: dict[str, int] | None = None,
    workspace: dict[str, Tensor] | None = None,
    uv_masked: bool = False,
    uv_visibility: tuple[np.ndarray, np.ndarray] | None = None,
) -> Tensor:
    """The full EQ_019 cost matrix.

    The texture distance is used when an encoder and both UV maps are available; otherwise the
    appearance codes are compared directly.

    Args:
        tracks: track-side features.
        detection_pose: (D, 229); detection_location: (D, 99); detection_appearance: (D, 4096);
        detection_uv: (D, 4, S, S) or None.
        encoder: appearance encoder for the texture distance, or None.
        betas: (beta_T, beta_P, beta_L, beta_N).
        pose_clip: clip of the squared pose distance.
        gate_threshold: when set, the texture is only encoded for pairs whose cost without texture is
            <= this value. The texture factor is >= 1, so the skipped pairs cost more than the
            threshold anyway and the thresholded matrix is unchanged; their entry is the cost
            without texture (a lower bound).
        pairs_per_batch: pairs per encoder call.
        nan_cost: value of NaN entries (PHALP's ``nan_to_num`` gives 0).
        stats: if given, ``stats["texture_pairs"]`` is increased by the number of pairs whose
            texture is scored, and the counters of :func:`texture_distance` are increased.
        workspace: buffers kept between calls for :func:`texture_distance`.
        uv_masked: the track and detection maps are in masked form (see :func:`texture_distance`).
        uv_visibility: packed visibility words of ``tracks.uv``'s rows and the detection maps
            (``visibility`` of :func:`texture_distance`).

    Returns:
        (T, D) float64; +inf becomes the largest float64, NaN becomes ``nan_cost``.
    """
    beta_texture = betas[0]
    without_texture = pose_location_depth_cost(tracks.pose, tracks.location, detection_pose, detection_location, betas, pose_clip)
    num_tracks, num_detections = without_texture.shape
    use_texture = encoder is not None and tracks.uv is not None and detection_uv is not None
    if use_texture:
        if gate_threshold is None:
            candidates = torch.ones_like(without_texture, dtype=torch.bool)
        else:
            candidates = without_texture <= gate_threshold  # NaN compares False: stays NaN below
        pairs = candidates.nonzero()
        if stats is not None:
            stats["texture_pairs"] = stats.get("texture_pairs", 0) + int(pairs.shape[0])
        texture = torch.zeros_like(without_texture)
        if pairs.numel():
            storage_pairs = pairs.clone()
            if tracks.uv_rows is not None:
                storage_pairs[:, 0] = tracks.uv_rows[pairs[:, 0]]
            texture[pairs[:, 0], pairs[:, 1]] = texture_distance(
                tracks.uv,
                detection_uv,
                storage_pairs.to(tracks.uv.device),
                encoder,
                pairs_per_batch,
                stats=stats,
                workspace=workspace,
                masked=uv_masked,
                visibility=uv_visibility,
            ).to(without_texture.device)
    else:
        if tracks.appearance is None:
            raise ValueError("eq019_cost: without UV maps and an encoder the tracks' appearance codes are needed")
        texture = appearance_code_distance(tracks.appearance, detection_appearance)
    cost = (texture * beta_texture + 1.0) * without_texture  # (1 + beta_T r_T) without_texture
    return torch.nan_to_num(cost, nan=nan_cost, posinf=_FLOAT64_MAX)


@dataclass
class Assignment:
    """Result of the thresholded assignment, in PHALP's list orders."""

    matches: list[tuple[int, int]]  # (track index, detection index), ascending track index
    unmatched_tracks: list[int]
    unmatched_detections: list[int]  # unassigned columns ascending, then rejected pairs' columns


def cpython_set_order_difference(num_tracks: int, matched_tracks: Sequence[int]) -> list[int]:
    """``list(set(range(num_tracks)) - set(matched_tracks))``: PHALP's unmatched-track order.

    The iteration order of a CPython set of small ints is hash-slot order (``i & mask`` of the
    result set's table), not ascending: {3, 9, 12} iterates as [9, 3, 12]. Building the same set
    expression with Python ints reproduces the original's order exactly on CPython.
    """
    return list(set(range(num_tracks)) - {int(index) for index in matched_tracks})


def hungarian_assignment(cost: Tensor, threshold: float, set_order: bool = False) -> Assignment:
    """Rectangular min-sum assignment with PHALP's threshold rules (docs/tracker.md).

    Costs above ``threshold`` are clipped to ``threshold + 1e-5`` before solving; assigned pairs
    with cost above the threshold are rejected.

    Args:
        cost: (T, D) cost matrix.
        threshold: largest accepted cost (PHALP 100).
        set_order: order the unmatched tracks as a CPython set (reference) instead of ascending.

    Returns:
        The :class:`Assignment`.
    """
    from scipy.optimize import linear_sum_assignment

    num_tracks, num_detections = cost.shape
    if num_tracks == 0 or num_detections == 0:
        unmatched_tracks = (
            cpython_set_order_difference(num_tracks, []) if set_order else list(range(num_tracks))
        )
        return Assignment([], unmatched_tracks, list(range(num_detections)))
    clipped = cost.detach().double().cpu().numpy().copy()
    clipped[clipped > threshold] = threshold + 1e-5
    rows, cols = linear_sum_assignment(clipped)
    accepted = clipped[rows, cols] <= threshold
    matched_rows = rows[accepted].tolist()
    matches = list(zip(matched_rows, cols[accepted].tolist(), strict=True))
    assigned = np.zeros(num_detections, dtype=bool)
    assigned[cols] = True
    unmatched_detections = np.flatnonzero(~assigned).tolist() + cols[~accepted].tolist()
    if set_order:
        unmatched_tracks = cpython_set_order_difference(num_tracks, matched_rows)
    else:
        matched = np.zeros(num_tracks, dtype=bool)
        matched[rows[accepted]] = True
        unmatched_tracks = np.flatnonzero(~matched).tolist()
    return Assignment(matches, unmatched_tracks, unmatched_detections)


def ground_truth_assignment(
    track_gt_ids: Tensor, detection_gt_ids: Tensor, set_order: bool = False
) -> Assignment:
    """Match tracks and detections that carry the same given id (PHALP's ``use_gt``).

    Each track takes the first detection with its id and each detection is used once (PHALP would
    update a track twice on duplicate ids).

    Args:
        track_gt_ids: (T,) id of each track's latest detection (-1 = none).
        detection_gt_ids: (D,) given ids (-1 = none).
        set_order: CPython set order for the unmatched tracks.
    """
    num_tracks, num_detections = track_gt_ids.shape[0], detection_gt_ids.shape[0]
    equal = (track_gt_ids[:, None] == detection_gt_ids[None, :]) & (detection_gt_ids[None, :] >= 0)
    matches: list[tuple[int, int]] = []
    used: set[int] = set()
    for track_index, detection_index in equal.nonzero().tolist():
        if detection_index in used or (matches and matches[-1][0] == track_index):
            continue
        matches.append((track_index, detection_index))
        used.add(detection_index)
    matched_rows = [r for r, _ in matches]
    if set_order:
        unmatched_tracks = cpython_set_order_difference(num_tracks, matched_rows)
    else:
        unmatched_tracks = sorted(set(range(num_tracks)) - set(matched_rows))
    unmatched_detections = [c for c in range(num_detections) if c not in used]
    return Assignment(matches, unmatched_tracks, unmatched_detections)


def gated_assignment(
    cost: Tensor | np.ndarray,
    threshold: float,
    stages: Sequence[tuple[Tensor | np.ndarray, Tensor | np.ndarray]],
    may_start_track: Tensor | np.ndarray | None = None,
) -> Assignment:
    """Assignment in priority stages over gated costs, where leaving a pair unmatched is always allowed.

    Entries that are +inf or NaN (gated out) or above ``threshold`` can never be matched, not even
    as a side effect of the solver: each stage maximises the summed margin ``threshold - cost`` of
    its accepted pairs (the rectangular solver runs on ``min(cost - threshold, 0)``), so a detection
    is left unmatched rather than pushed onto a track it does not fit, and no chain of re-assignments
    can pay for an implausible pair. Stages run in order on the tracks and detections that are still
    free, so tracks of an earlier stage (recently seen, confirmed) cannot be outbid by later ones
    (long lost, tentative).

    Args:
        cost: (T, D) cost (tensor or array); +inf marks a gated-out pair.
        threshold: largest accepted cost.
        stages: (track mask (T,), detection mask (D,)) bool pairs, highest priority first.
        may_start_track: (D,) bool, detections that may start a new track when left unmatched
            (default all); the others are dropped (low-score detections).

    Returns:
        The :class:`Assignment`: matches by ascending track index, unmatched tracks ascending,
        unmatched detections that may start a track, ascending.
    """
    from scipy.optimize import linear_sum_assignment

    # A handful of tracks and detections: NumPy on the host is several times cheaper per operation.
    values = _host_array(cost).astype(np.float64, copy=False)
    num_tracks, num_detections = values.shape
    valid = np.isfinite(values) & (values <= threshold)  # NaN compares False, silently
    gain = np.where(valid, values - threshold, 0.0)
    track_free = np.ones(num_tracks, dtype=bool)
    detection_free = np.ones(num_detections, dtype=bool)
    matches: list[tuple[int, int]] = []
    for track_mask, detection_mask in stages:
        track_index = np.flatnonzero(_host_array(track_mask) & track_free)
        detection_index = np.flatnonzero(_host_array(detection_mask) & detection_free)
        if track_index.size == 0 or detection_index.size == 0:
            continue
        rows, cols = linear_sum_assignment(gain[np.ix_(track_index, detection_index)])
        tracks, detections = track_index[rows], detection_index[cols]
        accepted = valid[tracks, detections]
        tracks, detections = tracks[accepted], detections[accepted]
        matches.extend(zip(tracks.tolist(), detections.tolist(), strict=True))
        track_free[tracks] = False
        detection_free[detections] = False
    matches.sort()
    may_start = detection_free if may_start_track is None else detection_free & _host_array(may_start_track)
    return Assignment(matches, np.flatnonzero(track_free).tolist(), np.flatnonzero(may_start).tolist())


def _host_array(value: Tensor | np.ndarray) -> np.ndarray:
    """``value`` as a NumPy array on the host (a view for CPU tensors)."""
    return value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)
