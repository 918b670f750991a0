"""``evaluate_sequences``: HOTA + CLEAR + Identity metrics for paired ground-truth / predicted sequences."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from phalp_lightning.evaluation.benchmarks import HOTA_COLUMNS_LABEL, Benchmark, get_benchmark
from phalp_lightning.evaluation.clear import clear_identity_metrics
from phalp_lightning.evaluation.clear_trackeval import clear_identity_metrics_trackeval
from phalp_lightning.evaluation.hota import ALPHAS, HotaResult, combine_hota, hota_sequence
from phalp_lightning.evaluation.protocol import EvaluationProtocol
from phalp_lightning.evaluation.sequences import SequenceData, TrackSequence, build_sequence_data
from phalp_lightning.utils.io import atomic_write_text

log = logging.getLogger(__name__)

HotaBackend = Literal["own", "trackeval"]

# Columns of the printed table, in order; every column is also in the CSV / JSON.
TABLE_COLUMNS = ("HOTA", "DetA", "AssA", "MOTA", "IDF1", "IDSW", "Precision", "Recall", "FP", "FN")
# Count columns (printed as integers); the others are fractions in [0, 1] (printed as percent).
COUNT_COLUMNS = frozenset({"IDSW", "FP", "FN", "MT", "PT", "ML", "Frag", "GT_Dets", "Pred_Dets", "GT_IDs",
                           "Pred_IDs", "Ignored", "Frames"})
OVERALL = "OVERALL"


@dataclass
class EvaluationResult:
    """Metrics per sequence and over all sequences.

    Attributes:
        per_sequence: sequence name -> column -> value (fractions in [0, 1], counts as floats).
        overall: column -> value over all sequences (see ``protocol`` for how HOTA is aggregated).
        protocol: the protocol the numbers were computed under.
        hota_curves: sequence name (and "OVERALL") -> per-alpha HOTA counts and scores.
        sequences: the TrackEval-style per-sequence data the metrics were computed from.
        benchmark: the preprocessing preset the data went through (``evaluation.benchmarks``).
    """

    per_sequence: dict[str, dict[str, float]]
    overall: dict[str, float]
    protocol: EvaluationProtocol
    hota_curves: dict[str, HotaResult] = field(default_factory=dict, repr=False)
    sequences: dict[str, SequenceData] = field(default_factory=dict, repr=False)
    benchmark: Benchmark | None = None
    missing_predictions: list[str] = field(default_factory=list)
    hota_backend: HotaBackend = "own"

    @property
    def engines(self) -> dict[str, str]:
        """Which code computed which columns (the preset's engines, and the HOTA backend actually used)."""
        engines = dict(self.benchmark_or_plain.engines)
        if self.hota_backend == "trackeval":
            engines[HOTA_COLUMNS_LABEL] = "trackeval.metrics.HOTA (hota_backend=trackeval)"
        return engines

    @property
    def columns(self) -> list[str]:
        """All metric columns, table columns first."""
        names = list(TABLE_COLUMNS)
        for name in self.overall:
            if name not in names:
                names.append(name)
        return names

    def rows(self) -> list[dict[str, Any]]:
        """One dict per sequence plus the OVERALL row, each with a "sequence" key first."""
        table = [{"sequence": name, **metrics} for name, metrics in self.per_sequence.items()]
        return table + [{"sequence": OVERALL, **self.overall}]

    def scalars(self, prefix: str = "eval/") -> dict[str, float]:
        """Overall metrics as a flat dict for loggers (``eval/HOTA``, ...)."""
        return {f"{prefix}{name}": float(value) for name, value in self.overall.items()}

    def format_table(self, columns: tuple[str, ...] = TABLE_COLUMNS) -> str:
        """A fixed-width text table: fractions as percentages, counts as integers."""

        def cell(column: str, value: float) -> str:
            if value is None or (isinstance(value, float) and math.isnan(value)):
                return "nan"
            return f"{int(round(value))}" if column in COUNT_COLUMNS else f"{100.0 * value:.2f}"

        header = ["sequence", *columns]
        body = [[row["sequence"], *(cell(column, row.get(column, float("nan"))) for column in columns)] for row in self.rows()]
        widths = [max(len(str(line[index])) for line in [header, *body]) for index in range(len(header))]
        lines = ["  ".join(str(value).rjust(width) if index else str(value).ljust(width)
                           for index, (value, width) in enumerate(zip(line, widths, strict=True))) for line in [header, *body]]
        lines.insert(1, "-" * len(lines[0]))
        lines.insert(len(lines) - 1, "-" * len(lines[0]))
        benchmark = self.benchmark_or_plain
        footer = [benchmark.describe(),
                  f"protocol: {self.protocol.name} (IoU >= {self.protocol.iou_threshold} for CLEAR/Identity, HOTA {self.protocol.hota_aggregation})",
                  "engines: " + "; ".join(f"{columns} by {engine}" for columns, engine in self.engines.items())]
        if self.missing_predictions:
            # The line read last: a sequence scored without any result is usually a file left out by mistake.
            footer.append(f"WARNING: {len(self.missing_predictions)} ground-truth sequence(s) had no result file and "
                          f"were scored as all misses: {', '.join(self.missing_predictions[:10])}"
                          f"{' ...' if len(self.missing_predictions) > 10 else ''} (missing_prediction=error makes this an error)")
        return "\n".join(lines + footer)

    @property
    def benchmark_or_plain(self) -> Benchmark:
        return self.benchmark if self.benchmark is not None else get_benchmark("plain", "no preset given")

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready dict: protocol, overall, per-sequence metrics and per-alpha HOTA curves."""
        curves = {
            name: {"alpha": ALPHAS.tolist(), "HOTA": curve.hota.tolist(), "DetA": curve.det_a.tolist(),
                   "AssA": curve.ass_a.tolist(), "LocA": curve.loc_a.tolist()}
            for name, curve in self.hota_curves.items()
        }
        return {"benchmark": {**self.benchmark_or_plain.to_dict(), "engines": self.engines}, "protocol": self.protocol.to_dict(),
                "missing_predictions": list(self.missing_predictions), "overall": self.overall,
                "per_sequence": self.per_sequence, "hota_curves": curves}

    def write(self, output_dir: str | os.PathLike[str], stem: str = "metrics") -> dict[str, Path]:
        """Write ``<stem>.csv`` (one row per sequence + OVERALL) and ``<stem>.json`` atomically.

        Undefined values (e.g. MOTP without any match) are "nan" in the CSV and null in the JSON.

        Returns:
            {"csv": path, "json": path}.
        """
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["sequence", *self.columns], extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows())
        paths = {"csv": output_dir / f"{stem}.csv", "json": output_dir / f"{stem}.json"}
        atomic_write_text(paths["csv"], buffer.getvalue())
        atomic_write_text(paths["json"], json.dumps(_json_safe(self.to_json_dict()), indent=2, allow_nan=False) + "\n")
        return paths


def _json_safe(value: Any) -> Any:
    """NaN / inf (e.g. MOTP without any match) become null, so the file is strict JSON."""
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _trackeval_hota(data: SequenceData) -> HotaResult:
    """HOTA from the optional ``trackeval`` package, as a :class:`HotaResult`."""
    try:
        from trackeval.metrics import HOTA
    except ImportError as error:
        raise ImportError("hota_backend='trackeval' needs `pip install --no-deps trackeval==1.3.0`") from error
    result = HOTA().eval_sequence(data.to_trackeval_dict())
    return HotaResult(tp=result["HOTA_TP"], fn=result["HOTA_FN"], fp=result["HOTA_FP"], ass_a=result["AssA"],
                      ass_re=result["AssRe"], ass_pr=result["AssPr"], loc_a=result["LocA"])


def _count_columns(data: SequenceData) -> dict[str, float]:
    return {"GT_Dets": float(data.num_gt_dets), "Pred_Dets": float(data.num_tracker_dets),
            "GT_IDs": float(data.num_gt_ids), "Pred_IDs": float(data.num_tracker_ids),
            "Frames": float(data.num_timesteps), "Ignored": float(data.num_ignored_tracker_dets)}


def evaluate_sequence_data(sequences: Mapping[str, SequenceData], protocol: EvaluationProtocol | None = None,
                           hota_backend: HotaBackend = "own", benchmark: Benchmark | None = None) -> EvaluationResult:
    """Metrics from already paired per-sequence data (see :func:`evaluate_sequences`)."""
    protocol = protocol or EvaluationProtocol()
    if hota_backend not in ("own", "trackeval"):
        raise ValueError(f"hota_backend must be 'own' or 'trackeval', got {hota_backend!r}")
    compute_hota = hota_sequence if hota_backend == "own" else _trackeval_hota
    data_list = list(sequences.values())
    curves = {data.name: compute_hota(data) for data in data_list}
    engine = (benchmark or get_benchmark("plain", "no preset given")).clear_engine
    if engine == "trackeval":
        clear_per_sequence, clear_overall = clear_identity_metrics_trackeval(data_list, protocol.iou_threshold)
    else:
        clear_per_sequence, clear_overall = clear_identity_metrics(data_list, protocol)

    per_sequence = {
        data.name: {**curves[data.name].summary(), **clear_per_sequence[data.name], **_count_columns(data)}
        for data in data_list
    }
    combined = combine_hota(list(curves.values()))
    if protocol.hota_aggregation == "combined" or not per_sequence:
        hota_overall = combined.summary()
    else:
        hota_overall = {name: float(np.mean([metrics[name] for metrics in per_sequence.values()]))
                        for name in combined.summary()}
    counts = {name: float(sum(metrics[name] for metrics in per_sequence.values()))
              for name in ("GT_Dets", "Pred_Dets", "GT_IDs", "Pred_IDs", "Frames", "Ignored")}
    curves[OVERALL] = combined
    return EvaluationResult(per_sequence=per_sequence, overall={**hota_overall, **clear_overall, **counts},
                            protocol=protocol, hota_curves=curves, sequences=dict(sequences), benchmark=benchmark,
                            hota_backend=hota_backend)


def evaluate_sequences(predictions: Mapping[str, TrackSequence], ground_truth: Mapping[str, TrackSequence],
                       protocol: EvaluationProtocol | None = None, hota_backend: HotaBackend = "own",
                       missing_prediction: Literal["empty", "error"] = "empty",
                       benchmark: Benchmark | None = None) -> EvaluationResult:
    """Evaluate tracker output against ground truth, sequence by sequence.

    Args:
        predictions: sequence name -> predicted boxes and track ids.
        ground_truth: sequence name -> ground-truth boxes (and optional scored frames / ignore regions,
            row kinds). Every ground-truth sequence is scored.
        protocol: matching threshold, HOTA aggregation, ignore regions (default: standard protocol).
        hota_backend: "own" (vectorised, no extra dependency) or "trackeval" (the optional package).
        missing_prediction: a ground-truth sequence without predictions is scored as an empty
            prediction with a warning ("empty": all misses) or raises ("error").
        benchmark: the preprocessing preset (``evaluation.benchmarks``; default plain). Ground truth
            loaded for a preset (``load_ground_truth``) must be evaluated with the same preset.

    Returns:
        Per-sequence and overall HOTA, DetA, AssA, MOTA, IDF1, IDSW, precision, recall, FP, FN, ...

    Raises:
        ValueError (a UserError): a prediction has no ground truth, or (``missing_prediction="error"``)
            the reverse.
    """
    from phalp_lightning.evaluation.loading import EvaluationInputError

    protocol = protocol or EvaluationProtocol()
    unknown = sorted(set(predictions) - set(ground_truth))
    if unknown:
        raise EvaluationInputError(f"predictions for sequences without ground truth: {unknown} "
                                   f"(ground truth has {sorted(ground_truth)[:10]}{'...' if len(ground_truth) > 10 else ''})",
                                   "name result files after their ground-truth sequence, or add its ground truth")
    missing = sorted(set(ground_truth) - set(predictions))
    if missing and missing_prediction == "error":
        raise EvaluationInputError(f"no predictions for ground-truth sequences {missing}",
                                   "add their result files, or set missing_prediction=empty to score them as all misses")
    if missing:
        log.warning("%d ground-truth sequence(s) have no predictions and are scored as all misses: %s%s "
                    "(missing_prediction=error makes this an error)", len(missing), ", ".join(missing[:10]),
                    " ..." if len(missing) > 10 else "")
    sequences: dict[str, SequenceData] = {}
    empty = []
    for name in sorted(ground_truth):
        gt = ground_truth[name]
        prediction = predictions[name] if name in predictions else TrackSequence(name, np.zeros(0), np.zeros(0), np.zeros((0, 4)))
        data = build_sequence_data(gt, prediction, protocol, benchmark)
        data.name = name
        sequences[name] = data
        if data.num_gt_dets == 0:
            empty.append(name)
    if empty:
        log.warning("%d sequence(s) have no ground-truth box to score (every prediction there is a false positive, "
                    "HOTA/MOTA of the sequence are 0 or undefined): %s%s", len(empty), ", ".join(empty[:10]),
                    " ..." if len(empty) > 10 else "")
    result = evaluate_sequence_data(sequences, protocol=protocol, hota_backend=hota_backend, benchmark=benchmark)
    result.missing_predictions = missing
    return result
