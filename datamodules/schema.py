"""Shard schema: the key names and layouts that shard writers and readers share.

Bump ``SCHEMA_VERSION`` whenever a key or a layout changes; readers refuse other versions with a
clear error instead of mis-reading old shards.

Crop shards (HMAR training), one sample per person crop:
    ``__key__``            "<dataset>/<sequence>/<frame:06d>/<person:03d>" with "/" replaced by "~"
    ``crop.png``           (S, S, 3) uint8 RGB, the square crop (S = 256 by default)
    ``mask.png``           (S, S) uint8 0/255 person mask in crop coordinates
    ``meta.json``          {"schema_version", "dataset", "sequence", "frame", "track_id",
                            "box_xyxy", "image_size": [H, W]}
    ``keypoints_2d.npy``   (44, 3) float32: x, y in crop pixels, confidence (0 = absent)
    ``keypoints_3d.npy``   (44, 4) float32, optional: body-frame metres, confidence
    ``smpl.npz``           optional: global_orient (1,3,3), body_pose (23,3,3), betas (10,)
    ``camera.npy``         (3,) float32, optional: crop camera (s, tx, ty)

Tracklet shards (pose transformer training), one sample per track window of T frames:
    ``__key__``            "<dataset>~<sequence>~<track_id>~<start_frame:06d>"
    ``pose.npy``           (T, 229) float32 (utils.vectors layout)
    ``location.npy``       (T, 99) float32
    ``time.npy``           (T,) int64 frame index of each step
    ``valid.npy``          (T,) bool: the track was observed at that step
    ``appearance.npy``     (T, 4096) float16, optional
    ``actions.npy``        (T, A) uint8 multi-hot, optional (AVA)
    ``meta.json``          {"schema_version", "dataset", "sequence", "track_id", "start_frame"}

Batches (what the DataModules yield; the LightningModules consume exactly these keys):
    crops:     image (B,4,S,S) float32 = ImageNet-normalised RGB + mask channel in [0, 255] (HMAR's
               input convention), keypoints_2d (B,44,3) with x, y in [-0.5, 0.5] crop units,
               keypoints_3d (B,44,4), has_keypoints_3d (B,), smpl_global_orient (B,1,3,3),
               smpl_body_pose (B,23,3,3), smpl_betas (B,10), has_smpl (B,), camera (B,3),
               has_camera (B,), box_xyxy (B,4)
    tracklets: pose (B,T,229), location (B,T,99), time (B,T) int64, valid (B,T) bool,
               appearance (B,T,4096) when present,
               actions (B,T,A) float32 + has_actions (B,) bool when the datamodule loads actions

Crop images are stored once at the writer's size; the DataModule resizes them to its ``crop_size``
(keypoints are stored in stored-crop pixels and arrive in crop units, so resizing does not move them).

Writers (``shard_writing``), readers (``shard_decoding``) and the stream (``shard_streams``) all
raise :class:`ShardError` for a schema violation, so it lives here with the schema they share.
"""

from phalp_lightning.errors import UserError

SCHEMA_VERSION = 1

CROP_KEYS_REQUIRED = ("crop.png", "mask.png", "meta.json", "keypoints_2d.npy")
CROP_KEYS_OPTIONAL = ("keypoints_3d.npy", "smpl.npz", "camera.npy")
TRACKLET_KEYS_REQUIRED = ("pose.npy", "location.npy", "time.npy", "valid.npy", "meta.json")
TRACKLET_KEYS_OPTIONAL = ("appearance.npy", "actions.npy")

CROP_BATCH_KEYS = (
    "image", "keypoints_2d", "keypoints_3d", "has_keypoints_3d", "smpl_global_orient", "smpl_body_pose",
    "smpl_betas", "has_smpl", "camera", "has_camera", "box_xyxy",
)
TRACKLET_BATCH_KEYS = ("pose", "location", "time", "valid")
TRACKLET_BATCH_KEYS_OPTIONAL = ("appearance", "actions", "has_actions")

NUM_KEYPOINTS = 44


class ShardError(UserError, ValueError):
    """A shard or a sample in it is missing, truncated or malformed; the message names which."""


class ShardNotFoundError(ShardError, FileNotFoundError):
    """A shard spec names no file."""
