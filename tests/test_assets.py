import pickle
import subprocess
import sys
import types

import numpy as np

from phalp_lightning.assets import ASSETS, asset_path, assets_root
from phalp_lightning.assets.smpl_convert import convert_smpl_pickle


def test_assets_root_prefers_argument_then_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PHALP_ASSETS", str(tmp_path / "env"))
    assert assets_root() == tmp_path / "env"
    assert assets_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("PHALP_ASSETS")
    assert assets_root().name == "phalp_lightning"


def test_cli_lists_every_asset_and_generates(tmp_path):
    command = [sys.executable, "-m", "phalp_lightning.assets"]
    listing = subprocess.run(command + ["list", "--root", str(tmp_path)], capture_output=True, text=True, check=True).stdout
    for name in ASSETS:
        assert name in listing
    assert listing.count("MISSING") == len(ASSETS)
    subprocess.run(command + ["generate", "--root", str(tmp_path)], capture_output=True, text=True, check=True)
    listing = subprocess.run(command + ["--root", str(tmp_path), "list"], capture_output=True, text=True, check=True).stdout
    generated = [asset for asset in ASSETS.values() if asset.generated]
    assert listing.count("found") == len(generated)
    assert all(asset_path(asset.name, tmp_path).is_file() for asset in generated)


def test_convert_smpl_reads_chumpy_pickles_without_chumpy(tmp_path, monkeypatch):
    # Build a pickle that references chumpy classes, as the official SMPL file does.
    chumpy = types.ModuleType("chumpy")
    chumpy_ch = types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, array):
            self.x = array

        def __reduce__(self):
            return (Ch, (None,), {"x": self.x})

    Ch.__module__ = "chumpy.ch"
    Ch.__qualname__ = "Ch"
    chumpy_ch.Ch = Ch
    monkeypatch.setitem(sys.modules, "chumpy", chumpy)
    monkeypatch.setitem(sys.modules, "chumpy.ch", chumpy_ch)
    arrays = {
        "v_template": np.ones((6890, 3)), "shapedirs": Ch(np.zeros((6890, 3, 10))), "posedirs": np.zeros((6890, 3, 207)),
        "J_regressor": np.zeros((24, 6890)), "weights": Ch(np.ones((6890, 24))), "kintree_table": np.zeros((2, 24)),
        "f": np.zeros((13776, 3), dtype=np.uint32),
    }
    source = tmp_path / "basicModel.pkl"
    source.write_bytes(pickle.dumps(arrays, protocol=2))
    monkeypatch.delitem(sys.modules, "chumpy")
    monkeypatch.delitem(sys.modules, "chumpy.ch")
    target = convert_smpl_pickle(source, tmp_path / "out" / "SMPL_NEUTRAL.pkl")
    with target.open("rb") as handle:
        converted = pickle.load(handle)
    assert isinstance(converted["shapedirs"], np.ndarray) and converted["shapedirs"].shape == (6890, 3, 10)
    np.testing.assert_array_equal(converted["weights"], np.ones((6890, 24)))


def test_convert_smpl_on_a_wrong_file_is_a_user_error_with_the_registration_step(tmp_path):
    import pytest

    from phalp_lightning.assets.__main__ import main
    from phalp_lightning.errors import UserError

    with pytest.raises(UserError, match=r"not found: .*missing\.pkl — pass the neutral model .*smpl\.is\.tue\.mpg\.de"):
        main(["convert-smpl", str(tmp_path / "missing.pkl"), "--root", str(tmp_path)])
    not_smpl = tmp_path / "other.pkl"
    not_smpl.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(UserError, match="holds a list, not the SMPL dict"):
        main(["convert-smpl", str(not_smpl), "--root", str(tmp_path)])
