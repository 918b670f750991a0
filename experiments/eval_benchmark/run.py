"""``evaluate.py`` end to end against TrackEval and against the pre-bulk evaluation path, side by side.

    python experiments/eval_benchmark/run.py [--sequences 20 --frames 500 --people 30 --repeats 1]
                                             [--baseline-commit d8cc10f] [--quick]

Writes generated MOTChallenge files (ground truth with seqinfo.ini, one result file per sequence) to
a temporary folder, then times three complete command-line runs on them, each a fresh process (imports,
file reading, metrics, writing the outputs):

- ``evaluate.py`` of this checkout with ``benchmark=mot17`` (the official preset: CLEAR/Identity by
  TrackEval's rules, ``evaluation.clear_trackeval``), CSV logger;
- ``evaluate.py`` of this checkout with ``benchmark=plain`` (CLEAR/Identity by motmetrics);
- TrackEval 1.3.0's ``MotChallenge2DBox`` (MOT17 mode) with HOTA, CLEAR and Identity, its own
  output files switched off;
- ``evaluate.py`` of ``--baseline-commit`` (the path before the bulk motmetrics feed), extracted
  with ``git archive``; skipped with a note when git or the commit is not available.

It also checks that the figures agree: every column of the ``plain`` run's ``metrics.csv`` equals
the baseline's bit for bit (the baseline's ``MOTP`` is today's ``MOTP_distance``), and the ``mot17``
run's HOTA / MOTA / IDF1 / MOTP / IDSW equal TrackEval's. Prints a table and writes results.json / results.md next to this file.
Also times the in-process pieces (HOTA own vs TrackEval's, pairing, CLEAR/Identity).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BASELINE = "d8cc10f"  # the last commit with motmetrics fed frame by frame and Lightning's CSVLogger


def write_dataset(root: Path, sequences: int, frames: int, people: int) -> None:
    """MOTChallenge layout: gt/<seq>/{gt/gt.txt, seqinfo.ini}, trackers/tracker/data/<seq>.txt."""
    from phalp_lightning.datamodules.synthetic.sequences import random_tracking_scene

    for seed in range(sequences):
        gt, pred = random_tracking_scene(seed, num_frames=frames, num_people=people, name=f"SEQ-{seed:02d}")
        folder = root / "gt" / gt.name
        (folder / "gt").mkdir(parents=True, exist_ok=True)
        ones = np.ones(len(gt))
        rows = np.column_stack([gt.frames + 1, gt.track_ids, gt.boxes, ones, ones, ones])
        np.savetxt(folder / "gt" / "gt.txt", rows, fmt="%d,%d,%.2f,%.2f,%.2f,%.2f,%d,%d,%.2f")
        (folder / "seqinfo.ini").write_text(f"[Sequence]\nname={gt.name}\nseqLength={frames}\n")
        results = root / "trackers" / "tracker" / "data"
        results.mkdir(parents=True, exist_ok=True)
        rows = np.column_stack([pred.frames + 1, pred.track_ids, pred.boxes, np.ones(len(pred)), -np.ones((len(pred), 3))])
        np.savetxt(results / f"{gt.name}.txt", rows, fmt="%d,%d,%.2f,%.2f,%.2f,%.2f,%d,%d,%d,%d")


def trackeval_main(root: str, output: str) -> None:
    """TrackEval end to end (run in its own process by ``timed``); writes its combined figures as JSON."""
    import trackeval

    config = trackeval.Evaluator.get_default_eval_config()
    config.update({"USE_PARALLEL": False, "PRINT_RESULTS": False, "PRINT_CONFIG": False, "TIME_PROGRESS": False,
                   "OUTPUT_SUMMARY": False, "OUTPUT_DETAILED": False, "PLOT_CURVES": False,
                   "DISPLAY_LESS_PROGRESS": True, "OUTPUT_EMPTY_CLASSES": False})
    sequences = {name: None for name in sorted(os.listdir(Path(root) / "gt"))}
    dataset = trackeval.datasets.MotChallenge2DBox({
        "GT_FOLDER": str(Path(root) / "gt"), "TRACKERS_FOLDER": str(Path(root) / "trackers"), "SKIP_SPLIT_FOL": True,
        "SEQ_INFO": sequences, "BENCHMARK": "MOT17", "PRINT_CONFIG": False, "TRACKERS_TO_EVAL": ["tracker"]})
    metrics = [trackeval.metrics.HOTA(), trackeval.metrics.CLEAR(), trackeval.metrics.Identity()]
    results, _ = trackeval.Evaluator(config).evaluate([dataset], metrics)
    combined = results["MotChallenge2DBox"]["tracker"]["COMBINED_SEQ"]["pedestrian"]
    figures = {"HOTA": float(np.mean(combined["HOTA"]["HOTA"])), "MOTA": float(combined["CLEAR"]["MOTA"]),
               "IDF1": float(combined["Identity"]["IDF1"]), "MOTP": float(combined["CLEAR"]["MOTP"]),
               "IDSW": float(combined["CLEAR"]["IDSW"])}
    Path(output).write_text(json.dumps(figures))


def timed(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    completed = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stderr[-3000:]}")
    return seconds


def read_overall(path: Path) -> dict[str, dict[str, str]]:
    with path.open() as handle:
        return {row["sequence"]: row for row in csv.DictReader(handle)}


def extract_baseline(commit: str, folder: Path) -> Path | None:
    try:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", commit], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def in_process(root: Path, repeats: int) -> dict[str, float]:
    """The pieces, in this process: HOTA own vs TrackEval's, pairing, CLEAR/Identity by both engines."""
    from trackeval.metrics import HOTA

    from phalp_lightning.evaluation.clear import clear_identity_metrics
    from phalp_lightning.evaluation.clear_trackeval import clear_identity_metrics_trackeval
    from phalp_lightning.evaluation.hota import hota_sequence
    from phalp_lightning.evaluation.loading import load_ground_truth, load_sequences
    from phalp_lightning.evaluation.protocol import EvaluationProtocol
    from phalp_lightning.evaluation.sequences import build_sequence_data

    ground_truth, benchmark = load_ground_truth([root / "gt"], "mot", benchmark="plain")
    predictions = load_sequences([root / "trackers" / "tracker" / "data"], "mot", "pred", benchmark)
    pairs = [(ground_truth[name], predictions[name]) for name in sorted(ground_truth)]

    def best(function) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            function()
            times.append(time.perf_counter() - start)
        return min(times)

    data = [build_sequence_data(gt, pred, benchmark=benchmark) for gt, pred in pairs]
    dicts = [sequence.to_trackeval_dict() for sequence in data]
    reference = HOTA()
    return {
        "pairing_s": best(lambda: [build_sequence_data(gt, pred, benchmark=benchmark) for gt, pred in pairs]),
        "hota_own_s": best(lambda: [hota_sequence(sequence) for sequence in data]),
        "hota_trackeval_s": best(lambda: [reference.eval_sequence(item) for item in dicts]),
        "clear_identity_motmetrics_s": best(lambda: clear_identity_metrics(data, EvaluationProtocol())),
        "clear_identity_trackeval_rules_s": best(lambda: clear_identity_metrics_trackeval(data)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=20)
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--people", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=1, help="end-to-end runs per command (best is kept)")
    parser.add_argument("--baseline-commit", default=DEFAULT_BASELINE)
    parser.add_argument("--quick", action="store_true", help="4 sequences x 100 frames x 10 people")
    parser.add_argument("--trackeval-only", nargs=2, metavar=("ROOT", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trackeval_only:
        trackeval_main(*args.trackeval_only)
        return
    if args.quick:
        args.sequences, args.frames, args.people = 4, 100, 10

    with tempfile.TemporaryDirectory(prefix="eval_benchmark_") as temporary:
        root = Path(temporary)
        write_dataset(root, args.sequences, args.frames, args.people)
        gt_boxes = sum(1 for file in (root / "gt").glob("*/gt/gt.txt") for _ in file.open())
        pred, gt = root / "trackers" / "tracker" / "data", root / "gt"
        python = sys.executable
        ours_cmd = [python, str(REPO / "evaluate.py"), f"pred={pred}", f"gt={gt}", "benchmark=mot17",
                    f"hydra.run.dir={root / 'ours'}"]
        plain_cmd = [python, str(REPO / "evaluate.py"), f"pred={pred}", f"gt={gt}", "benchmark=plain",
                     f"hydra.run.dir={root / 'plain'}"]
        trackeval_cmd = [python, str(Path(__file__).resolve()), "--trackeval-only", str(root), str(root / "trackeval.json")]
        baseline = extract_baseline(args.baseline_commit, root / "baseline_code")
        runs: dict[str, list[float]] = {"ours": [], "plain": [], "trackeval": [], "baseline": []}
        for _ in range(args.repeats):  # interleaved, so that load on the machine hits all of them alike
            runs["ours"].append(timed(ours_cmd, REPO))
            runs["plain"].append(timed(plain_cmd, REPO))
            runs["trackeval"].append(timed(trackeval_cmd, REPO))
            if baseline is not None:
                env = {**os.environ, "PYTHONPATH": f"{baseline / 'src'}{os.pathsep}{baseline}"}
                runs["baseline"].append(timed([python, str(baseline / "evaluate.py"), f"pred={pred}", f"gt={gt}",
                                               f"hydra.run.dir={root / 'baseline'}"], baseline, env))
        ours = read_overall(root / "ours" / "metrics.csv")
        reference = json.loads((root / "trackeval.json").read_text())
        trackeval_differences = {name: abs(float(ours["OVERALL"][name]) - value) for name, value in reference.items()}
        identical = None
        if baseline is not None:
            before = read_overall(root / "baseline" / "metrics.csv")
            plain = read_overall(root / "plain" / "metrics.csv")
            identical = all(
                before[sequence][column] == plain[sequence]["MOTP_distance" if column == "MOTP" else column]
                for sequence in before for column in before[sequence])
        pieces = in_process(root, max(args.repeats, 1))

    best = {name: min(times) for name, times in runs.items() if times}
    results = {
        "setup": {"sequences": args.sequences, "frames": args.frames, "people": args.people, "gt_boxes": gt_boxes,
                  "repeats": args.repeats, "baseline_commit": args.baseline_commit if baseline else None,
                  "machine": platform.processor() or platform.machine(), "python": platform.python_version()},
        "end_to_end_s": best,
        "speedup_vs_trackeval": best["trackeval"] / best["ours"],
        "speedup_vs_baseline": best["baseline"] / best["ours"] if "baseline" in best else None,
        "plain_over_mot17_time": best["plain"] / best["ours"],
        "figures_identical_to_baseline": identical,
        "max_abs_difference_vs_trackeval": trackeval_differences,
        "in_process_s": pieces,
    }
    lines = [
        "| command (fresh process, end to end) | seconds | ratio |",
        "|---|---|---|",
        f"| `evaluate.py benchmark=mot17` (this checkout; CLEAR/Identity by TrackEval's rules) | {best['ours']:.2f} | 1.00 |",
        f"| `evaluate.py benchmark=plain` (this checkout; CLEAR/Identity by motmetrics) | {best['plain']:.2f} | "
        f"{best['plain'] / best['ours']:.2f} |",
        f"| TrackEval 1.3.0 MotChallenge2DBox, HOTA + CLEAR + Identity | {best['trackeval']:.2f} | "
        f"ours {results['speedup_vs_trackeval']:.2f}x faster |",
    ]
    if "baseline" in best:
        lines.append(f"| `evaluate.py` at {args.baseline_commit} (motmetrics per frame) | {best['baseline']:.2f} | "
                     f"ours {results['speedup_vs_baseline']:.2f}x faster |")
    lines += [
        "",
        "| in-process piece | seconds |",
        "|---|---|",
        *(f"| {name} | {value:.3f} |" for name, value in pieces.items()),
        "",
        f"Figures: `benchmark=plain` identical to the baseline's in every column: {identical}. `benchmark=mot17`, "
        "absolute differences from TrackEval: " + ", ".join(f"{name} {value:.1e}" for name, value in trackeval_differences.items())
        + ". (`plain` keeps motmetrics' CLEAR matching, which differs from TrackEval's where frames are ambiguous:"
        " motmetrics keeps a person's last partner, even across frames where the person was missed; TrackEval"
        " favours only the previous frame's pairs and maximises total IoU.)",
    ]
    header = (f"{args.sequences} sequences x {args.frames} frames x {args.people} people ({gt_boxes} GT boxes), "
              f"best of {args.repeats}, the commands interleaved in one run.\n\n")
    table = "\n".join(lines)
    print(header + table)
    folder = Path(__file__).resolve().parent
    from phalp_lightning.utils.io import atomic_write_text

    atomic_write_text(folder / "results.json", json.dumps(results, indent=2) + "\n")
    command = " ".join(["python", "experiments/eval_benchmark/run.py", *sys.argv[1:]])
    atomic_write_text(folder / "results.md", f"# Evaluation benchmark\n\n`{command}`\n\n"
                      + header + table + "\n")


if __name__ == "__main__":
    main()
