"""MOTChallenge text files: round trip, layouts and errors that name file and line."""

import numpy as np
import pytest
from phalp_lightning.datamodules.formats.mot import MOTFormatError, MOTSequence, read_mot, write_mot


def test_round_trip_keeps_rows_sorted_and_extra_columns(tmp_path):
    rows = np.array([[2, 1, 10, 20, 30, 40, 1, 1, 0.5], [1, 3, 1.5, 2.5, 3, 4, 1, 1, 1.0], [1, 2, 5, 6, 7, 8, 0, 1, 0.25]])
    path = write_mot(tmp_path / "seq" / "gt.txt", rows)
    sequence = read_mot(path)
    assert sequence.frames.tolist() == [1, 1, 2] and sequence.track_ids.tolist() == [2, 3, 1]
    assert np.allclose(sequence.boxes_xywh[0], [5, 6, 7, 8])
    assert np.allclose(sequence.boxes_xyxy[0], [5, 6, 12, 14])
    assert sequence.confidences.tolist() == [0, 1, 1]
    assert np.allclose(sequence.extra[:, 1], [0.25, 1.0, 0.5])
    assert sequence.frame(1).track_ids.tolist() == [2, 3]
    assert not list(tmp_path.rglob("*.tmp"))
    assert read_mot(write_mot(tmp_path / "again.txt", sequence)).to_array().tolist() == sequence.to_array().tolist()


def test_seven_columns_get_the_results_padding_and_empty_files_read(tmp_path):
    path = write_mot(tmp_path / "res.txt", [[1, 1, 0, 0, 10, 10, 0.9]])
    assert path.read_text().strip() == "1,1,0.00,0.00,10.00,10.00,0.9,-1,-1,-1"
    empty = write_mot(tmp_path / "empty.txt", np.zeros((0, 7)))
    assert len(read_mot(empty)) == 0


@pytest.mark.parametrize(
    "text, message",
    [
        ("1,1,0,0,10,10,1\n1,2,0,0,-3,10,1\n", "gt.txt:2: box width and height must be > 0"),
        ("1,1,0,0,10\n", "gt.txt:1: expected at least 7 columns"),
        ("1,1,a,0,10,10,1\n", "gt.txt:1: 'a' is not a number"),
        ("0,1,0,0,10,10,1\n", "gt.txt:1: frame must be an integer >= 1"),
        ("1,1,0,0,10,10,1\n2,1,0,0,10,10,1,1\n", "gt.txt:2: 8 columns where earlier lines have 7"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "gt.txt"
    path.write_text(text)
    with pytest.raises(MOTFormatError, match=message):
        read_mot(path)


def test_missing_file_and_bad_rows_on_write(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_mot(tmp_path / "nope.txt")
    with pytest.raises(MOTFormatError, match="out.txt row 0: box width"):
        write_mot(tmp_path / "out.txt", [[1, 1, 0, 0, 0, 10, 1]])
    assert isinstance(MOTSequence(np.zeros(0), np.zeros(0), np.zeros((0, 4)), np.zeros(0)).extra, np.ndarray)
