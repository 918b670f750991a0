"""Every command line that README.md and docs/*.md show still works as written.

The commands are read from the Markdown itself: lines of fenced code blocks (continuation lines joined,
comments dropped) and inline code spans of prose that run ``python train.py|predict.py|evaluate.py ...``
or ``python -m phalp_lightning.<module> ...``. Documentation notation is read as a user would:
``[ckpt=...]`` is an optional argument (kept), ``render=boxes|mesh`` lists choices (each one is checked),
``...`` stands for "your other arguments" (dropped), ``<...>`` and input paths (``clip.mp4``,
``video='[a.mp4,b.mp4]'``, ``ground_truth=gt.txt``) are filled with tiny inputs this test writes.

- Every Hydra command composes (and resolves) with ``compose_run_config``, as its entry point would compose
  it; commands for GPUs or many nodes are only composed. Every module command's arguments are parsed by the
  module's own parser without running it. A failure names the documented file and line.
- A few commands run in a subprocess on 2-frame 64-px videos: the assets generator, predict with
  ``evaluate=true``, evaluate.py on that run's output, and the README's scale-out line on 2 CPU processes.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = PROJECT_ROOT / "configs"
HYDRA_SCRIPTS = {"train.py": "train", "predict.py": "predict", "evaluate.py": "evaluate"}
COMMAND = re.compile(r"(?:^|(?<=[\s`:(]))python\s+(?:(?P<script>train\.py|predict\.py|evaluate\.py)|-m\s+(?P<module>phalp_lightning\.[\w.]+))(?=\s|$)")
INLINE_CODE = re.compile(r"`([^`]+)`")
# What may come before ``python`` in an inline span, and at the start of a code line (a prompt, a
# comment such as "# then:", environment variables, srun).
SPAN_PREFIX = re.compile(r"\s*([A-Z_]+=\S*\s+)*(srun\s+)?")
CODE_LINE_PREFIX = re.compile(r"\s*(?:\$\s+)?(?:#\s*(?:[\w ]+:\s*)?)?(?:[A-Z_]+=\S*\s+)*(?:srun\s+)?(?=python\s)")
# A documentation placeholder (<run>, <dir with <seq>/gt/gt.txt>) becomes this marker before tokenising.
PLACEHOLDER = "@PLACEHOLDER@"
# Hydra's own flags: they choose what the entry point prints, not what it composes.
HYDRA_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--info", "-i", "--config-name", "-cn", "--config-path", "-cp"}
HYDRA_FLAGS = {"--help", "-h", "--hydra-help", "--resolve", "--version", "--shell-completion", "-sc"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv"}
# Added to the commands that run: tiny HMAR crops, no progress bar, a box filter 64-px frames can pass.
FAST = ["+hmar.img_size=64", "progress_bar=false", "system.min_box_width=20", "system.min_box_height=20"]


@dataclass(frozen=True)
class DocumentedCommand:
    """One command line as a document shows it."""

    file: str  # relative to the project root
    line: int  # 1-based line where the command starts
    text: str  # from ``python`` to the end (continuations joined)
    index: int = 1  # the n-th command on that line
    inline: bool = False  # an inline code span of prose (else a line of a code block)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" + (f"#{self.index}" if self.index > 1 else "")

    @property
    def program(self) -> str:
        """``predict.py`` (and the other Hydra scripts), or the module of ``python -m <module>``."""
        found = COMMAND.search(self.text)
        assert found is not None
        return found["script"] or found["module"]

    @property
    def arguments(self) -> list[str]:
        """Tokens after the program, documentation placeholders replaced by PLACEHOLDER, comments dropped."""
        return [token for token in self._tokens() if token != "..."]

    @property
    def elided(self) -> bool:
        """Whether the document left arguments out (``...``): such a line names a command, it is not a full one."""
        return "..." in self._tokens()

    def _tokens(self) -> list[str]:
        found = COMMAND.search(self.text)
        assert found is not None
        rest = mark_placeholders(self.text[found.end() :])
        # [x] at the start of a word is an optional argument; a Hydra list always follows '=' or a quote.
        rest = re.sub(r"(?<![=\w'\"\]])\[([^\[\]]*)\]", r"\1", rest)
        return shlex.split(rest, comments=True)


def mark_placeholders(text: str) -> str:
    """``<...>`` groups (nested ones too) -> PLACEHOLDER; an unbalanced ``<`` is left alone."""
    out, depth, start = [], 0, 0
    for position, char in enumerate(text):
        if char == "<":
            if depth == 0:
                start = position
            depth += 1
        elif char == ">" and depth:
            depth -= 1
            if depth == 0:
                out.append(PLACEHOLDER)
        elif depth == 0:
            out.append(char)
    if depth:  # unbalanced: keep the rest as written
        out.append(text[start:])
    return "".join(out)


def documented_commands(files: list[Path] | None = None) -> list[DocumentedCommand]:
    """Every ``python train.py|predict.py|evaluate.py`` / ``python -m phalp_lightning.*`` command in the docs."""
    files = files if files is not None else [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
    found: list[tuple[str, int, str, bool]] = []
    for path in files:
        name = str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else path.name
        lines = path.read_text(encoding="utf-8").splitlines()
        in_code, paragraph = False, []  # paragraph: (line number, text) of prose lines
        for number, line in enumerate(lines, start=1):
            if line.lstrip().startswith("```"):
                found += _inline_commands(name, paragraph)
                in_code, paragraph = not in_code, []
                continue
            if in_code:
                if _continues(lines, number):
                    continue  # joined into the line that starts the command
                joined = _join_continuations(lines, number)
                prefix = CODE_LINE_PREFIX.match(joined)
                if prefix and COMMAND.match(joined, prefix.end()):
                    found.append((name, number, joined[prefix.end() :], False))
            elif line.strip():
                paragraph.append((number, line))
            else:
                found += _inline_commands(name, paragraph)
                paragraph = []
        found += _inline_commands(name, paragraph)
    commands, seen = [], {}
    for file, line, text, inline in found:
        seen[(file, line)] = seen.get((file, line), 0) + 1
        commands.append(DocumentedCommand(file, line, " ".join(text.split()), seen[(file, line)], inline))
    return commands


def _continues(lines: list[str], number: int) -> bool:
    """Whether line ``number`` (1-based) is the continuation of the line before it (that ends with a backslash)."""
    return number > 1 and lines[number - 2].rstrip().endswith("\\")


def _join_continuations(lines: list[str], number: int) -> str:
    """Line ``number`` (1-based) and the lines its trailing backslashes continue onto, as one line."""
    parts, index = [], number - 1
    while lines[index].rstrip().endswith("\\") and index + 1 < len(lines):
        parts.append(lines[index].rstrip()[:-1])
        index += 1
    return " ".join([*parts, lines[index]])


def _inline_commands(name: str, paragraph: list[tuple[int, str]]) -> list[tuple[str, int, str, bool]]:
    """Commands in the inline code spans of one prose paragraph (a span may cross a line break)."""
    if not paragraph:
        return []
    text = "\n".join(line for _, line in paragraph)
    found = []
    for span in INLINE_CODE.finditer(text):
        code = span.group(1)
        match = COMMAND.search(code)
        if match is None or not SPAN_PREFIX.fullmatch(code[: match.start()]):
            continue  # `python` must start the span (after environment variables or srun)
        line = paragraph[0][0] + text.count("\n", 0, span.start())
        found.append((name, line, code[match.start() :].replace("\n", " "), True))
    return found


def choices(token: str) -> list[str]:
    """``render=boxes|mesh`` -> both; ``{video,crops}`` -> both; anything else -> itself."""
    braces = re.fullmatch(r"\{([^{}]*)\}", token)
    if braces:
        return braces.group(1).split(",")
    key, equals, value = token.partition("=")
    if not equals:
        return token.split("|") if "|" in token and not token.startswith(("[", "'")) else [token]
    if "|" not in value or value.startswith("["):
        return [token]
    return [f"{key}={option}" for option in value.split("|")]


def variants(arguments: list[str]) -> list[list[str]]:
    return [list(combination) for combination in itertools.product(*(choices(token) for token in arguments))]


# --------------------------------------------------------------------------------------------- inputs


@dataclass
class Inputs:
    """Tiny real inputs for the documented commands, under ``root``."""

    root: Path
    rng: np.random.Generator

    @property
    def ground_truth_dir(self) -> Path:
        """A MOTChallenge-style folder: ``clip/gt/gt.txt`` (the sequence of ``clip.mp4``)."""
        return self.root / "ground_truth"

    @property
    def ground_truth_file(self) -> Path:
        return self.ground_truth_dir / "clip" / "gt" / "gt.txt"

    @property
    def run_dir(self) -> Path:
        """Where documented ``<run>`` placeholders point: the output folder of a predict run."""
        return self.root / "run"

    def video(self, documented: str) -> Path:
        """A 2-frame, 64-px clip named as documented: ``a.mp4`` -> a video, ``frames_dir/`` -> a frame folder."""
        import cv2

        name = "clip.mp4" if PLACEHOLDER in documented or documented.strip() in ("", "...") else Path(documented.rstrip("/")).name
        path = self.root / "videos" / name
        if path.exists():
            return path
        frames = [self.rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(2)]
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() in VIDEO_SUFFIXES:
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 64))
            for frame in frames:
                writer.write(frame)
            writer.release()
        else:  # a frame folder (frames_dir/, MOT17-02)
            path.mkdir()
            for index, frame in enumerate(frames, start=1):
                cv2.imwrite(str(path / f"{index:06d}.jpg"), frame)
        return path

    def fill_override(self, token: str) -> str:
        """One Hydra override with its inputs made real: videos, ground truth, ``<...>`` placeholders."""
        key, equals, value = token.partition("=")
        if not equals:
            return token
        if key.lstrip("+~") == "video":
            items = value[1:-1].split(",") if value.startswith("[") else [value]
            # video=... (one video) is a clip; in a list, '...' stands for more of the same.
            paths = [str(self.video(item)) for item in items if not (len(items) > 1 and item.strip() in ("", "..."))]
            return f"{key}=[{','.join(paths)}]" if value.startswith("[") else f"{key}={paths[0]}"
        if key.lstrip("+~") == "ground_truth":
            return f"{key}={self.ground_truth_file}"
        if PLACEHOLDER in value or value == "...":
            # pred=<run>/mot, logs/predict/runs/<run>/mot -> <run folder>/mot; gt=<...> -> the ground-truth folder.
            base = {"gt": self.ground_truth_dir, "pred": self.run_dir, "hydra.run.dir": self.run_dir}.get(key, self.root / key.replace(".", "_"))
            return f"{key}={base}{value.split(PLACEHOLDER)[-1] if PLACEHOLDER in value else ''}"
        return token

    def fill_module_argument(self, token: str) -> str:
        """A module command's argument: placeholders and METAVARS (``DIR``, ``N``) get values its parser accepts."""
        if PLACEHOLDER in token:
            return token.replace(PLACEHOLDER, str(self.root / "placeholder"))
        if re.fullmatch(r"[A-Z][A-Z_]*", token):
            return "1" if token == "N" else str(self.root / token.lower())
        return token


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    made = Inputs(tmp_path_factory.mktemp("documented_inputs"), np.random.default_rng(0))
    made.ground_truth_file.parent.mkdir(parents=True)
    # Two people over the clip's 2 frames (MOT: frame, id, left, top, width, height, conf, class, visibility).
    made.ground_truth_file.write_text("1,1,5,4,20,40,1,1,1\n1,2,35,10,20,40,1,1,1\n2,1,6,4,20,40,1,1,1\n2,2,34,10,20,40,1,1,1\n")
    return made


# ------------------------------------------------------------------------------------------ composing


COMMANDS = documented_commands()
HYDRA_COMMANDS = [command for command in COMMANDS if command.program in HYDRA_SCRIPTS]
MODULE_COMMANDS = [command for command in COMMANDS if command.program not in HYDRA_SCRIPTS]


def hydra_overrides(arguments: list[str]) -> list[str]:
    """The overrides of a Hydra command line, its flags (``--cfg job``, ``--help``) left out."""
    overrides, skip = [], False
    for token in arguments:
        if skip:
            skip = False
        elif token in HYDRA_FLAGS_WITH_VALUE:
            skip = True
        elif token not in HYDRA_FLAGS and token not in ("-m", "--multirun"):
            overrides.append(token)
    return overrides


def compose_documented(command: DocumentedCommand, overrides: list[str], output_dir: Path):
    """The config the entry point of ``command`` would run with, resolved; fails naming the document line."""
    from omegaconf import OmegaConf

    from phalp_lightning.utils.config import compose_run_config

    try:
        cfg = compose_run_config(CONFIG_DIR, HYDRA_SCRIPTS[command.program], overrides, output_dir, working_dir=PROJECT_ROOT)
        OmegaConf.resolve(cfg)
        return cfg
    except Exception as error:  # noqa: BLE001 - any composition error is the finding, reported with its line
        problem = f"{type(error).__name__}: {error}"
    pytest.fail(f"{command.where}: documented command no longer composes: {command.text}\n  overrides {overrides}\n  {problem}", pytrace=False)


def test_the_documents_show_the_entry_points_and_the_scale_out_lines():
    """The extraction finds the commands (a Markdown change that hides them would empty the checks below)."""
    programs = {command.program for command in COMMANDS}
    assert {"train.py", "predict.py", "evaluate.py", "phalp_lightning.assets"} <= programs, programs
    assert len(HYDRA_COMMANDS) >= 30, [command.where for command in HYDRA_COMMANDS]
    assert scale_out_commands(), "no documented 'python predict.py ... trainer.strategy=ddp' line for CPUs and GPUs alike"


@pytest.mark.parametrize("command", HYDRA_COMMANDS, ids=[command.where for command in HYDRA_COMMANDS])
def test_documented_hydra_command_composes(command: DocumentedCommand, inputs: Inputs, tmp_path: Path):
    for arguments in variants(command.arguments):
        overrides = [inputs.fill_override(token) for token in hydra_overrides(arguments)]
        cfg = compose_documented(command, overrides, tmp_path)
        if command.program == "predict.py" and any(token.startswith("video=") for token in overrides):
            assert all(Path(video).exists() for video in ([cfg.video] if isinstance(cfg.video, str) else cfg.video)), command.where


class _Parsed(Exception):
    """Raised in place of running a module command once its parser accepted the arguments."""


@pytest.mark.parametrize("command", MODULE_COMMANDS, ids=[command.where for command in MODULE_COMMANDS])
def test_documented_module_command_parses(command: DocumentedCommand, inputs: Inputs, monkeypatch: pytest.MonkeyPatch, capsys):
    try:
        module = importlib.import_module(command.program)
        main = getattr(module, "main", None) or importlib.import_module(f"{command.program}.__main__").main
    except (ImportError, AttributeError) as error:
        pytest.fail(f"{command.where}: documented module has no command line: {command.text}\n  {error}", pytrace=False)
    if command.elided or (command.inline and not command.arguments):
        return  # the prose names the command (`python -m ... build_shards ...`): that it exists is what it says
    parse_args = argparse.ArgumentParser.parse_args

    def parse_then_stop(parser, args=None, namespace=None):
        parse_args(parser, args, namespace)
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    for arguments in variants(command.arguments):
        filled = [inputs.fill_module_argument(token) for token in arguments]
        try:
            main(filled)
            refused = f"{command.program}.main returned without parsing its arguments"
        except _Parsed:
            continue
        except SystemExit:
            refused = capsys.readouterr().err.strip()
        pytest.fail(f"{command.where}: documented arguments are refused: {command.text}\n  {refused}", pytrace=False)


# -------------------------------------------------------------------------------------------- running


def scale_out_commands() -> list[DocumentedCommand]:
    """Documented ``predict.py ... trainer.strategy=ddp`` lines that do not ask for GPUs."""
    return [
        command
        for command in HYDRA_COMMANDS
        if command.program == "predict.py"
        and "trainer.strategy=ddp" in command.arguments
        and not any(token.startswith("trainer.accelerator=") and token != "trainer.accelerator=cpu" for token in command.arguments)
    ]


def first_command(predicate: Callable[[DocumentedCommand], bool], what: str) -> DocumentedCommand:
    for command in COMMANDS:
        if predicate(command):
            return command
    pytest.fail(f"no documented command {what} (the docs changed: update this test's choice)", pytrace=False)


def run_documented(command: DocumentedCommand, overrides: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, command.program, *overrides], cwd=PROJECT_ROOT, env={**os.environ, **env, "PYTHONWARNINGS": "ignore"},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, f"{command.where}: documented command failed (exit {result.returncode}): {command.text}\n{result.stderr[-3000:]}"
    return result


def run_overrides(command: DocumentedCommand, inputs: Inputs, *extra: str) -> list[str]:
    (arguments,) = variants(command.arguments)[:1]
    return [*(inputs.fill_override(token) for token in hydra_overrides(arguments)), *extra]


@pytest.mark.slow
def test_documented_assets_predict_and_evaluate_commands_run(inputs: Inputs, tmp_path: Path):
    """The README's body-model generator, then predict with evaluate=true, then evaluate.py on its output."""
    assets = tmp_path / "assets"
    generate = first_command(lambda c: c.program == "phalp_lightning.assets" and c.arguments == ["generate"], "'python -m phalp_lightning.assets generate'")
    done = subprocess.run([sys.executable, "-m", generate.program, *generate.arguments], env={**os.environ, "PHALP_ASSETS": str(assets)},
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0 and (assets / "3D").is_dir(), f"{generate.where}: {done.stderr[-2000:]}"

    predict = first_command(
        lambda c: c.program == "predict.py" and "evaluate=true" in c.arguments and not any(t.startswith(("ckpt=", "experiment=")) for t in c.arguments),
        "'python predict.py video=... evaluate=true ground_truth=...'",
    )
    overrides = run_overrides(predict, inputs, *FAST, f"output_dir={inputs.run_dir}", f"hydra.run.dir={tmp_path / 'predict_run'}")
    run_documented(predict, overrides, {"PHALP_ASSETS": str(assets)})
    assert (inputs.run_dir / "mot" / "clip.txt").is_file(), f"{predict.where}: no MOT output"
    assert list((inputs.run_dir / "evaluation").glob("*")), f"{predict.where}: evaluate=true wrote no evaluation"

    evaluate = first_command(
        lambda c: c.program == "evaluate.py" and "format=mot" in c.arguments and any(t.startswith("pred=") and PLACEHOLDER in t for t in c.arguments),
        "'python evaluate.py pred=<run>/mot gt=<...> format=mot'",
    )
    overrides = run_overrides(evaluate, inputs, f"hydra.run.dir={tmp_path / 'evaluate_run'}", "logger=none")
    result = run_documented(evaluate, overrides, {"PHALP_ASSETS": str(assets)})
    assert "clip" in result.stdout + result.stderr, f"{evaluate.where}: the sequence 'clip' was not scored\n{result.stdout[-2000:]}"


@pytest.mark.slow
def test_documented_scale_out_line_runs_on_two_cpu_processes(inputs: Inputs, synthetic_assets: Path, tmp_path: Path):
    """``python predict.py video='[a.mp4,b.mp4,c.mp4]' trainer.devices=8 trainer.strategy=ddp`` with 2 CPU devices."""
    command = scale_out_commands()[0]
    out, run = tmp_path / "out", tmp_path / "run"
    overrides = run_overrides(command, inputs, "trainer.accelerator=cpu", "trainer.devices=2", *FAST, f"output_dir={out}", f"hydra.run.dir={run}")
    result = run_documented(command, overrides, {"PHALP_ASSETS": str(synthetic_assets)})
    videos = [Path(v).stem for token in overrides if token.startswith("video=") for v in token[len("video=") :].strip("[]").split(",")]
    assert len(videos) >= 2 and sorted(path.stem for path in (out / "mot").glob("*.txt")) == sorted(videos), (command.where, result.stdout[-2000:])
    assert "Starting with 2 processes" in result.stdout + result.stderr, f"{command.where}: not run on 2 processes"
    # Each process logs to a file named after the task (Lightning's relaunch would name it train_ddp_process_1).
    assert sorted(path.name for path in run.glob("*.log")) == ["predict.log", "predict_rank1.log"], sorted(run.iterdir())


# ------------------------------------------------------------------------------- the reader itself


def test_reader_finds_code_blocks_continuations_inline_spans_and_reports_lines(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text(
        "Intro `python predict.py video=<file> [ckpt=x.ckpt]` and\n"
        "a span over a break: `python train.py model=hmar\n"
        "debug=fdr` here; `python experiments/x/run.py` is not one.\n"
        "\n"
        "```bash\n"
        "python evaluate.py pred=a gt=b \\\n"
        "    format=mot   # a comment with <angle> words\n"
        "srun python train.py model=hmar trainer=ddp  # several nodes\n"
        "python -m phalp_lightning.assets generate\n"
        "```\n"
    )
    found = [(c.line, c.program, c.arguments) for c in documented_commands([page])]
    assert found == [
        (1, "predict.py", [f"video={PLACEHOLDER}", "ckpt=x.ckpt"]),
        (2, "train.py", ["model=hmar", "debug=fdr"]),
        (6, "evaluate.py", ["pred=a", "gt=b", "format=mot"]),
        (8, "train.py", ["model=hmar", "trainer=ddp"]),
        (9, "phalp_lightning.assets", ["generate"]),
    ]
    assert variants(["video=[a.mp4,b.mp4]", "render=boxes|mesh"]) == [["video=[a.mp4,b.mp4]", "render=boxes"], ["video=[a.mp4,b.mp4]", "render=mesh"]]


def test_a_documented_command_that_no_longer_composes_fails_naming_its_line(tmp_path: Path, inputs: Inputs):
    command = DocumentedCommand("docs/page.md", 7, "python predict.py video=clip.mp4 trainer.no_such_key=1")
    with pytest.raises(pytest.fail.Exception, match=r"docs/page\.md:7: documented command no longer composes"):
        compose_documented(command, [inputs.fill_override(token) for token in command.arguments], tmp_path)


def test_each_process_logs_to_a_file_named_after_the_task_and_its_rank(tmp_path: Path):
    from phalp_lightning.utils.distributed import process_rank, rank_log_path

    # Lightning's relaunched ranks carry LOCAL_RANK; torchrun's RANK (global) wins over it; srun's SLURM_PROCID last.
    assert [process_rank(env) for env in ({}, {"LOCAL_RANK": "1"}, {"RANK": "5", "LOCAL_RANK": "1"}, {"SLURM_PROCID": "3"})] == [0, 1, 5, 3]
    assert rank_log_path(tmp_path / "predict.log", 0) == tmp_path / "predict.log"
    assert rank_log_path(tmp_path / "predict.log", 3) == tmp_path / "predict_rank3.log"
