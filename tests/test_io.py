import pytest

from phalp_lightning.utils.io import TEMPORARY_NAME, AtomicFile, atomic_output, atomic_write_text


def test_atomic_output_replaces_only_on_success(tmp_path):
    target = tmp_path / "sub" / "result.txt"
    atomic_write_text(target, "first")
    with pytest.raises(RuntimeError), atomic_output(target) as temporary:
        temporary.write_text("half-written")
        raise RuntimeError("writer failed")
    assert target.read_text() == "first"
    assert [path.name for path in target.parent.iterdir()] == ["result.txt"]  # no temporary left behind


def test_atomic_output_keeps_the_suffix_for_format_sniffing_writers(tmp_path):
    with atomic_output(tmp_path / "frame.png") as temporary:
        assert temporary.suffix == ".png" and temporary.parent == tmp_path
        temporary.write_bytes(b"x")
    assert (tmp_path / "frame.png").read_bytes() == b"x"


def test_atomic_file_commits_or_discards_across_calls(tmp_path):
    target = tmp_path / "sub" / "video.mp4"
    atomic_write_text(target, "old")
    discarded = AtomicFile(target)
    discarded.temporary.write_bytes(b"half")
    discarded.discard()
    assert target.read_text() == "old" and sorted(p.name for p in target.parent.iterdir()) == ["video.mp4"]
    committed = AtomicFile(target)
    assert committed.temporary.suffix == ".mp4" and TEMPORARY_NAME.match(committed.temporary.name)
    committed.temporary.write_bytes(b"new")
    assert committed.commit() == target and target.read_bytes() == b"new"
    committed.discard()  # after a commit there is nothing left to remove
    assert sorted(p.name for p in target.parent.iterdir()) == ["video.mp4"]
