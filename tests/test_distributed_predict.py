"""Distributed predict: videos spread over 2 CPU ranks, each tracked once, the same files as 1 process.

(tests/test_predict_pipeline.py checks that 2 ranks write 2 videos; this checks an uneven split --
3 videos on 2 ranks -- against a 1-process run of the same videos, and the merged reports.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import synthetic_data
from test_predict_pipeline import given_boxes, run_predict

synthetic_video = synthetic_data.synthetic_video


@pytest.mark.slow
def test_three_videos_on_two_ranks_are_each_tracked_once_with_the_single_process_results(synthetic_video, tmp_path):
    from conftest import compose_config

    extra = tmp_path / "walkers_copy.txt"  # a third video: the same frames under another name
    shutil.copy(synthetic_video.mot_gt_path, extra)
    videos = f"video=[{synthetic_video.mot_gt_path},{extra},{synthetic_video.frames_dir}]"
    overrides = [*given_boxes(synthetic_video)[1:], videos]

    def composer(output_dir: Path):
        return lambda name, more: compose_config(name, more, output_dir)

    _, single = run_predict(composer(tmp_path / "one"), overrides)
    _, distributed = run_predict(composer(tmp_path / "two"), [*overrides, "trainer=ddp_cpu"])

    names = [report.name for report in distributed]
    assert len(names) == len(set(names)) == 3, f"each video must be tracked by exactly one rank: {names}"
    assert sorted((r.name, r.frames, sorted(r.track_ids)) for r in distributed) == sorted(
        (r.name, r.frames, sorted(r.track_ids)) for r in single
    )
    for mot in sorted((tmp_path / "one" / "mot").glob("*.txt")):
        assert (tmp_path / "two" / "mot" / mot.name).read_text() == mot.read_text(), f"{mot.name} differs between 1 and 2 processes"
    assert len(list((tmp_path / "one" / "mot").glob("*.txt"))) == 3
    # The per-rank report files are merged and removed.
    assert not list((tmp_path / "two" / ".predict_reports").glob("*.json"))
