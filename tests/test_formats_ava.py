"""AVA v2.2 CSV reader: grouping per person, empty keyframes, exclusions, predictions and errors."""

import numpy as np
import pytest
from phalp_lightning.datamodules.formats.ava import (
    AVAFormatError,
    frame_key,
    read_action_list,
    read_ava_csv,
    read_ava_excluded,
)

GT = """-5KQ66BBWC4,0902,0.077,0.151,0.283,0.811,80,1
-5KQ66BBWC4,0902,0.077,0.151,0.283,0.811,12,1
-5KQ66BBWC4,0902,0.332,0.194,0.481,0.891,17,0
-5KQ66BBWC4,0903,0.080,0.150,0.290,0.810,12,1
-5KQ66BBWC4,0904
zz_other,1001,0.1,0.1,0.2,0.2,1,3
"""


def test_rows_are_grouped_per_person_with_multi_hot_actions_and_tracks(tmp_path):
    path = tmp_path / "ava_val_v2.2.csv"
    path.write_text(GT)
    annotations = read_ava_csv(path)
    video = annotations.video("-5KQ66BBWC4")
    assert [(p.timestamp, p.person_id, sorted(p.actions)) for p in video] == [(902, 0, [17]), (902, 1, [12, 80]), (903, 1, [12])]
    assert np.allclose(video[1].box_xyxy, [0.077, 0.151, 0.283, 0.811])
    hot = video[1].multi_hot()
    assert hot.shape == (80,) and hot[[11, 79]].tolist() == [1, 1] and hot.sum() == 2
    assert ("-5KQ66BBWC4", 904) in annotations.empty_keyframes
    assert annotations.keyframes[:3] == [("-5KQ66BBWC4", 902), ("-5KQ66BBWC4", 903), ("-5KQ66BBWC4", 904)]
    tracks = annotations.tracks("-5KQ66BBWC4")
    assert [p.timestamp for p in tracks[1]] == [902, 903]
    assert frame_key("-5KQ66BBWC4", 902) == "-5KQ66BBWC4,0902"


def test_exclusions_and_prediction_files(tmp_path):
    path = tmp_path / "gt.csv"
    path.write_text(GT)
    excluded_path = tmp_path / "excluded.csv"
    excluded_path.write_text("-5KQ66BBWC4,0902\n")
    excluded = read_ava_excluded(excluded_path)
    assert [p.timestamp for p in read_ava_csv(path, excluded=excluded).video("-5KQ66BBWC4")] == [903]
    predictions = tmp_path / "pred.csv"
    predictions.write_text("v1,0902,0.1,0.1,0.5,0.9,12,0.75\nv1,0902,0.1,0.1,0.5,0.9,80,0.25\n")
    people = read_ava_csv(predictions, predictions=True).people
    assert len(people) == 1 and people[0].actions == [12, 80] and people[0].scores == [0.75, 0.25] and people[0].person_id is None


@pytest.mark.parametrize(
    "line, message",
    [
        ("v,0902,0.5,0.1,0.2,0.9,12,1", "bad.csv:1: box must be normalised"),
        ("v,0902,0.1,0.1,0.2,1.9,12,1", "bad.csv:1: box must be normalised"),
        ("v,0902,0.1,0.1,0.2,0.9,81,1", r"bad.csv:1: action id must be in 1..80, got 81"),
        ("v,0902,0.1,0.1", "bad.csv:1: expected 2, 7 or 8 columns, got 4"),
        ("v,09x2,0.1,0.1,0.2,0.9,12,1", "bad.csv:1: non-numeric field"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.csv"
    path.write_text(line + "\n")
    with pytest.raises(AVAFormatError, match=message):
        read_ava_csv(path)


def test_action_list_pbtxt(tmp_path):
    path = tmp_path / "list.pbtxt"
    path.write_text('item {\n  name: "bend/bow (at the waist)"\n  id: 1\n}\nitem {\n  name: "stand"\n  id: 12\n}\n')
    assert read_action_list(path) == {1: "bend/bow (at the waist)", 12: "stand"}
    path.write_text("nothing here")
    with pytest.raises(AVAFormatError, match="list.pbtxt: no 'item"):
        read_action_list(path)
