"""The explicit package list in pyproject.toml must name every package folder."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        ".".join(("phalp_lightning",) + path.parent.relative_to(ROOT / "src" / "phalp_lightning").parts)
        for path in (ROOT / "src" / "phalp_lightning").rglob("__init__.py")
    }
    found |= {
        ".".join(("phalp_lightning", "datamodules") + path.parent.relative_to(ROOT / "datamodules").parts)
        for path in (ROOT / "datamodules").rglob("__init__.py")
    }
    assert found - listed == set(), "add these packages to [tool.setuptools] packages"
    assert listed - found == set(), "these listed packages have no folder"
