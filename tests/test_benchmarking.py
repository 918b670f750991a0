"""The experiments' shared helpers: best-of-N timing and the results files."""

from __future__ import annotations

import json

import pytest

from phalp_lightning.utils import benchmarking


def test_best_of_is_the_shortest_timed_call_after_the_warmup(monkeypatch):
    # A scripted clock: each timed call reads the clock twice; the calls take 5, 2 and 7 seconds.
    readings = iter([0.0, 5.0, 10.0, 12.0, 20.0, 27.0])
    monkeypatch.setattr(benchmarking.time, "perf_counter", lambda: next(readings))
    calls = []
    assert benchmarking.best_of(lambda: calls.append(1), repeats=3, warmup=2) == 2.0
    assert len(calls) == 5  # 2 untimed warm-up calls + 3 timed ones
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        benchmarking.best_of(lambda: None, repeats=0)


def test_write_results_writes_both_files_atomically_into_a_new_folder(tmp_path):
    out = tmp_path / "new" / "folder"
    json_path, markdown_path = benchmarking.write_results(out, {"command": "python x.py", "ms": 1.5}, "| a |")
    assert json.loads(json_path.read_text()) == {"command": "python x.py", "ms": 1.5}
    assert markdown_path.read_text() == "| a |\n"
    assert sorted(path.name for path in out.iterdir()) == ["results.json", "results.md"]  # no temporaries left
    assert benchmarking.command_line("experiments/x/run.py", ["--frames", "2"]) == "python experiments/x/run.py --frames 2"
    assert {"cpu", "cpu_count", "torch_threads", "torch", "python"} <= set(benchmarking.machine())


def test_time_stage_adds_each_calls_time_to_its_stage_and_keeps_the_result(monkeypatch):
    class Stage:
        def run(self, value: int) -> int:
            """Doubles."""
            return 2 * value

        def fail(self) -> None:
            raise RuntimeError("boom")

    # Each timed call reads the clock twice: the calls take 3, 4 and 1 seconds.
    readings = iter([0.0, 3.0, 10.0, 14.0, 20.0, 21.0])
    monkeypatch.setattr(benchmarking.time, "perf_counter", lambda: next(readings))
    times: dict[str, float] = {}
    benchmarking.time_stage(Stage, "run", times, "work")
    benchmarking.time_stage(Stage, "fail", times, "failing")
    assert Stage().run(4) == 8 and Stage().run(1) == 2
    assert Stage.run.__doc__ == "Doubles."
    with pytest.raises(RuntimeError, match="boom"):
        Stage().fail()
    assert times == {"work": 7.0, "failing": 1.0}  # a call that raises is timed too
