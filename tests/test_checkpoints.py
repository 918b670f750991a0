"""The one checkpoint reader: safe load, corrupt files named, the unsafe unpickler only on request."""

from __future__ import annotations

import functools
import os

import pytest
import torch
from omegaconf import OmegaConf

from phalp_lightning.errors import UserError
from phalp_lightning.models.checkpoints import CheckpointError, load_checkpoint


class _RunsCode:
    """Unpickling calls ``os.getpid``: stands for any code a hostile pickle could run."""

    def __reduce__(self):
        return (os.getpid, ())


def test_plain_tensors_and_our_training_extras_load_without_trust(tmp_path):
    path = tmp_path / "ours.ckpt"
    payload = {
        "state_dict": {"net.w": torch.ones(2)},
        "hyper_parameters": {"optimizer": functools.partial(torch.optim.AdamW, lr=1e-3), "cfg": OmegaConf.create({"a": [1, 2]})},
    }
    torch.save(payload, path)
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["state_dict"]["net.w"], torch.ones(2))
    assert loaded["hyper_parameters"]["optimizer"].func is torch.optim.AdamW


def test_the_lr_schedule_loads_under_its_module_and_under_its_name_before_the_move(tmp_path, monkeypatch):
    from phalp_lightning.models.schedules import WarmupCosine

    path = tmp_path / "schedule.ckpt"
    torch.save({"lr_lambda": WarmupCosine(warmup=1, total=4)}, path)
    assert load_checkpoint(path)["lr_lambda"](0) == 1.0
    # A checkpoint written while the class lived in pose_transformer_module names that module.
    monkeypatch.setattr(WarmupCosine, "__module__", "phalp_lightning.models.pose_transformer_module")
    torch.save({"lr_lambda": WarmupCosine(warmup=1, total=4)}, path)
    monkeypatch.undo()
    assert "pose_transformer_module" in str(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    assert isinstance(load_checkpoint(path)["lr_lambda"], WarmupCosine)


@pytest.mark.parametrize("legacy", [False, True])
def test_truncated_file_is_a_user_error_naming_it(tmp_path, legacy):
    path = tmp_path / "weights.pth"
    torch.save({"w": torch.randn(64, 64)}, path, _use_new_zipfile_serialization=not legacy)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="weights.pth: cannot be read, the file is truncated or corrupt") as info:
        load_checkpoint(path, what="HMAR checkpoint")
    assert isinstance(info.value, UserError) and str(info.value).startswith("HMAR checkpoint")


def test_code_running_pickle_is_refused_unless_trusted_and_then_warned(tmp_path, caplog):
    path = tmp_path / "unknown.pt"
    torch.save({"x": _RunsCode()}, path)
    with pytest.raises(CheckpointError, match=r"unknown.pt: holds pickled Python objects .*getpid.*ckpt_trusted=true"):
        load_checkpoint(path)
    with caplog.at_level("WARNING"):
        assert load_checkpoint(path, trusted=True)["x"] == os.getpid()
    assert "UNSAFE LOAD" in caplog.text and "unknown.pt" in caplog.text


def test_missing_and_empty_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.ckpt: no such file"):
        load_checkpoint(tmp_path / "absent.ckpt")
    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.ckpt: the file is empty"):
        load_checkpoint(tmp_path / "empty.ckpt")
