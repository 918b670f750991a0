"""Official HMAR file -> key map -> strict load; converter CLI; load_hmar on both formats; clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from test_hmar_network import read_key_table

PREFIX = "HMAR."  # the official 5-character prefix (docs/hmar.md, Official weights)


def official_state_dict(seed: int = 0, drop: re.Pattern[str] | None = None) -> dict[str, torch.Tensor]:
    """Random tensors with the official names (prefix, ``smplx_head``) and shapes, built from the key table."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, (shape, dtype) in read_key_table().items():
        if drop is not None and drop.match(name):
            continue
        if dtype == "int64":
            value = torch.randint(0, 1000, shape, generator=generator, dtype=torch.int64)
        else:
            value = torch.randn(shape, generator=generator)
            if name.endswith("running_var"):
                value = value.abs() + 0.5
        state[PREFIX + name.replace("smpl_head.", "smplx_head.")] = value
    return state


@pytest.fixture()
def official_file(tmp_path: Path) -> Path:
    path = tmp_path / "hmar_v2_weights.pth"
    torch.save({"model": official_state_dict(), "optimizer": {}}, path)
    return path


def assert_matches_official(net: torch.nn.Module, official: dict[str, torch.Tensor]) -> None:
    state = net.state_dict()
    assert len(state) == 686
    for key, value in official.items():
        mapped = key[len(PREFIX) :].replace("smplx", "smpl")
        assert torch.equal(state[mapped], value), mapped


def test_key_map_follows_the_official_loader():
    from phalp_lightning.models.convert_hmar import map_official_state_dict

    official = {
        "HMAR.backbone.conv1.weight": torch.zeros(1),
        "HMAR.smplx_head.fc1.weight": torch.ones(1),
        "HMAR.smpl.v_template": torch.ones(1),  # names none of the four heads: ignored, as PHALP does
        "xxxxxbackbone.conv1.weight": torch.full((1,), 7.0),  # a second spelling: the first one wins
    }
    mapped, ignored = map_official_state_dict(official)
    assert set(mapped) == {"backbone.conv1.weight", "smpl_head.fc1.weight"}
    assert mapped["backbone.conv1.weight"].item() == 0.0
    assert ignored == ["HMAR.smpl.v_template"]


def test_official_file_converts_and_loads_strictly(official_file, tmp_path, assets_env):
    from phalp_lightning.models.convert_hmar import main
    from phalp_lightning.models.hmar_module import HMARModule, load_hmar

    official = torch.load(official_file)["model"]
    direct = load_hmar(official_file)
    assert not direct.training
    assert_matches_official(direct, official)

    converted = tmp_path / "hmar_v2.ckpt"
    main([str(official_file), str(converted)])
    assert converted.is_file() and not converted.with_name(converted.name + ".tmp").exists()
    checkpoint = torch.load(converted, weights_only=True)  # plain tensors and data only
    assert checkpoint["hmar_config"]["img_size"] == 256
    assert_matches_official(load_hmar(converted), official)

    module = HMARModule.load_from_checkpoint(converted, map_location="cpu")
    assert_matches_official(module.net, official)


def test_keys_the_spec_marks_optional_are_filled_and_reported(tmp_path, synthetic_assets):
    from phalp_lightning.models.components.hmar import HMAR
    from phalp_lightning.models.convert_hmar import load_official_state_dict

    optional = re.compile(r"^(backbone\.conv1m\.weight|smpl_head\.init_.*|.*num_batches_tracked)$")
    net = HMAR(assets_dir=synthetic_assets)
    mean_pose = net.smpl_head.init_body_pose.clone()
    filled = load_official_state_dict(net, {"model": official_state_dict(drop=optional)})
    assert "backbone.conv1m.weight" in filled and "smpl_head.init_cam" in filled
    assert len(filled) == 1 + 3 + sum(name.endswith("num_batches_tracked") for name in read_key_table())
    assert torch.equal(net.smpl_head.init_body_pose, mean_pose)  # from smpl_mean_params.npz


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda sd: sd.pop("HMAR.texture_head.decoder.conv_img.bias"),
            r"1 missing key\(s\): texture_head\.decoder\.conv_img\.bias",
        ),
        (
            lambda sd: sd.__setitem__("HMAR.backbone.fc.weight", torch.zeros(1000, 2048)),
            r"1 unexpected key\(s\): backbone\.fc\.weight",
        ),
        (
            lambda sd: sd.__setitem__("HMAR.smplx_head.deccam.bias", torch.zeros(4)),
            r"smpl_head\.deccam\.bias \(file \(4,\), network \(3,\)\)",
        ),
    ],
)
def test_wrong_or_missing_keys_are_listed(edit, expected, tmp_path, assets_env):
    from phalp_lightning.models.convert_hmar import HMARCheckpointError, convert

    state = official_state_dict()
    edit(state)
    path = tmp_path / "broken.pth"
    torch.save({"model": state}, path)
    with pytest.raises(HMARCheckpointError, match=expected) as error:
        convert(path, tmp_path / "out.ckpt")
    assert "broken.pth" in str(error.value)
    assert not (tmp_path / "out.ckpt").exists()


def test_a_file_that_is_not_hmar_is_refused(tmp_path, assets_env):
    from phalp_lightning.models.convert_hmar import HMARCheckpointError
    from phalp_lightning.models.hmar_module import load_hmar

    path = tmp_path / "other.pth"
    torch.save({"weights": {}}, path)
    with pytest.raises(HMARCheckpointError, match="neither"):
        load_hmar(path)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_hmar(tmp_path / "missing.pth")


def test_converter_command_reports_errors_without_a_traceback(tmp_path, capsys):
    from phalp_lightning.models.convert_hmar import main

    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "absent.pth"), str(tmp_path / "out.ckpt")])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "no such file" in message and "absent.pth" in message
