"""Track state for the PHALP tracker, stored as one structure of arrays over all tracks.

A :class:`TrackBank` holds every live track in preallocated storage rows (grown by doubling), so
per-frame work gathers and scatters rows of a few tensors instead of looping over Python track
objects. ``order`` lists the storage rows in tracker-list order (creation order = ascending id),
which is the order PHALP's association, recording and back-filling use.
"""

from __future__ import annotations

import weakref
from collections import deque
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import torch
from torch import Tensor

from phalp_lightning.structures import FrameDetections
from phalp_lightning.tracking.association import pack_visibility
from phalp_lightning.utils.vectors import LOCATION_DIM, POSE_DIM


class TrackState(IntEnum):
    """PHALP/deep_sort track states."""

    TENTATIVE = 0
    CONFIRMED = 1
    DELETED = 2


@dataclass
class DetectionRecord:
    """One past detection of a track: row ``row`` of ``detection``, the tracker's copy of that frame.

    Every record of a frame shares one copy of its detections without UV maps, so memory stays
    bounded and no per-frame row blocks are built.
    """

    frame_index: int
    detection: FrameDetections
    row: int


def blend_uv(previous: Tensor, new: Tensor, weight: Tensor) -> Tensor:
    """PHALP's running UV texture update for K matched tracks at once.

    On texels visible in both maps the RGB becomes ``(1 - a) old + a new``; texels visible in one map
    keep that map's RGB; the rest become 0. The mask becomes +1 where either map is visible, else -1.

    Args:
        previous: (K, 4, S, S) track maps; new: (K, 4, S, S) detection maps (mask channel +-1).
        weight: (K,) blend rate ``a = alpha * score^2``.

    Returns:
        (K, 4, S, S) in ``previous``'s dtype.
    """
    new = new.to(previous.dtype)
    old_visible = (previous[:, 3:4] > 0.5).to(previous.dtype)
    new_visible = (new[:, 3:4] > 0.5).to(previous.dtype)
    a = weight.to(previous.dtype).view(-1, 1, 1, 1)
    # Per-texel weights: (1 - a, a) on the overlap, (1, 0) / (0, 1) where one map is visible, 0 elsewhere.
    old_weight = old_visible * ((1.0 - a) * new_visible + (1.0 - new_visible))
    new_weight = new_visible * (a * old_visible + (1.0 - old_visible))
    out = torch.empty_like(previous)
    torch.mul(previous[:, :3], old_weight, out=out[:, :3])
    out[:, :3].addcmul_(new[:, :3], new_weight)
    out[:, 3:4] = torch.where((old_visible + new_visible) > 0, 1.0, -1.0)
    return out


class TrackBank:
    """Structure-of-arrays storage of the tracker's tracks.

    Per storage row: ``track_id``, ``hits``, ``age``, ``time_since_update``, ``state``, ``gt_id``,
    the bounded histories (``history_time`` (C, H), ``history_pose`` (C, H, 229),
    ``history_location`` (C, H, 99)), the features matched against the next frame
    (``predicted_pose``, ``predicted_location``, ``appearance``, ``uv``) and, in Python,
    the last ``record_length`` :class:`DetectionRecord` (for ghosts and back-filling). ``uv`` holds
    each track's blended map in masked form (RGB 0 where not visible, mask channel 1/0; see
    :meth:`masked_detection_uv`).

    Args:
        history_length: H (PHALP ``track_history`` = 7).
        record_length: detection records kept per track (``n_init``, the back-fill depth).
        device: storage device.
        uv_dtype: dtype of the blended UV maps (PHALP blends in float64).
    """

    # Maps at least this large (bytes) are blended straight from the frame's masked maps on the
    # CPU, block by block; smaller ones are gathered first (256 KiB: 4 x 128 x 128 float32).
    direct_blend_min_bytes = 1 << 18

    def __init__(
        self,
        history_length: int = 7,
        record_length: int = 5,
        device: torch.device | str = "cpu",
        uv_dtype: torch.dtype = torch.float32,
    ) -> None:
        self.history_length = history_length
        self.record_length = record_length
        self.device = torch.device(device)
        self.uv_dtype = uv_dtype
        self.capacity = 0
        self.order: list[int] = []
        self._free: list[int] = []
        self.records: list[deque[DetectionRecord]] = []
        # Sized by the first detections: the appearance width follows HMAR's crop size (4096 at 256 px).
        self.appearance: Tensor | None = None
        self.uv: Tensor | None = None
        # Buffers reused from frame to frame (UV blending, texture encoding): tens of MiB of fresh
        # pages per frame would otherwise be faulted in and zeroed by the OS every time.
        self.workspace: dict[str, Tensor] = {}
        self._masked_memo: tuple | None = None
        # On the CPU, each row's visible texels packed into 64-bit words (pack_visibility), kept up
        # to date by add and blend_uv_rows: the texture distance's exact overlap counts then cost a
        # few kilobytes of bit operations instead of comparing and packing every track map each frame.
        self.visible_words: np.ndarray | None = None
        self._allocate(16)

    def _allocate(self, capacity: int) -> None:
        def grow(old: Tensor | None, shape: tuple[int, ...], dtype: torch.dtype, fill: float = 0) -> Tensor:
            new = torch.full((capacity, *shape), fill, dtype=dtype, device=self.device)
            if old is not None:
                new[: old.shape[0]] = old
            return new

        first = self.capacity == 0
        h = self.history_length
        self.track_id = grow(None if first else self.track_id, (), torch.int64, -1)
        self.hits = grow(None if first else self.hits, (), torch.int64)
        self.age = grow(None if first else self.age, (), torch.int64)
        self.time_since_update = grow(None if first else self.time_since_update, (), torch.int64)
        self.state = grow(None if first else self.state, (), torch.int64, int(TrackState.DELETED))
        self.gt_id = grow(None if first else self.gt_id, (), torch.int64, -1)
        self.history_time = grow(None if first else self.history_time, (h,), torch.int64)
        self.history_pose = grow(None if first else self.history_pose, (h, POSE_DIM), torch.float32)
        self.history_location = grow(
            None if first else self.history_location, (h, LOCATION_DIM), torch.float32
        )
        self.predicted_pose = grow(None if first else self.predicted_pose, (POSE_DIM,), torch.float32)
        self.predicted_location = grow(
            None if first else self.predicted_location, (LOCATION_DIM,), torch.float32
        )
        if self.appearance is not None:
            self.appearance = grow(self.appearance, tuple(self.appearance.shape[1:]), torch.float32)
        if self.uv is not None:
            self.uv = grow(self.uv, tuple(self.uv.shape[1:]), self.uv_dtype)
        if self.visible_words is not None:
            words = np.zeros((capacity, self.visible_words.shape[1]), dtype=np.uint64)
            words[: self.visible_words.shape[0]] = self.visible_words
            self.visible_words = words
        self._free.extend(range(self.capacity, capacity))
        self.records.extend(deque(maxlen=self.record_length) for _ in range(capacity - self.capacity))
        self.capacity = capacity

    def __len__(self) -> int:
        return len(self.order)

    def rows(self) -> Tensor:
        """(T,) int64 storage rows in tracker-list order."""
        return torch.tensor(self.order, dtype=torch.int64, device=self.device)

    def add(
        self,
        track_ids: Tensor,
        frame_index: int,
        pose: Tensor,
        location: Tensor,
        appearance: Tensor,
        uv: Tensor | None,
        gt_ids: Tensor,
        confirmed: Tensor,
        records: list[DetectionRecord],
    ) -> Tensor:
        """Create K tracks from K detections (appended in the given order); returns their rows.

        The history starts as H copies of the detection and its features are the first prediction.
        """
        count = int(track_ids.shape[0])
        self._masked_memo = None  # the frame's masked detection maps are not needed any more
        while len(self._free) < count:
            self._allocate(max(2 * self.capacity, 16))
        # Lowest free rows first keeps storage compact; order is tracked separately.
        self._free.sort()
        new_rows = self._free[:count]
        del self._free[:count]
        rows = torch.tensor(new_rows, dtype=torch.int64, device=self.device)
        h = self.history_length
        self.track_id[rows] = track_ids.to(self.device)
        self.hits[rows] = 1
        self.age[rows] = 1
        self.time_since_update[rows] = 0
        self.state[rows] = torch.where(
            confirmed.to(self.device), int(TrackState.CONFIRMED), int(TrackState.TENTATIVE)
        )
        self.gt_id[rows] = gt_ids.to(self.device)
        self.history_time[rows] = frame_index
        self.history_pose[rows] = pose.float().unsqueeze(1).expand(-1, h, -1)
        self.history_location[rows] = location.float().unsqueeze(1).expand(-1, h, -1)
        self.predicted_pose[rows] = pose.float()
        self.predicted_location[rows] = location.float()
        if self.appearance is None:
            self.appearance = torch.zeros((self.capacity, appearance.shape[-1]), dtype=torch.float32, device=self.device)
        elif self.appearance.shape[-1] != appearance.shape[-1]:
            raise ValueError(
                f"appearance codes of width {appearance.shape[-1]} do not match the tracks' {self.appearance.shape[-1]}"
            )
        self.appearance[rows] = appearance.float()
        if uv is not None:
            if self.uv is None:
                self.uv = torch.zeros((self.capacity, *uv.shape[1:]), dtype=self.uv_dtype, device=self.device)
            elif tuple(self.uv.shape[1:]) != tuple(uv.shape[1:]):
                raise ValueError(
                    f"uv maps of shape {tuple(uv.shape[1:])} do not match the tracks' {tuple(self.uv.shape[1:])}"
                )
            # Masked form (see masked_detection_uv): the map times its own visibility.
            uv = uv.to(self.device, self.uv_dtype)
            visible = uv[:, 3:4] > 0.5
            self.uv[rows] = uv * visible
            if self.device.type == "cpu":
                words = pack_visibility(visible[:, 0])
                self._visible_words(words.shape[1])[new_rows] = words
        for row, record in zip(new_rows, records, strict=True):
            self.records[row].clear()
            self.records[row].append(record)
        self.order.extend(new_rows)
        return rows

    def push_history(
        self, rows: Tensor, frame_index: int, pose: Tensor, location: Tensor, reset_location: bool
    ) -> None:
        """Append one matched detection to the bounded histories of ``rows``.

        Args:
            rows: (K,) storage rows; pose: (K, 229); location: (K, 99).
            reset_location: a shot boundary: every history location becomes the new one, which
                restarts the location extrapolation.
        """
        h = self.history_length
        # index_select/index_copy_ move whole rows (several times faster than tensor indexing).
        times = torch.index_select(self.history_time, 0, rows)
        times = torch.cat([times[:, 1:], times.new_full((rows.shape[0], 1), frame_index)], 1)
        self.history_time.index_copy_(0, rows, times)
        poses = torch.index_select(self.history_pose, 0, rows)
        self.history_pose.index_copy_(0, rows, torch.cat([poses[:, 1:], pose.float().unsqueeze(1)], 1))
        if reset_location:
            self.history_location[rows] = location.float().unsqueeze(1).expand(-1, h, -1)
        else:
            locations = torch.index_select(self.history_location, 0, rows)
            self.history_location.index_copy_(
                0, rows, torch.cat([locations[:, 1:], location.float().unsqueeze(1)], 1)
            )

    def _visible_words(self, width: int) -> np.ndarray:
        """``visible_words``, made (all rows invisible) when the first maps arrive."""
        if self.visible_words is None:
            self.visible_words = np.zeros((self.capacity, width), dtype=np.uint64)
        return self.visible_words

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        """A reusable (shape) buffer from ``workspace``, grown along the first dimension as needed."""
        key = f"{name}:{dtype}"
        buffer = self.workspace.get(key)
        if buffer is None or buffer.shape[1:] != shape[1:] or buffer.shape[0] < shape[0]:
            buffer = torch.empty((max(shape[0], 8), *shape[1:]), dtype=dtype, device=self.device)
            self.workspace[key] = buffer
        return buffer[: shape[0]]

    def masked_detection_uv(self, uv: Tensor) -> Tensor:
        """A frame's UV maps in the bank's masked form, computed once per frame (memoised).

        Masked form: RGB kept where the mask channel is > 0.5 and zeroed elsewhere, mask channel 1
        (visible) or 0. It equals the map times its own visibility, which is what the texture
        distance encodes, so the bank stores track maps this way (see :meth:`blend_uv_rows`).

        Args:
            uv: (D, 4, S, S) maps with mask channel +-1 (PHALP's processed UV maps).

        Returns:
            (D, 4, S, S) on the bank's device, in ``uv``'s dtype, in a reused buffer: valid until the
            next frame's maps are masked.
        """
        return self._masked_detections(uv)[0]

    def detection_visibility(self, uv: Tensor) -> np.ndarray | None:
        """The frame's detection visibility packed by :func:`pack_visibility` (memoised with the maps); None off the CPU."""
        return self._masked_detections(uv)[1]

    def _masked_detections(self, uv: Tensor) -> tuple[Tensor, np.ndarray | None]:
        # Keyed on the tensor object (a weak reference: a later frame's tensor may reuse the address)
        # and its version counter (bumped by in-place writes; inference tensors have none). Each
        # detection is either blended into a track or starts one, so blend_uv_rows and add end the
        # memo's life within the frame's update.
        version = None if uv.is_inference() else uv._version
        memo = self._masked_memo
        if memo is not None and memo[0]() is uv and memo[1] == version:
            return memo[2], memo[3]
        source = uv.to(self.device)
        masked = self._buffer("masked_detections", tuple(source.shape), source.dtype)
        # The 0/1 mask written straight as floats, then a float x float product (both 2-3x faster
        # on the CPU than a bool mask copied or multiplied).
        torch.gt(source[:, 3:4], 0.5, out=masked[:, 3:4])
        torch.mul(source[:, :3], masked[:, 3:4], out=masked[:, :3])
        words = pack_visibility(masked[:, 3]) if self.device.type == "cpu" else None
        self._masked_memo = (weakref.ref(uv), version, masked, words)
        return masked, words

    def blend_uv_rows(self, rows: Tensor, detection_uv: Tensor, detections: Tensor, weight: Tensor) -> None:
        """Blend detection maps into the UV maps of ``rows`` in place (PHALP's update, as :func:`blend_uv`).

        Track maps are stored in masked form (:meth:`masked_detection_uv`): the mask channel is the
        0/1 visibility itself and RGB is 0 where not visible, so the per-texel weights come from
        float products of the two mask channels instead of comparisons and casts:
        ``w_old = 1 - a [O and N]`` and ``w_new = a [O] + (1 - [O])``. RGB becomes
        ``old * w_old + new * w_new`` with the same two operations and the same weight values as
        :func:`blend_uv` on every texel where either map is visible (``1 - a``/``a`` on both,
        ``1``/``0`` where one is), so the visible texels are bit for bit the same; texels visible in
        neither stay 0. The mask becomes ``max(O, N)``. Buffers are reused from frame to frame.

        Args:
            rows: (K,) storage rows (distinct); detection_uv: (D, 4, S, S) the frame's maps (+-1 mask);
            detections: (K,) row of ``detection_uv`` for each of ``rows``; weight: (K,) rate ``a``.
        """
        count = int(rows.shape[0])
        if count == 0:
            return
        if self.uv is None:
            self.uv = torch.zeros(
                (self.capacity, *detection_uv.shape[1:]), dtype=self.uv_dtype, device=self.device
            )
        masked, detection_words = self._masked_detections(detection_uv)
        if detection_words is not None:
            # The blended mask is the union of the two: OR the words (rows are distinct).
            self._visible_words(detection_words.shape[1])[rows.cpu().numpy()] |= detection_words[detections.cpu().numpy()]
        dtype = self.uv_dtype
        shape = (count, *self.uv.shape[1:])
        # Rows are independent: blend them in storage order, so that runs of consecutive rows
        # (tracks created together keep neighbouring rows) are updated in place, without a
        # gather and a scatter of their maps.
        order = torch.argsort(rows)
        rows, detections, weight = rows[order], detections.to(self.device)[order], weight.to(self.device)[order]
        map_bytes = self.uv[0].numel() * self.uv.element_size()
        # float64 storage (reference mode) reads the float32 maps directly too: an operation on the
        # two widens the float32 operand exactly, as the copy into a float64 buffer did.
        widening = masked.dtype == dtype or dtype == torch.float64
        if widening and self.device.type == "cpu" and map_bytes >= self.direct_blend_min_bytes:
            # Straight between the two storages, block by block: a gather of the detection maps
            # into track order would move every large map once more (on the CPU that copy cost as
            # much as the blend itself; small maps are cheaper to gather than to visit one by
            # one). Blocks are runs where rows and detections are both consecutive; a lone pair is
            # a block of one.
            a = weight.to(dtype).view(-1, 1, 1, 1)
            apart = (rows[1:] != rows[:-1] + 1) | (detections[1:] != detections[:-1] + 1)
            starts = [0, *(apart.nonzero().flatten() + 1).tolist(), count]
            for lo, hi, first, detection in zip(
                starts[:-1], starts[1:], rows[starts[:-1]].tolist(), detections[starts[:-1]].tolist(), strict=True
            ):
                size = hi - lo
                self._blend_block(self.uv[first : first + size], masked[detection : detection + size], a[lo:hi])
            self._masked_memo = None
            return
        new = self._buffer("blend_new", shape, dtype)
        if masked.dtype == dtype:
            torch.index_select(masked, 0, detections, out=new)
        else:
            new.copy_(masked.index_select(0, detections))
        a = weight.to(dtype).view(-1, 1, 1, 1)
        starts = [0, *((rows[1:] != rows[:-1] + 1).nonzero().flatten() + 1).tolist(), count]
        # A run costs a dozen small kernel launches; a gathered map costs two copies of its bytes.
        map_bytes = new[0].numel() * new.element_size()
        if len(starts) - 1 <= max(2, count * map_bytes // 300_000):
            for lo, hi in zip(starts[:-1], starts[1:], strict=True):
                first = int(rows[lo])
                self._blend_block(self.uv[first : first + hi - lo], new[lo:hi], a[lo:hi])
        else:
            previous = self._buffer("blend_previous", shape, dtype)
            torch.index_select(self.uv, 0, rows, out=previous)
            self._blend_block(previous, new, a)
            self.uv.index_copy_(0, rows, previous)
        self._masked_memo = None

    def _blend_block(self, previous: Tensor, new: Tensor, a: Tensor) -> None:
        """Blend ``new`` into ``previous`` in place (masked form, see :meth:`blend_uv_rows`)."""
        count = previous.shape[0]
        old_visible, new_visible = previous[:, 3:4], new[:, 3:4]
        weight_shape = (count, 1, *previous.shape[2:])
        old_weight = self._buffer("blend_old_weight", weight_shape, previous.dtype)
        torch.mul(old_visible, new_visible, out=old_weight).mul_(a)
        torch.sub(1.0, old_weight, out=old_weight)
        new_weight = self._buffer("blend_new_weight", weight_shape, previous.dtype)
        torch.sub(1.0, old_visible, out=new_weight)
        new_weight.addcmul_(old_visible, a.expand_as(old_visible))
        previous[:, :3].mul_(old_weight)
        previous[:, :3].addcmul_(new[:, :3], new_weight)
        torch.maximum(old_visible, new_visible, out=old_visible)

    def remove(self, keep: list[int]) -> list[int]:
        """Keep only the rows in ``keep`` (a subset of ``order``); return the removed rows."""
        kept = set(keep)
        removed = [row for row in self.order if row not in kept]
        self.order = [row for row in self.order if row in kept]
        for row in removed:
            self.records[row].clear()
        self.state[torch.tensor(removed, dtype=torch.int64, device=self.device)] = int(TrackState.DELETED)
        self._free.extend(removed)
        return removed
