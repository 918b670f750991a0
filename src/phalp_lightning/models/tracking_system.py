"""TrackingSystem: the predict-only LightningModule, frames -> detector -> crops -> HMAR -> FrameDetections.

It holds the frozen detector and HMAR and turns each frame of a batch into a
:class:`~phalp_lightning.structures.FrameDetections` (docs/predict.md, What runs; docs/geometry.md): boxes, scores,
masks, the 229-d pose and 99-d location vectors (:mod:`phalp_lightning.utils.vectors`), the 4096-d
appearance code and the UV map. It does no tracking: the stateful, non-differentiable tracker runs in
:class:`~phalp_lightning.tracking.callback.TrackerCallback`, frame by frame, in order.

The system is never checkpointed; it is assembled at predict time from the HMAR checkpoint, the
detector config and the tracker config.

Without HMAR (``hmar=None``, predict's box-only path when no checkpoint is given) nothing is cropped or
lifted: each frame carries its boxes, scores, masks and the padded-box centre and scale, and every 3D
field (pose, location, appearance code, camera, 3-D joints) at its usual shape filled with NaN, the
mark of "not computed" (:func:`~phalp_lightning.structures.absent_3d`); there is no UV map.

Speed knobs (docs/predict.md, "Speed"): all crops of a batch of frames go through HMAR together
(``source.batch_size`` frames, in chunks of ``max_people_per_forward`` crops); ``precision="bf16"``
runs HMAR's convolutional parts (backbone, texture head, appearance encoder) with bfloat16 weights
and activations while the SMPL regressor, the body model and every output stay float32;
``channels_last`` stores the convolutions' weights and inputs NHWC. Both are off by default and the
default path computes exactly what HMAR's own ``forward`` does.
"""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch
from torch import Tensor

from phalp_lightning.detection.base import MIN_BOX_HEIGHT, MIN_BOX_WIDTH, Detector, small_box_filter
from phalp_lightning.structures import BatchDetections, Detections, FrameDetections, absent_3d
from phalp_lightning.utils.geometry import IMG_SIZE, box_center_scale_in_padded_frame
from phalp_lightning.utils.person_crops import crop_people, crop_squares
from phalp_lightning.utils.vectors import location_vector, pose_vector

PRECISIONS = ("32", "bf16")
# HMAR parts that stay float32 under precision="bf16": the SMPL regressor (its iterative refinement
# accumulates residuals) and the body model (vertex positions); both are a small share of the cost.
FLOAT32_PARTS = ("smpl_head", "smpl")
# Parts whose bfloat16 output is handed back as float32: the texture head's UV flow feeds
# grid_sample on the float32 crop (sampling positions keep full precision; CPU grid_sample in
# bfloat16 also returned NaN rows in torch 2.13).
FLOAT32_OUTPUTS = ("texture_head",)


def _inputs_to_float32(module: torch.nn.Module, inputs: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(x.float() if isinstance(x, Tensor) and x.is_floating_point() else x for x in inputs)


def _inputs_to_weight_dtype(module: torch.nn.Module, inputs: tuple[Any, ...]) -> tuple[Any, ...]:
    dtype = module.weight.dtype  # type: ignore[union-attr]
    return tuple(x.to(dtype) if isinstance(x, Tensor) and x.is_floating_point() else x for x in inputs)


def _output_to_float32(module: torch.nn.Module, inputs: tuple[Any, ...], output: Any) -> Any:
    return output.float() if isinstance(output, Tensor) else output


def _convert_to_bfloat16(hmar: torch.nn.Module) -> None:
    """bfloat16 weights for HMAR's layers, float32 at the boundaries (crops, UV sampling, SMPL, outputs).

    Every convolution and linear layer casts its input to its own weight dtype, so float32 tensors
    (the crops, the UV maps the tracker encodes) enter the bfloat16 layers without a cast elsewhere.
    """
    hmar.to(torch.bfloat16)
    for name in FLOAT32_PARTS:
        part = getattr(hmar, name, None)
        if isinstance(part, torch.nn.Module):
            part.float()
            part.register_forward_pre_hook(_inputs_to_float32)
    for module in hmar.modules():
        if isinstance(module, torch.nn.Conv2d | torch.nn.Linear) and module.weight.dtype == torch.bfloat16:
            module.register_forward_pre_hook(_inputs_to_weight_dtype)
    for name in FLOAT32_OUTPUTS:
        part = getattr(hmar, name, None)
        if isinstance(part, torch.nn.Module):
            part.register_forward_hook(_output_to_float32)


def _cpu(detections: Detections) -> Detections:
    return Detections(**{name: value.cpu() if isinstance(value, Tensor) else value for name, value in vars(detections).items()})


class TrackingSystem(L.LightningModule):
    """Frozen detector + cropping + HMAR, one batch of consecutive frames of one video at a time.

    Args:
        detector: a :class:`~phalp_lightning.detection.base.Detector`; an ``nn.Module`` detector is
            registered as a submodule so Lightning places it on the device.
        hmar: the HMAR network (``forward``, ``get_3d_parameters``, ``encode_appearance``), or None
            for the box-only path (no crops, no HMAR; 3D fields absent, see the module docstring).
        crop_size: HMAR input side; None takes ``hmar.img_size`` (256 for the official weights).
        aspect_ratio: optional (w, h) box expansion before cropping (4D-Humans: [192, 256]).
        min_box_width, min_box_height: the small-box filter, original-frame pixels (PHALP 50 x 100).
        use_given_boxes: frames whose source gives boxes use them instead of the detector (PHALP).
        keep_uv: keep the (N, 4, S, S) UV maps for the tracker's texture distance.
        max_people_per_forward: split HMAR forwards into chunks of at most this many crops.
        precision: ``"32"`` (float32, the reference) or ``"bf16"``: HMAR's convolutional parts hold
            bfloat16 weights (converted in place: the system owns ``hmar``), outputs are float32.
            Faster on GPUs and on CPUs with AMX/AVX512-BF16; features change within bf16 rounding
            (tolerances in docs/predict.md).
        channels_last: NHWC memory format for HMAR's weights and crops (faster convolutions on most
            GPUs and with bf16 on CPU; float32 results then differ by summation order only).
    """

    def __init__(
        self,
        detector: Detector,
        hmar: torch.nn.Module | None,
        crop_size: int | None = None,
        aspect_ratio: tuple[float, float] | None = None,
        min_box_width: float = MIN_BOX_WIDTH,
        min_box_height: float = MIN_BOX_HEIGHT,
        use_given_boxes: bool = True,
        keep_uv: bool = True,
        max_people_per_forward: int = 64,
        precision: Literal["32", "bf16"] = "32",
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.detector = detector
        self.hmar = hmar.eval().requires_grad_(False) if hmar is not None else None
        network_size = getattr(hmar, "img_size", None)
        if crop_size is None:
            crop_size = int(network_size) if network_size is not None else 256
        elif network_size is not None and int(network_size) != crop_size:
            raise ValueError(f"system.crop_size={crop_size} but HMAR takes {network_size} px crops; set system.crop_size=null")
        self.crop_size = crop_size
        self.aspect_ratio = tuple(aspect_ratio) if aspect_ratio is not None else None
        self.min_box_width = min_box_width
        self.min_box_height = min_box_height
        self.use_given_boxes = use_given_boxes
        self.keep_uv = keep_uv
        self.max_people_per_forward = max_people_per_forward
        precision = str(precision)
        if precision not in PRECISIONS:
            raise ValueError(f"system.precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision = precision
        self.channels_last = bool(channels_last)
        if self.hmar is not None and precision == "bf16":
            _convert_to_bfloat16(self.hmar)
        if self.hmar is not None and self.channels_last:
            self.hmar.to(memory_format=torch.channels_last)

    @property
    def box_only(self) -> bool:
        """True when there is no HMAR: frames carry boxes and absent (NaN) 3D fields."""
        return self.hmar is None

    def _network_input(self, images: Tensor) -> Tensor:
        """(K, C, S, S) float32 in the memory format HMAR's convolutions hold (their dtype is cast per layer)."""
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def encode_appearance(self, uv_vector: Tensor) -> Tensor:
        """HMAR's appearance code (K, D) float32 of (K, 4, S, S) UV maps, at the system's precision.

        The tracker encodes its blended UV maps with this, so both encoders run alike.
        """
        if self.hmar is None:
            raise RuntimeError("encode_appearance: this TrackingSystem has no HMAR (box-only path)")
        return self.hmar.encode_appearance(self._network_input(uv_vector)).float()

    def detect(self, images: Tensor, given: list[Detections | None]) -> list[Detections]:
        """Given boxes where the source has them, the detector on the other frames (as PHALP does)."""
        use_given = [self.use_given_boxes and boxes is not None and len(boxes) > 0 for boxes in given]
        to_detect = [i for i, flag in enumerate(use_given) if not flag]
        detected = iter(self.detector(images[to_detect]) if to_detect else [])
        return [_cpu(given[i]) if use_given[i] else next(detected) for i in range(len(given))]  # type: ignore[union-attr]

    def hmar_features(self, crops: Tensor, padded_boxes: Tensor, image_size: tuple[int, int]) -> dict[str, Tensor]:
        """HMAR on (K, 4, S, S) crops -> pose (K, 229), location (K, 99), appearance (K, D), uv, camera, joints."""
        height, width = image_size
        outputs: list[dict[str, Tensor]] = []
        for start in range(0, crops.shape[0], self.max_people_per_forward):
            chunk = crops[start : start + self.max_people_per_forward]
            box_chunk = padded_boxes[start : start + self.max_people_per_forward]
            out = self.hmar(self._network_input(chunk))
            center, scale = box_center_scale_in_padded_frame(box_chunk, height, width, IMG_SIZE)
            params = self.hmar.get_3d_parameters(out["pose_smpl"], out["pred_cam"], center, scale, img_size=IMG_SIZE)
            smpl = out["pose_smpl"]
            cam_t = params["pred_cam_t"]
            outputs.append(
                {
                    "pose": pose_vector(smpl["global_orient"], smpl["body_pose"], smpl["betas"], cam_t),
                    "location": location_vector(params["joints_2d"], cam_t, IMG_SIZE),
                    "appearance": self.hmar.encode_appearance(self._network_input(out["uv_vector"])).flatten(1).float(),
                    "uv": out["uv_vector"],
                    "camera_bbox": out["pred_cam"],
                    "joints_3d": params["joints_3d"],
                }
            )
        return {key: torch.cat([out[key] for out in outputs]).float().cpu() for key in outputs[0]}

    def predict_step(self, batch: dict[str, Any], batch_idx: int = 0) -> BatchDetections:
        """One batch of frames -> :class:`BatchDetections` (CPU tensors, one FrameDetections per frame).

        A failure is returned as ``error`` (and logged by the callback) so one bad video does not end
        a run over many.
        """
        if batch.get("error"):
            return BatchDetections(video=batch["video"], frames=[], error=batch["error"])
        try:
            return BatchDetections(video=batch["video"], frames=self._frames(batch))
        except (RuntimeError, ValueError, KeyError, IndexError) as error:  # reported per video by the callback
            return BatchDetections(video=batch["video"], frames=[], error=f"{type(error).__name__}: {error}")

    def _frames(self, batch: dict[str, Any]) -> list[FrameDetections]:
        images: Tensor = batch["images"]
        height, width = int(images.shape[1]), int(images.shape[2])
        detections = self.detect(images, batch["given"])
        if self.box_only:
            return self._box_only_frames(batch, detections, (height, width))
        kept, crops, padded, centers, sides = [], [], [], [], []
        for frame, found in enumerate(detections):
            found, index = small_box_filter(_cpu(found), self.min_box_width, self.min_box_height)
            person_crops = crop_people(
                images[frame].to(self.device),
                found.boxes.to(self.device),
                None if found.masks is None else found.masks.to(self.device),
                crop_size=self.crop_size,
                aspect_ratio=self.aspect_ratio,  # type: ignore[arg-type]
            )
            kept.append((found, index))
            crops.append(person_crops.images)
            padded.append(person_crops.padded_boxes)
            centers.append(person_crops.center.cpu())
            sides.append(person_crops.side.cpu())
        counts = [len(found) for found, _ in kept]
        features: dict[str, Tensor] = {}
        if sum(counts):
            # Padded boxes of different frames share the frame size, so one batched HMAR pass serves all.
            features = self.hmar_features(torch.cat(crops), torch.cat(padded), (height, width))
        frames = []
        offset = 0
        for frame, ((found, index), count) in enumerate(zip(kept, counts, strict=True)):
            rows = slice(offset, offset + count)
            offset += count
            frames.append(self._frame_detections(batch, frame, found, index, {k: v[rows] for k, v in features.items()}, centers[frame], sides[frame], (height, width)))
        return frames

    def _box_only_frames(self, batch: dict[str, Any], detections: list[Detections], image_size: tuple[int, int]) -> list[FrameDetections]:
        """Frames without HMAR: the filtered boxes, the padded-box centre and side HMAR's crop would
        have had (the same numbers the writers report), and absent 3D fields; no pixel is cropped."""
        frames = []
        for frame, found in enumerate(detections):
            found, index = small_box_filter(_cpu(found), self.min_box_width, self.min_box_height)
            _, center, side = crop_squares(found.boxes.float(), self.aspect_ratio)  # type: ignore[arg-type]
            frames.append(self._frame_detections(batch, frame, found, index, absent_3d(len(found)), center, side, image_size))
        return frames

    def _frame_detections(
        self,
        batch: dict[str, Any],
        frame: int,
        found: Detections,
        index: Tensor,
        features: dict[str, Tensor],
        center: Tensor,
        side: Tensor,
        image_size: tuple[int, int],
    ) -> FrameDetections:
        n = len(found)
        if n == 0 and self.hmar is not None:
            features = {
                "pose": torch.zeros(0, 229),
                "location": torch.zeros(0, 99),
                "appearance": torch.zeros(0, self.hmar.appearance_dim),
                "uv": torch.zeros(0, 4, self.crop_size, self.crop_size),
                "camera_bbox": torch.zeros(0, 3),
                "joints_3d": torch.zeros(0, 45, 3),
            }
        return FrameDetections(
            video=batch["video"],
            frame_index=int(batch["frame_index"][frame]),
            frame_name=batch["frame_name"][frame],
            image_size=image_size,
            boxes=found.boxes.float(),
            scores=found.scores.float(),
            appearance=features["appearance"],
            pose=features["pose"],
            location=features["location"],
            uv=features.get("uv") if self.keep_uv else None,
            masks=found.masks,
            camera_bbox=features["camera_bbox"],
            joints_3d=features["joints_3d"],
            center=center,
            scale=side / max(image_size),
            gt_track_ids=found.track_ids,
            detection_index=index,
        ).validate()
