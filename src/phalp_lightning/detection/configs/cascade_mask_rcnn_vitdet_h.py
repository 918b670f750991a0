"""detectron2 LazyConfig of PHALP's detector: ViTDet-H cascade Mask R-CNN, inference settings only.

Loaded with ``detectron2.config.LazyConfig.load`` (never imported as a module of this package): it
describes the network whose COCO weights are ``model_final_f05665.pkl`` (``python -m
phalp_lightning.assets download detector``). Written out in full, without detectron2's model zoo,
so that it needs neither detectron2's source checkout nor ``pkg_resources``.

Architecture (docs/predict.md, "Detectors"):

- backbone: plain ViT-H/16 (embed 1280, depth 32, 16 heads, MLP ratio 4) at 1024 x 1024, 14 x 14
  window attention in every block but 7, 15, 23 and 31 (global), decomposed relative positions;
  a simple feature pyramid (strides 4 to 64, 256 channels, LayerNorm) on its last feature map;
- RPN with a two-conv head; three cascade stages (IoU 0.5 / 0.6 / 0.7 box-delta weights) whose box
  heads are 4 conv (LayerNorm) + 1 fc; a 4-conv mask head; 80 COCO classes, class 0 is the person.

Test-time settings as in PHALP: every cascade predictor keeps scores above 0.5; per-class NMS at 0.5
and 100 detections per image (detectron2's defaults); RGB input, shorter side to 1024 with the
longer side capped at 1024 (done by :class:`phalp_lightning.detection.detectron2.Detectron2Detector`).
The person filter (score > 0.8) is applied by the detector class, not here.
"""

from functools import partial

from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling import SimpleFeaturePyramid, ViT
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.meta_arch import GeneralizedRCNN
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.proposal_generator import RPN, StandardRPNHead
from detectron2.modeling.roi_heads import (
    CascadeROIHeads,
    FastRCNNConvFCHead,
    FastRCNNOutputLayers,
    MaskRCNNConvUpsampleHead,
)
from torch import nn

# The network's input side: frames are resized so that their longer side is this, then padded square.
INPUT_SIZE = 1024
# ViT-H/16.
EMBED_DIM, DEPTH, NUM_HEADS = 1280, 32, 16
GLOBAL_ATTENTION_BLOCKS = (7, 15, 23, 31)
NUM_CLASSES = 80
# PHALP's test_score_thresh for the three cascade predictors.
TEST_SCORE_THRESHOLD = 0.5
TEST_NMS_THRESHOLD = 0.5
DETECTIONS_PER_IMAGE = 100
# Pixel statistics of the ImageNet-pretrained backbone, RGB order, 0-255 scale.
PIXEL_MEAN_RGB = [123.675, 116.28, 103.53]
PIXEL_STD_RGB = [58.395, 57.12, 57.375]

FEATURE_LEVELS = ["p2", "p3", "p4", "p5"]
FEATURE_SCALES = (1.0 / 4, 1.0 / 8, 1.0 / 16, 1.0 / 32)

model = L(GeneralizedRCNN)(
    backbone=L(SimpleFeaturePyramid)(
        net=L(ViT)(
            img_size=INPUT_SIZE,
            patch_size=16,
            embed_dim=EMBED_DIM,
            depth=DEPTH,
            num_heads=NUM_HEADS,
            drop_path_rate=0.0,  # inference only
            window_size=14,
            mlp_ratio=4,
            qkv_bias=True,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            window_block_indexes=[block for block in range(DEPTH) if block not in GLOBAL_ATTENTION_BLOCKS],
            residual_block_indexes=[],
            use_rel_pos=True,
            out_feature="last_feat",
        ),
        in_feature="last_feat",
        out_channels=256,
        scale_factors=(4.0, 2.0, 1.0, 0.5),
        top_block=L(LastLevelMaxPool)(),
        norm="LN",
        square_pad=INPUT_SIZE,
    ),
    proposal_generator=L(RPN)(
        in_features=[*FEATURE_LEVELS, "p6"],
        head=L(StandardRPNHead)(in_channels=256, num_anchors=3, conv_dims=[-1, -1]),
        anchor_generator=L(DefaultAnchorGenerator)(
            sizes=[[32], [64], [128], [256], [512]],
            aspect_ratios=[0.5, 1.0, 2.0],
            strides=[4, 8, 16, 32, 64],
            offset=0.0,
        ),
        anchor_matcher=L(Matcher)(thresholds=[0.3, 0.7], labels=[0, -1, 1], allow_low_quality_matches=True),
        box2box_transform=L(Box2BoxTransform)(weights=[1.0, 1.0, 1.0, 1.0]),
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_topk=(2000, 1000),
        post_nms_topk=(1000, 1000),
        nms_thresh=0.7,
    ),
    roi_heads=L(CascadeROIHeads)(
        num_classes=NUM_CLASSES,
        batch_size_per_image=512,
        positive_fraction=0.25,
        box_in_features=FEATURE_LEVELS,
        box_pooler=L(ROIPooler)(output_size=7, scales=FEATURE_SCALES, sampling_ratio=0, pooler_type="ROIAlignV2"),
        box_heads=[
            L(FastRCNNConvFCHead)(
                input_shape=ShapeSpec(channels=256, height=7, width=7),
                conv_dims=[256, 256, 256, 256],
                fc_dims=[1024],
                conv_norm="LN",
            )
            for _ in range(3)
        ],
        box_predictors=[
            L(FastRCNNOutputLayers)(
                input_shape=ShapeSpec(channels=1024),
                box2box_transform=L(Box2BoxTransform)(weights=(w_xy, w_xy, w_wh, w_wh)),
                num_classes=NUM_CLASSES,
                cls_agnostic_bbox_reg=True,
                test_score_thresh=TEST_SCORE_THRESHOLD,
                test_nms_thresh=TEST_NMS_THRESHOLD,
                test_topk_per_image=DETECTIONS_PER_IMAGE,
            )
            for w_xy, w_wh in [(10, 5), (20, 10), (30, 15)]
        ],
        proposal_matchers=[
            L(Matcher)(thresholds=[iou], labels=[0, 1], allow_low_quality_matches=False) for iou in (0.5, 0.6, 0.7)
        ],
        mask_in_features=FEATURE_LEVELS,
        mask_pooler=L(ROIPooler)(output_size=14, scales=FEATURE_SCALES, sampling_ratio=0, pooler_type="ROIAlignV2"),
        mask_head=L(MaskRCNNConvUpsampleHead)(
            input_shape=ShapeSpec(channels=256, width=14, height=14),
            num_classes=NUM_CLASSES,
            conv_dims=[256, 256, 256, 256, 256],
            conv_norm="LN",
        ),
    ),
    pixel_mean=PIXEL_MEAN_RGB,
    pixel_std=PIXEL_STD_RGB,
    input_format="RGB",
)
