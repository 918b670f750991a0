"""Malformed shards and samples give errors that name the file, the sample and what is wrong."""

import io
import json
import shutil

import numpy as np
import pytest
from helpers import synthetic_data
from phalp_lightning.datamodules.schema import ShardError
from phalp_lightning.datamodules.shard_decoding import CropDecoder, TrackletDecoder, iterate_shard
from phalp_lightning.datamodules.shard_streams import ShardSource, ShardStream
from phalp_lightning.datamodules.shard_writing import ShardWriter, encode_crop_sample, encode_tracklet_sample

synthetic_crop_shards = synthetic_data.synthetic_crop_shards


def _crop_sample(key="ds~seq~000001~000", **changes):
    arguments = dict(
        key=key,
        crop=np.zeros((16, 16, 3), np.uint8),
        mask=np.ones((16, 16), np.uint8),
        keypoints_2d=np.zeros((44, 3)),
        meta={"dataset": "ds", "sequence": "seq", "frame": 1, "track_id": 0, "box_xyxy": [1, 2, 10, 12], "image_size": [32, 32]},
    )
    arguments.update(changes)
    return encode_crop_sample(**arguments)


def _write(path, samples):
    with ShardWriter(path, max_count=100) as writer:
        for sample in samples:
            writer.write(sample)
    return [str(shard) for shard in writer.shards]


def _read(urls, decoder):
    return list(ShardStream([ShardSource(urls)], decoder, train=False))


def test_truncated_tar_names_the_shard(synthetic_crop_shards, tmp_path):
    source = synthetic_crop_shards["train"]["shards"][0]
    broken = tmp_path / "broken-000000.tar"
    shutil.copy(source, broken)
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 2 + 100])
    with pytest.raises(ShardError, match=r"shard .*broken-000000\.tar is truncated or not a tar file"):
        _read([str(broken)], CropDecoder(32))


def test_a_file_that_is_not_a_tar_names_the_shard(tmp_path):
    bogus = tmp_path / "bogus.tar"
    bogus.write_text("hello, I am not a tar file" * 40)
    with pytest.raises(ShardError, match="shard .*bogus.tar is truncated or not a tar file"):
        list(iterate_shard(str(bogus)))


def test_missing_keys_name_the_shard_the_sample_and_the_keys(tmp_path):
    sample = _crop_sample()
    del sample["keypoints_2d.npy"]
    urls = _write(tmp_path / "nokp", [sample])
    with pytest.raises(ShardError, match=r"nokp-000000\.tar: crop sample 'ds~seq~000001~000' is missing \['keypoints_2d.npy'\]"):
        _read(urls, CropDecoder(16))
    tracklet = encode_tracklet_sample("t~0", np.zeros((4, 229)), np.zeros((4, 99)), np.arange(4), np.ones(4, bool),
                                      {"dataset": "d", "sequence": "s", "track_id": 0, "start_frame": 0})
    del tracklet["valid.npy"]
    urls = _write(tmp_path / "novalid", [tracklet])
    with pytest.raises(ShardError, match=r"novalid-000000\.tar: tracklet sample 't~0' is missing \['valid.npy'\]"):
        _read(urls, TrackletDecoder())


def test_bad_boxes_shapes_and_values_are_refused_when_writing():
    with pytest.raises(ShardError, match=r"crop sample 'ds~seq~000001~000': box_xyxy must be .* got \[10, 2, 1, 12\]"):
        _crop_sample(meta={"dataset": "ds", "sequence": "seq", "frame": 1, "track_id": 0, "box_xyxy": [10, 2, 1, 12], "image_size": [32, 32]})
    with pytest.raises(ShardError, match="keypoints_2d must have shape \\(44, 3\\), got \\(17, 3\\)"):
        _crop_sample(keypoints_2d=np.zeros((17, 3)))
    with pytest.raises(ShardError, match="meta is missing 'track_id'"):
        _crop_sample(meta={"dataset": "ds", "sequence": "seq", "frame": 1, "box_xyxy": [1, 2, 3, 4], "image_size": [3, 3]})
    with pytest.raises(ShardError, match="tracklet sample 'x': pose holds NaN"):
        encode_tracklet_sample("x", np.full((2, 229), np.nan), np.zeros((2, 99)), np.arange(2), np.ones(2, bool),
                               {"dataset": "d", "sequence": "s", "track_id": 0, "start_frame": 0})
    with pytest.raises(ShardError, match="location must have shape \\(2, 99\\), got \\(3, 99\\)"):
        encode_tracklet_sample("x", np.zeros((2, 229)), np.zeros((3, 99)), np.arange(2), np.ones(2, bool),
                               {"dataset": "d", "sequence": "s", "track_id": 0, "start_frame": 0})


def test_other_schema_versions_and_bad_arrays_are_refused_when_reading(tmp_path):
    old = _crop_sample()
    old["meta.json"] = json.dumps({**json.loads(old["meta.json"]), "schema_version": 0}).encode()
    urls = _write(tmp_path / "old", [old])
    with pytest.raises(ShardError, match=r"old-000000\.tar: sample 'ds~seq~000001~000' has schema_version 0.*rebuild the shards"):
        _read(urls, CropDecoder(16))
    wrong = _crop_sample()
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((17, 3), np.float32))
    wrong["keypoints_2d.npy"] = buffer.getvalue()
    urls = _write(tmp_path / "wrong", [wrong])
    with pytest.raises(ShardError, match=r"wrong-000000\.tar: sample 'ds~seq~000001~000': keypoints_2d.npy must be \(44, 3\)"):
        _read(urls, CropDecoder(16))
    garbage = _crop_sample()
    garbage["crop.png"] = b"not a png"
    urls = _write(tmp_path / "garbage", [garbage])
    with pytest.raises(ShardError, match="crop.png is not a decodable PNG"):
        _read(urls, CropDecoder(16))


def test_writer_is_atomic_and_refuses_duplicate_keys(tmp_path):
    with pytest.raises(ShardError, match="duplicate sample key 'ds~seq~000001~000'"):
        _write(tmp_path / "dup", [_crop_sample(), _crop_sample()])
    assert sorted(path.name for path in tmp_path.iterdir()) == []  # the unfinished shard was removed
    urls = _write(tmp_path / "ok", [_crop_sample(key=f"k{i}") for i in range(3)])
    assert [sample["__key__"] for sample in iterate_shard(urls[0])] == ["k0", "k1", "k2"]
    with pytest.raises(ShardError, match="without dots"):
        _write(tmp_path / "dots", [_crop_sample(key="a.b")])


def test_a_corrupt_header_inside_a_complete_tar_names_the_shard_and_the_last_good_sample(tmp_path):
    urls = _write(tmp_path / "corrupt", [_crop_sample(key=f"k{i}") for i in range(4)])
    data = bytearray(open(urls[0], "rb").read())
    # Find the header of the third sample's first file and scribble over it.
    offset = data.index(b"k2.")
    data[offset : offset + 512] = b"\x07" * 512
    with open(urls[0], "wb") as handle:
        handle.write(bytes(data))
    with pytest.raises(ShardError, match=r"cannot read shard .*corrupt-000000\.tar after sample 'k[01]': ReadError"):
        _read(urls, CropDecoder(16))
