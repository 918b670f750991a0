"""The notebooks: stored without outputs, only public API, and each runs top to bottom on tiny inputs."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))

# Tiny sizes for CI (the notebooks read these in their first code cell).
TINY = {
    "01_track_a_video.ipynb": {"NB_NUM_FRAMES": "8", "NB_NUM_PEOPLE": "2"},
    # Shards of 3 windows: several shards per split, named by a brace pattern, as with the defaults.
    "02_train_and_compare.ipynb": {"NB_TRAIN_TRACKS": "8", "NB_VAL_TRACKS": "4", "NB_TRACK_LENGTH": "16",
                                   "NB_WINDOW": "16", "NB_EPOCHS": "2", "NB_EPOCH_LENGTH": "64", "NB_SHARD_SIZE": "3"},
    "03_score_a_tracker.ipynb": {"NB_NUM_VIDEOS": "2", "NB_NUM_FRAMES": "8", "NB_NUM_PEOPLE": "2"},
}
# Files each notebook must have written under NB_OUT.
WRITES = {
    "01_track_a_video.ipynb": ["01_track_a_video/predict/results/demo_demo.npz", "01_track_a_video/predict/mot/demo.txt"],
    "02_train_and_compare.ipynb": ["02_train_and_compare/train/checkpoints/last.ckpt",
                                   "02_train_and_compare/data/train-000002.tar", "02_train_and_compare/data/val-000001.tar"],
    "03_score_a_tracker.ipynb": ["03_score_a_tracker/evaluate/metrics.png", "03_score_a_tracker/evaluate/errors.png",
                                 "03_score_a_tracker/evaluate/id_switches/walk0.png", "03_score_a_tracker/evaluate/metrics.csv"],
}
# Pictures each notebook must show (inline PNG outputs).
MIN_IMAGES = {"01_track_a_video.ipynb": 3, "02_train_and_compare.ipynb": 2, "03_score_a_tracker.ipynb": 5}


def code_cells(path: Path) -> list[dict]:
    return [cell for cell in json.loads(path.read_text())["cells"] if cell["cell_type"] == "code"]


def test_the_three_notebooks_are_there():
    assert [p.name for p in NOTEBOOKS] == list(TINY)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_are_stored_without_outputs(path):
    for cell in code_cells(path):
        assert cell["outputs"] == [] and cell["execution_count"] is None, f"{path.name}: clear outputs before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_use_only_the_public_api(path):
    for cell in code_cells(path):
        source = "".join(cell["source"])
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or "", *(alias.name for alias in node.names)]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.Attribute):
                names = [node.attr]
            else:
                continue
            private = [n for n in names for part in n.split(".") if part.startswith("_") and not part.startswith("__")]
            assert not private, f"{path.name} uses private names {private}: add what it needs to the API"
        assert "/work/" not in source and "shared" not in source


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch, synthetic_assets):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")

    monkeypatch.setenv("PHALP_ASSETS", str(synthetic_assets))
    # A space, a comma and '=' in every output path: the API must pass paths past Hydra's override grammar.
    tmp_path = tmp_path / "notebook outputs, v=1"
    monkeypatch.setenv("NB_OUT", str(tmp_path))
    for name, value in TINY[path.name].items():
        monkeypatch.setenv(name, value)
    notebook = nbformat.read(path, as_version=4)
    # Raises CellExecutionError (with the cell and its traceback) when any cell fails.
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK_DIR)}}).execute()
    images = sum("image/png" in output.get("data", {}) for cell in notebook.cells for output in cell.get("outputs", []))
    assert images >= MIN_IMAGES[path.name]
    for relative in WRITES[path.name]:
        assert (tmp_path / relative).is_file(), relative
