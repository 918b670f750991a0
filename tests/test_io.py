import pytest

from phalp_lightning.utils.io import atomic_output, atomic_write_text


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
