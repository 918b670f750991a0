"""predict.py -> evaluate.py on a generated scene: the real HMAR (untrained) and PHALP tracker on given boxes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import synthetic_data

synthetic_video = synthetic_data.synthetic_video


@pytest.mark.slow
def test_predict_then_evaluate_a_generated_scene(compose_cfg, synthetic_video, assets_env, tmp_path: Path):
    from phalp_lightning.datamodules.formats.mot import read_mot, write_mot
    from phalp_lightning.datamodules.video import source_name

    from phalp_lightning.pipelines.evaluate import run as evaluate
    from phalp_lightning.pipelines.predict import run as predict

    name = source_name(synthetic_video.mot_gt_path)
    # Ground truth named like predict's sequence (MOT layout <sequence>/gt/gt.txt).
    gt_path = write_mot(tmp_path / "ground_truth" / name / "gt" / "gt.txt", read_mot(synthetic_video.mot_gt_path))
    predict_cfg = compose_cfg("predict", [
        f"video={synthetic_video.mot_gt_path}", f"source.boxes_base_path={synthetic_video.frames_dir}",
        "detector=given_boxes", "tracker.n_init=2", "ckpt=null", "progress_bar=false", "trainer.accelerator=cpu",
        "source.batch_size=3", "evaluate=true", f"ground_truth={gt_path.parent.parent.parent}",
    ])
    (report,) = predict(predict_cfg)
    assert report.error is None
    predict_dir = Path(predict_cfg.output_dir)

    mot = evaluate(compose_cfg("evaluate", [f"pred={predict_dir / 'mot'}", f"gt={gt_path}", "format=mot"]))
    pkl = evaluate(compose_cfg("evaluate", [f"pred={predict_dir / 'results'}", f"gt={gt_path}", "format=phalp_pkl",
                                            "gt_format=mot"]))
    num_gt = sum(len(ids) for ids in synthetic_video.track_ids)
    assert mot["GT_Dets"] == num_gt > 0
    # The tracker is given the generator's exact boxes: every written box is a ground-truth box.
    assert mot["FP"] == 0 and mot["Precision"] == pytest.approx(1.0)
    # Some people are missed (PHALP drops boxes under 50 x 100 px; n_init delays), but most are tracked.
    assert 0.5 < mot["Recall"] <= 1.0 and mot["HOTA"] > 0.5 and mot["MOTA"] > 0.4
    # The MOT text and the results pickle of one run describe the same tracks.
    for key in ("HOTA", "DetA", "AssA", "MOTA", "IDF1", "IDSW", "FP", "FN"):
        assert pkl[key] == pytest.approx(mot[key], abs=1e-4), key
    # predict.py's evaluate=true hook wrote the same numbers through evaluate_files.
    hook = json.loads((predict_dir / "evaluation" / "metrics.json").read_text())["overall"]
    for key in ("HOTA", "MOTA", "IDF1"):
        assert hook[key] == pytest.approx(mot[key], abs=1e-9), key
