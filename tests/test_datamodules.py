"""Crop and tracklet DataModules: exact batch keys, ground-truth consistency, and the epoch loop."""

import numpy as np
import pytest
import torch
from helpers import synthetic_data
from helpers.synthetic_data import CROP_KWARGS, TRACKLET_KWARGS
from phalp_lightning.datamodules.base import ShardDataModule
from phalp_lightning.datamodules.crops import CropDataModule
from phalp_lightning.datamodules.schema import CROP_BATCH_KEYS, TRACKLET_BATCH_KEYS
from phalp_lightning.datamodules.tracklets import TrackletDataModule

from phalp_lightning.utils.image import IMAGENET_MEAN, IMAGENET_STD

synthetic_crop_shards = synthetic_data.synthetic_crop_shards
synthetic_tracklet_shards = synthetic_data.synthetic_tracklet_shards


def _crops(shards, **kwargs):
    options = dict(batch_size=4, crop_size=32, shuffle_buffer=8)
    options.update(kwargs)
    module = CropDataModule(shards["train"]["pattern"], shards["val"]["pattern"], **options)
    module.setup("fit")
    return module


def test_crop_batches_have_exactly_the_schema_keys_and_hmar_input_layout(synthetic_crop_shards):
    module = _crops(synthetic_crop_shards)
    batch = next(iter(module.train_dataloader()))
    assert set(batch) == set(CROP_BATCH_KEYS)
    assert batch["image"].shape == (4, 4, 32, 32) and batch["image"].dtype == torch.float32
    assert set(batch["image"][:, 3].unique().tolist()) <= {0.0, 255.0} and batch["image"][:, 3].max() == 255
    lowest = (0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    assert (batch["image"][:, :3].amin(dim=(0, 2, 3)).numpy() >= lowest - 1e-5).all()
    assert batch["keypoints_2d"].shape == (4, 44, 3) and batch["keypoints_2d"][..., :2].abs().max() <= 0.6
    assert batch["has_smpl"].all() and batch["has_keypoints_3d"].all() and batch["has_camera"].all()
    assert batch["smpl_body_pose"].shape == (4, 23, 3, 3) and batch["smpl_global_orient"].shape == (4, 1, 3, 3)
    assert len(module.train_dataloader()) == len(list(module.train_dataloader())) == 24 // 4


def test_crop_ground_truth_is_exact(synthetic_crop_shards, synthetic_assets):
    """The 3-D keypoints come from the SMPL parameters, and project to the 2-D ones through the camera."""
    from phalp_lightning.assets import asset_path
    from phalp_lightning.body_model import BodyModel
    from phalp_lightning.utils.geometry import crop_cam_to_full_translation, project_to_padded_frame

    module = _crops(synthetic_crop_shards)
    batch = next(iter(module.val_dataloader()))
    body = BodyModel(asset_path("smpl_neutral", synthetic_assets), asset_path("smpl_to_j19", synthetic_assets))
    with torch.no_grad():
        joints = body(batch["smpl_global_orient"], batch["smpl_body_pose"], batch["smpl_betas"]).joints
    assert torch.allclose(joints, batch["keypoints_3d"][..., :3], atol=1e-4)
    size = len(batch["camera"])
    cam_t = crop_cam_to_full_translation(batch["camera"], torch.full((size, 2), 128.0), torch.full((size,), 256.0))
    projected = project_to_padded_frame(batch["keypoints_3d"][..., :3], cam_t) / 256.0 - 0.5
    seen = batch["keypoints_2d"][..., 2] > 0
    assert seen.float().mean() > 0.9
    assert torch.allclose(projected[seen], batch["keypoints_2d"][..., :2][seen], atol=1e-4)


def test_validation_reads_every_sample_once_in_order(synthetic_crop_shards):
    module = _crops(synthetic_crop_shards, batch_size=3)
    boxes = torch.cat([batch["box_xyxy"] for batch in module.val_dataloader()])
    again = torch.cat([batch["box_xyxy"] for batch in module.val_dataloader()])
    assert len(boxes) == CROP_KWARGS["num_val"] and torch.equal(boxes, again)


def test_training_epochs_have_fixed_length_and_reshuffle(synthetic_crop_shards):
    module = _crops(synthetic_crop_shards, epoch_length=10, batch_size=4)
    loader = module.train_dataloader()
    epochs = [torch.cat([batch["box_xyxy"] for batch in loader]) for _ in range(2)]
    assert [len(epoch) for epoch in epochs] == [12, 12]  # 10 rounded up to whole batches
    assert not torch.equal(epochs[0], epochs[1])


def test_tracklet_batches_keys_layout_and_sequence_length(synthetic_tracklet_shards):
    from phalp_lightning.utils.vectors import POSE_CAMERA, split_pose_vector

    module = TrackletDataModule(synthetic_tracklet_shards["train"]["pattern"], synthetic_tracklet_shards["val"]["pattern"], batch_size=5)
    module.setup("fit")
    batch = next(iter(module.val_dataloader()))
    assert set(batch) == set(TRACKLET_BATCH_KEYS)
    window = TRACKLET_KWARGS["window"]
    assert batch["pose"].shape == (5, window, 229) and batch["location"].shape == (5, window, 99)
    assert batch["time"].dtype == torch.int64 and batch["valid"].dtype == torch.bool
    assert (batch["time"].diff(dim=1) == 1).all()
    valid = batch["valid"]
    smpl, cam_t = split_pose_vector(batch["pose"][valid])
    eye = torch.eye(3).expand_as(smpl.body_pose)
    assert torch.allclose(smpl.body_pose @ smpl.body_pose.transpose(-1, -2), eye, atol=1e-4)
    assert torch.allclose(batch["location"][valid][:, 90:93], cam_t, rtol=1e-5)
    assert (batch["pose"][~valid] == 0).all()
    assert (batch["pose"][valid][:, POSE_CAMERA][:, 2] > 0).all()

    padded = TrackletDataModule(None, synthetic_tracklet_shards["val"]["pattern"], batch_size=2, sequence_length=window + 3)
    padded.setup("validate")
    longer = next(iter(padded.val_dataloader()))
    assert longer["pose"].shape[1] == window + 3 and not longer["valid"][:, window:].any()
    cropped = TrackletDataModule(synthetic_tracklet_shards["train"]["pattern"], None, batch_size=2, sequence_length=4, epoch_length=4)
    cropped.setup("fit")
    short = next(iter(cropped.train_dataloader()))
    assert short["pose"].shape == (2, 4, 229) and (short["time"].diff(dim=1) == 1).all()


def test_synthetic_motion_is_smooth_enough_to_beat_the_constant_pose_baseline(synthetic_tracklet_shards):
    module = TrackletDataModule(None, synthetic_tracklet_shards["val"]["pattern"], batch_size=64)
    module.setup("validate")
    batch = next(iter(module.val_dataloader()))
    pose, valid = batch["pose"], batch["valid"]
    usable = valid[:, 2:] & valid[:, 1:-1] & valid[:, :-2]
    target = pose[:, 2:]
    constant = (pose[:, 1:-1] - target).abs()[usable].mean()
    linear = (2 * pose[:, 1:-1] - pose[:, :-2] - target).abs()[usable].mean()
    assert linear < 0.5 * constant


def test_missing_shards_name_the_path_and_the_command(tmp_path):
    module = CropDataModule(str(tmp_path / "nowhere" / "train-*.tar"), None)
    with pytest.raises(FileNotFoundError, match=r"nowhere/train-\*\.tar.*python -m phalp_lightning\.datamodules\.synthetic crops"):
        module.setup("fit")
    module = TrackletDataModule(None, str(tmp_path / "val-{000000..000001}.tar"))
    with pytest.raises(FileNotFoundError, match=r"val-000000\.tar.*synthetic tracklets"):
        module.setup("validate")


def test_default_configs_point_at_the_synthetic_shards(compose_cfg, tmp_path):
    from omegaconf import OmegaConf

    for model, folder in (("hmar", "crops"), ("pose_transformer", "tracklets")):
        cfg = compose_cfg("train", [f"model={model}", f"paths.data_dir={tmp_path}"])
        OmegaConf.resolve(cfg)
        assert cfg.data.train_shards == f"{tmp_path}/synthetic/{folder}/train-*.tar"
        assert f"--out {tmp_path}/synthetic/{folder}" in cfg.data.shards_hint


@pytest.mark.slow
def test_lightning_fit_runs_two_epochs_on_the_tracklet_datamodule(synthetic_tracklet_shards, tmp_path):
    import lightning as L

    class Probe(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(229, 229)
            self.seen = []

        def training_step(self, batch, _):
            self.seen.append(batch["pose"].shape[0])
            return (self.layer(batch["pose"][:, :-1]) - batch["pose"][:, 1:]).pow(2).mean()

        def validation_step(self, batch, _):
            self.log("val_loss", (self.layer(batch["pose"][:, :-1]) - batch["pose"][:, 1:]).pow(2).mean(), batch_size=len(batch["pose"]))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=1e-3)

    module = TrackletDataModule(
        synthetic_tracklet_shards["train"]["pattern"], synthetic_tracklet_shards["val"]["pattern"], batch_size=4, epoch_length=8, num_workers=2
    )
    probe = Probe()
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(probe, datamodule=module)
    assert probe.seen == [4] * 4 and "val_loss" in trainer.callback_metrics


def test_the_default_data_configs_instantiate_and_load_the_synthetic_shards(compose_cfg, tmp_path, synthetic_assets):
    import hydra
    from helpers.synthetic_data import body_model_handle
    from phalp_lightning.datamodules.synthetic import write_synthetic_crops, write_synthetic_tracklets

    body = body_model_handle(str(synthetic_assets))
    write_synthetic_crops(tmp_path / "synthetic" / "crops", num_train=2, num_val=2, crop_size=32, body_model=body)
    write_synthetic_tracklets(tmp_path / "synthetic" / "tracklets", num_train_tracks=1, num_val_tracks=1, track_length=8, window=8, body_model=body)
    for model, key, shape in (("hmar", "image", (2, 4, 64, 64)), ("pose_transformer", "pose", (2, 8, 229))):
        cfg = compose_cfg("train", [f"model={model}", f"paths.data_dir={tmp_path}", "data.batch_size=2", "data.epoch_length=2"]
                          + (["data.crop_size=64"] if model == "hmar" else []))
        module = hydra.utils.instantiate(cfg.data)
        module.setup("fit")
        assert next(iter(module.train_dataloader()))[key].shape == shape
        assert next(iter(module.val_dataloader()))[key].shape[0] >= 1


@pytest.mark.slow
def test_overfit_batches_replays_the_same_batches_every_epoch(synthetic_tracklet_shards, tmp_path):
    import lightning as L

    class Recorder(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(229, 1)
            self.first_values = []

        def training_step(self, batch, _):
            self.first_values.append(float(batch["pose"][:, 0, 0].sum() + batch["time"][:, 0].sum()))
            return self.layer(batch["pose"]).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    module = TrackletDataModule(synthetic_tracklet_shards["train"]["pattern"], None, batch_size=4, epoch_length=16)
    recorder = Recorder()
    trainer = L.Trainer(overfit_batches=2, max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, limit_val_batches=0)
    trainer.fit(recorder, datamodule=module)
    assert len(recorder.first_values) == 6
    assert recorder.first_values[0:2] == recorder.first_values[2:4] == recorder.first_values[4:6]


def test_the_shared_datamodule_needs_its_decoders_from_a_subclass():
    with pytest.raises(TypeError, match="abstract"):
        ShardDataModule("train.tar", "val.tar")

    class NoEvalDecoder(ShardDataModule):
        def train_decoder(self):
            return dict

    with pytest.raises(TypeError, match="eval_decoder"):
        NoEvalDecoder("train.tar", "val.tar")
