"""Imports run one way: entry points -> stages -> foundation (see docs/architecture.md).

Every module under src/phalp_lightning and datamodules/ is parsed (never imported) and each
``import``/``from ... import`` naming phalp_lightning is checked, including the ones inside functions
and under ``if TYPE_CHECKING:``: a lazy import is still a dependency.

Layers, by the package right under ``phalp_lightning``:

3. entry points: ``pipelines``, ``api`` (the same as functions) and every ``__main__`` module (command
   lines); they may import anything.
2. stages: tracking, models, detection, sinks, rendering, evaluation, datamodules. A stage imports
   itself and the foundation; it imports another stage only along an edge of ``LATERAL_EDGES``.
1. foundation: the package root, structures, utils, errors, assets (the asset registry; its commands
   are ``pipelines.assets``). Foundation packages import each other and nothing above.

A module that ``MODULE_LAYERS`` places below its package's layer is held to that layer even towards
its own package's modules.

No circles: the module import graph (lazy imports included, since a function-level import is how a
circle is usually hidden, and it still ties the two modules together) has no strongly connected
component of more than one module.

``KNOWN_VIOLATIONS_TO_REMOVE`` lists today's imports against these rules, each to be removed by a
later step of the redesign. The test requires the set to be exact: an import against the rules that
is not listed fails, and so does a listed one that is gone (delete it from the set), so the list only
shrinks.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_TREES = {
    ROOT / "src" / "phalp_lightning": ("phalp_lightning",),
    ROOT / "datamodules": ("phalp_lightning", "datamodules"),
}

ENTRY_POINTS, STAGES, FOUNDATION = 3, 2, 1
LAYERS = {
    "pipelines": ENTRY_POINTS,
    "api": ENTRY_POINTS,  # the Python API: the entry points as functions, for notebooks
    "tracking": STAGES,
    "models": STAGES,
    "detection": STAGES,
    "sinks": STAGES,
    "rendering": STAGES,
    "evaluation": STAGES,
    "datamodules": STAGES,
    "": FOUNDATION,  # the package root (phalp_lightning/__init__.py: the version)
    "structures": FOUNDATION,
    "track_sequence": FOUNDATION,  # the evaluator's input type, numpy only (evaluate.py runs without torch)
    "body_model": FOUNDATION,  # the SMPL layer, shared by HMAR, the renderer and the synthetic people
    "utils": FOUNDATION,
    "errors": FOUNDATION,
    "assets": FOUNDATION,
}

# Modules whose layer is not their package's, by dotted prefix (the longest prefix wins).
MODULE_LAYERS = {
    # The file formats (MOT text, PoseTrack JSON, AVA CSV, PHALP results) live with the datamodules, as
    # the design card asks, but they are the project's file I/O: they import only errors and utils, and
    # evaluation and the frame sources read files through them.
    "phalp_lightning.datamodules.formats": FOUNDATION,
}

# Imports between stages that the design wants: (importing stage, imported stage) -> why.
LATERAL_EDGES = {
    ("models", "detection"): "TrackingSystem (models.tracking_system) runs the detector",
    ("sinks", "rendering"): "the video writer draws boxes, overlays and meshes with the renderer",
}

# (importing module, imported module) pairs against the rules above, and what removes each.
KNOWN_VIOLATIONS_TO_REMOVE: set[tuple[str, str]] = set()


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the installed package."""
    modules = {}
    for tree, prefix in SOURCE_TREES.items():
        for path in sorted(tree.rglob("*.py")):
            parts = prefix + path.relative_to(tree).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The phalp_lightning modules that ``name`` imports anywhere in its file."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # `from package import module` imports the module; `from module import name` the module.
            found.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names)
    return {target for target in found if target == "phalp_lightning" or target.startswith("phalp_lightning.")}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _layer(module: str) -> int:
    if module.split(".")[-1] == "__main__":
        return ENTRY_POINTS
    prefixes = [prefix for prefix in MODULE_LAYERS if module == prefix or module.startswith(prefix + ".")]
    if prefixes:
        return MODULE_LAYERS[max(prefixes, key=len)]
    return LAYERS[_package(module)]


def _violations() -> set[tuple[str, str]]:
    modules = _modules()
    violations = set()
    for name, path in modules.items():
        source_layer = _layer(name)
        for target in _imported(name, path, modules):
            source_package, target_package = _package(name), _package(target)
            target_layer = _layer(target)
            # Within a package only a module placed lower (MODULE_LAYERS) is held to its layer.
            if source_layer == ENTRY_POINTS or (source_package == target_package and target_layer <= source_layer):
                continue
            if target_layer < source_layer:
                continue
            if target_layer == source_layer == FOUNDATION:
                continue
            if target_layer == source_layer == STAGES and (source_package, target_package) in LATERAL_EDGES:
                continue
            violations.add((name, target))
    return violations


def _import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (anywhere in its file), self-imports left out."""
    modules = _modules()
    return {
        name: {target for target in _imported(name, path, modules) if target in modules and target != name}
        for name, path in modules.items()
    }


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = lowlink[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = lowlink[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    lowlink[node] = min(lowlink[node], index[child])
                continue
            work.pop()
            if work:
                lowlink[work[-1][0]] = min(lowlink[work[-1][0]], lowlink[node])
            if lowlink[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    circles.append(sorted(component))
    return circles


def test_no_import_circles():
    graph = _import_graph()
    circles = _circles(graph)
    described = [[f"{module} -> {sorted(graph[module] & set(circle))}" for module in circle] for circle in circles]
    assert circles == [], (
        "these modules import each other (directly or around a loop, lazy imports included); move the shared "
        f"code into a module both import, or the dependency one way: {described}"
    )


def test_the_circle_finder_finds_loops_and_only_loops():
    graph = {
        "a": {"b"},
        "b": {"c"},
        "c": {"a", "d"},  # a -> b -> c -> a
        "d": {"e"},
        "e": set(),
        "f": {"g"},
        "g": {"f"},  # f <-> g
        "h": {"a", "f"},  # imports into both loops, in neither
    }
    assert sorted(_circles(graph)) == [["a", "b", "c"], ["f", "g"]]
    assert _circles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_the_architecture_page_names_every_module():
    # docs/architecture.md's room table is the map a newcomer reads first: a module it does not name
    # is a room nobody knows about. (detection/configs holds detectron2 LazyConfig files, not modules.)
    text = re.sub(r"```.*?```", "", (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8"), flags=re.S)
    spans = re.findall(r"`([^`\n]+)`", text)
    named = {word for span in spans for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", span)}
    unnamed = sorted(
        name for name in _modules()
        if name.split(".")[-1] not in named and name != "phalp_lightning" and ".detection.configs" not in name
        and name.split(".")[-1] != "__main__"
    )
    assert unnamed == [], f"name these modules in docs/architecture.md (the rooms table): {unnamed}"


def test_every_package_has_a_layer():
    unknown = {_package(name) for name in _modules()} - set(LAYERS)
    assert unknown == set(), f"give these packages a layer in LAYERS (and docs/architecture.md): {unknown}"


def test_imports_follow_the_layers():
    violations = _violations()
    new = violations - KNOWN_VIOLATIONS_TO_REMOVE
    assert new == set(), (
        "these imports go up a layer or across stages without a LATERAL_EDGES entry; import from a lower "
        f"layer, or move the shared code down: {sorted(new)}"
    )


def test_known_violations_are_still_there():
    gone = KNOWN_VIOLATIONS_TO_REMOVE - _violations()
    assert gone == set(), f"these imports are fixed: delete them from KNOWN_VIOLATIONS_TO_REMOVE: {sorted(gone)}"


def test_the_checker_sees_lazy_relative_and_type_checking_imports(tmp_path):
    package = tmp_path / "phalp_lightning" / "utils"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    source = package / "example.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import io\n"
        "if TYPE_CHECKING:\n"
        "    from phalp_lightning.structures import FrameTracks\n"
        "def run():\n"
        "    import phalp_lightning.tracking.track\n"
        "    from ..sinks.base import Sink\n"
    )
    modules = {"phalp_lightning.utils.io": package / "io.py", "phalp_lightning.sinks.base": Path("base.py")}
    assert _imported("phalp_lightning.utils.example", source, modules) == {
        "phalp_lightning.utils.io",
        "phalp_lightning.structures",
        "phalp_lightning.tracking.track",
        "phalp_lightning.sinks.base",
    }
