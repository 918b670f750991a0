"""Small stand-ins with the real interfaces, for tests of the predict pipeline."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from phalp_lightning.utils.geometry import IMG_SIZE, crop_cam_to_full_translation, project_to_padded_frame


class FakeHMAR(torch.nn.Module):
    """HMAR's interface with closed-form outputs: identity pose, fixed camera, appearance = pooled crop.

    ``location`` then follows the box centre exactly, and ``appearance`` the crop's colours, which
    is all the tracker needs to follow people in the test videos.
    """

    def __init__(self, img_size: int | None = None) -> None:
        super().__init__()
        self.img_size = img_size  # crop side it expects (None: any)
        self.scale = torch.nn.Parameter(torch.ones(()))  # gives the module a device
        generator = torch.Generator().manual_seed(0)
        joints = torch.rand(45, 3, generator=generator) - 0.5
        joints[44] = 0.0
        self.register_buffer("joints", joints)

    def forward(self, image: Tensor) -> dict:
        batch = image.shape[0]
        rgb, mask = image[:, :3], image[:, 3:]
        on = (mask > 0).float()
        uv = torch.cat([rgb / 5.0 * on, on * 2 - 1], dim=1)
        eye = torch.eye(3, device=image.device)
        return {
            "uv_image": uv,
            "uv_vector": uv,
            "flow": torch.zeros(batch, 2, *image.shape[2:], device=image.device),
            "pose_emb": torch.zeros(batch, 2048, device=image.device),
            "pose_smpl": {
                "global_orient": eye.expand(batch, 1, 3, 3).clone(),
                "body_pose": eye.expand(batch, 23, 3, 3).clone(),
                "betas": torch.zeros(batch, 10, device=image.device),
            },
            "pred_cam": torch.tensor([0.9, 0.0, 0.0], device=image.device).expand(batch, 3) * self.scale,
        }

    def get_3d_parameters(self, pose_smpl: dict, pred_cam: Tensor, center: Tensor, scale: Tensor, img_size: int = IMG_SIZE) -> dict:
        cam_t = crop_cam_to_full_translation(pred_cam, center, scale, img_size=img_size)
        joints = self.joints.expand(pred_cam.shape[0], 45, 3)
        return {"joints_2d": project_to_padded_frame(joints, cam_t, img_size=img_size), "joints_3d": joints, "pred_cam_t": cam_t}

    @property
    def appearance_dim(self) -> int:
        return 4096

    def encode_appearance(self, uv_vector: Tensor) -> Tensor:
        pooled = F.adaptive_avg_pool2d(uv_vector, 16)  # (B, 4, 16, 16)
        return pooled.repeat(1, 4, 1, 1).flatten(1)  # (B, 4096)


class FakeTracker:
    """The PHALPTracker interface with greedy nearest-box-centre matching and a fixed emit delay.

    Frames come out ``delay`` frames late and in order (like PHALP's back-fill delay); ``finalize``
    flushes the rest. Frames with ground-truth ids keep those ids. ``appearance_encoder`` and ``pose_predictor`` are accepted and recorded.
    """

    def __init__(self, delay: int = 2, max_distance: float = 80.0, appearance_encoder=None, pose_predictor=None, **_: object) -> None:
        self.delay = delay
        self.max_distance = max_distance
        self.appearance_encoder = appearance_encoder
        self.pose_predictor = pose_predictor
        self.updates: list[tuple[str, int]] = []
        self.reset()

    def reset(self) -> None:
        self._next_id = 1
        self._last: dict[int, Tensor] = {}
        self._pending: list = []

    def update(self, frame):
        from phalp_lightning.structures import FrameTracks

        self.updates.append((frame.video, frame.frame_index))
        centres = (frame.boxes[:, :2] + frame.boxes[:, 2:]) / 2
        ids = []
        free = dict(self._last)
        for centre in centres:
            best = min(free, key=lambda t: float((free[t] - centre).norm()), default=None)
            if best is not None and float((free[best] - centre).norm()) < self.max_distance:
                ids.append(best)
                free.pop(best)
            else:
                ids.append(self._next_id)
                self._next_id += 1
        if frame.gt_track_ids is not None:  # PHALP's use_gt: given boxes carry their ids
            ids = [int(t) for t in frame.gt_track_ids]
        self._last = {t: c for t, c in zip(ids, centres, strict=True)}
        if self.appearance_encoder is not None and frame.uv is not None and len(frame):
            assert self.appearance_encoder(frame.uv).shape == (len(frame), 4096)
        tracks = FrameTracks(
            video=frame.video, frame_index=frame.frame_index, frame_name=frame.frame_name, image_size=frame.image_size,
            track_ids=torch.tensor(ids, dtype=torch.long), time_since_update=torch.zeros(len(ids), dtype=torch.long),
            detections=frame, shot=frame.shot,
        )
        self._pending.append(tracks)
        ready, self._pending = self._pending[: -self.delay or None], self._pending[-self.delay:] if self.delay else []
        return ready

    def finalize(self):
        ready, self._pending = self._pending, []
        return ready
