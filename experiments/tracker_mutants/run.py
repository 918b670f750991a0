"""A scripted set of mutants of ``tracking/``: does a tracking test fail for each?

    python experiments/tracker_mutants/run.py [--only NAME ...] [--tests tests/test_tracking_rules.py ...]

Each mutant is one textual change (a rule removed, weakened or reordered) applied to a copy of
``src/`` in a temporary folder that goes first on PYTHONPATH; the tracking tests run against it and
stop at the first failure (killed). The worktree is never modified. Results: ``results.md`` here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TRACKING = "src/phalp_lightning/tracking/"
TESTS = [
    "tests/test_tracking_rules.py",
    "tests/test_tracking_gating.py",
    "tests/test_tracking_tracker.py",
    "tests/test_tracking_association.py",
]

# name: (file, old text, new text, what the mutant does)
MUTANTS: dict[str, tuple[str, str, str, str]] = {
    "merge stages": (
        "rule_gated.py",
        "        stages = [\n            (recent, first_stage),\n            (long_lost, first_stage),\n            (tentative, first_stage),\n",
        "        stages = [\n            (recent | long_lost | tentative, first_stage),\n",
        "all first-stage tracks in one assignment",
    ),
    "tentative first": (
        "rule_gated.py",
        "            (recent, first_stage),\n            (long_lost, first_stage),\n            (tentative, first_stage),\n",
        "            (tentative, first_stage),\n            (recent, first_stage),\n            (long_lost, first_stage),\n",
        "tentative tracks served before confirmed ones",
    ),
    "no height gate": (
        "rule_gated.py",
        "allowed = (iou >= np.where(tentative, gate_tentative, gate)[:, None]) & self._height_ok(predicted, boxes)",
        "allowed = iou >= np.where(tentative, gate_tentative, gate)[:, None]",
        "height gate removed",
    ),
    "no tentative gate": (
        "rule_gated.py",
        "np.where(tentative, gate_tentative, gate)[:, None]",
        "np.where(tentative, gate, gate)[:, None]",
        "tentative tracks gated like confirmed ones",
    ),
    "no IoU gate": (
        "rule_gated.py",
        "allowed = (iou >= np.where(tentative, gate_tentative, gate)[:, None]) &",
        "allowed = (iou >= -1.0) &",
        "IoU gates removed (the threshold 1 - gate_iou remains)",
    ),
    "clipping Hungarian, one stage": (
        "rule_gated.py",
        "return gated_assignment(cost, threshold, stages, may_start_track=first_stage), torch.from_numpy(cost)",
        "from phalp_lightning.tracking.association import hungarian_assignment\n"
        "        return hungarian_assignment(torch.from_numpy(cost), threshold), torch.from_numpy(cost)",
        "PHALP's clipping Hungarian over everything instead of the gated, staged solver",
    ),
    "clipping Hungarian per stage": (
        "association.py",
        "gain = np.where(valid, values - threshold, 0.0)",
        "gain = np.where(valid, values, threshold + 1e-5)",
        "each stage solved on clipped costs instead of margins",
    ),
    "emission delay n_init-1+m": (
        "rule.py",
        "return (n_init - 1) * (tentative_max_misses + 1)",
        "return n_init - 1 + tentative_max_misses",
        "the old emission delay (back-fills lost)",
    ),
    "tentative dies one miss early": (
        "phalp_tracker.py",
        "(misses > self.rule.tentative_max_misses)",
        "(misses >= self.rule.tentative_max_misses)",
        "off by one",
    ),
    "lost tracks live to max_age": (
        "rule_gated.py",
        "return max_age if self._assumed_cues().texture else min(max_age, self.recent_age)",
        "return max_age",
        "ghosts that can no longer match kept",
    ),
    "recent stage one frame shorter": (
        "rule_gated.py",
        "recent = confirmed & (since - 1 <= self.recent_age)",
        "recent = confirmed & (since - 1 < self.recent_age)",
        "off by one",
    ),
    "low-score detections start tracks": (
        "rule_gated.py",
        "may_start_track=first_stage)",
        "may_start_track=None)",
        "second stage's start rule removed",
    ),
    "low-score stage for every confirmed track": (
        "rule_gated.py",
        "(confirmed & (since <= 1), ~first_stage)",
        "(confirmed, ~first_stage)",
        "low-score detections continue lost tracks",
    ),
    "low-score stage first": (
        "rule_gated.py",
        "(recent, first_stage),\n",
        "(confirmed & (since <= 1), ~first_stage),\n            (recent, first_stage),\n",
        "low-score detections served first",
    ),
    "filtered boxes never reported": (
        "rule_gated.py",
        "        return self.smooth_boxes\n",
        "        return False\n",
        "smooth_boxes ignored",
    ),
    "any cue spread counts": (
        "cues.py",
        "spread >= MIN_FACTOR_SPREAD",
        "spread > 0.0",
        "an untrained HMAR's tiny spread taken as informative",
    ),
    "depth judged without the box size": (
        "cues.py",
        "beyond_box = torch.log(depth) + torch.log(height)",
        "beyond_box = torch.log(depth)",
        "depth that only restates the box size taken as informative",
    ),
    "reference: ascending unmatched order": (
        "rule_eq019.py",
        "set_order = inputs.reference_mode",
        "set_order = False",
        "the original's set order dropped",
    ),
    "reference: NaN cost not a match": (
        "rule_eq019.py",
        'nan_cost=0.0 if inputs.reference_mode else float("inf")',
        'nan_cost=float("inf")',
        "the original's nan_to_num dropped",
    ),
    "reference_mode keeps the gated rule": (
        "rule.py",
        "    if reference_mode and not isinstance(chosen, EQ019Rule):",
        "    if False:",
        "reference_mode no longer forces the original's rule",
    ),
    "confirmation one hit late": (
        "phalp_tracker.py",
        "confirm = tentative & (hits >= self.n_init)",
        "confirm = tentative & (hits > self.n_init)",
        "off by one",
    ),
    "re-identification without a displacement gate": (
        "rule_gated.py",
        "allowed = plausible & self._height_ok(last, boxes)",
        "allowed = self._height_ok(last, boxes)",
        "a long-lost track may jump anywhere",
    ),
    "re-identification without a size gate": (
        "rule_gated.py",
        "allowed = plausible & self._height_ok(last, boxes)",
        "allowed = plausible",
        "a long-lost track may change size",
    ),
    "re-identification by position alone": (
        "rule_gated.py",
        "long_lost = confirmed & ~recent if cues.texture else np.zeros_like(recent)",
        "long_lost = confirmed & ~recent",
        "the long-lost stage runs without an informative texture cue",
    ),
    "max_cost ignored with 3D cues": (
        "rule_gated.py",
        "            threshold = self.max_cost\n",
        "            threshold = float('inf')\n",
        "EQ_019 x motion pairs accepted at any cost",
    ),
}


def run_mutant(name: str, tests: list[str]) -> tuple[bool, str, float]:
    file, old, new, _ = MUTANTS[name]
    with tempfile.TemporaryDirectory() as scratch:
        shutil.copytree(REPO / "src", Path(scratch) / "src")
        path = Path(scratch) / "src" / "phalp_lightning" / "tracking" / file
        text = path.read_text()
        if text.count(old) != 1:
            raise SystemExit(f"mutant {name!r}: its text occurs {text.count(old)} times in {file} (expected once)")
        path.write_text(text.replace(old, new))
        env = {**os.environ, "PYTHONPATH": str(Path(scratch) / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
            cwd=REPO, env=env, capture_output=True, text=True,
        )
        failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
        return result.returncode != 0, (failed[0][7:] if failed else ""), time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--tests", nargs="*", default=TESTS)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    names = args.only or list(MUTANTS)
    lines = ["| mutant | what it does | killed | first failing test |", "|---|---|---|---|"]
    killed = 0
    for name in names:
        dead, test, seconds = run_mutant(name, args.tests)
        killed += dead
        print(f"{name:<45} {'KILLED' if dead else 'survived'} {test} ({seconds:.0f} s)", flush=True)
        lines.append(f"| {name} | {MUTANTS[name][3]} | {'yes' if dead else '**no**'} | {test} |")
    header = [
        "# Mutants of tracking/",
        "",
        f"`python experiments/tracker_mutants/run.py{' --only ' + ' '.join(repr(n) for n in args.only) if args.only else ''}`"
        f" against {' '.join(args.tests)}: **{killed} of {len(names)} killed**.",
        "",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text("\n".join(header + lines) + "\n")
    print("\n".join(header + lines))


if __name__ == "__main__":
    main()
