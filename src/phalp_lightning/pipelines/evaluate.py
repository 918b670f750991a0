"""``python evaluate.py``: score tracking results against ground truth; print, write and log the table."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, ListConfig

from phalp_lightning.evaluation.evaluator import EvaluationResult, evaluate_sequences
from phalp_lightning.evaluation.loading import EvaluationInputError, load_ground_truth, load_sequences
from phalp_lightning.evaluation.protocol import EvaluationProtocol
from phalp_lightning.evaluation.reporting import ScalarCSVLogger, log_evaluation, log_frames
from phalp_lightning.utils.instantiate import instantiate_loggers
from phalp_lightning.utils.logging import get_logger, task_wrapper

log = get_logger(__name__)


def _paths(value: Any) -> list[str]:
    if isinstance(value, (list, tuple, ListConfig)):
        return [str(item) for item in value]
    return [str(value)]


def report(result: EvaluationResult, output_dir: str | os.PathLike[str], loggers: Sequence[Any] = (),
           sample_frames: Sequence[Any] = (), prefix: str = "eval/") -> dict[str, Path]:
    """Log the table, write ``metrics.csv`` / ``metrics.json`` and send everything to the loggers.

    Args:
        result: the evaluation result.
        output_dir: folder of the output files.
        loggers: Lightning loggers (W&B gets a per-sequence table and images).
        sample_frames: (H, W, 3) uint8 RGB frames to log as images.
        prefix: metric key prefix.

    Returns:
        Paths written: "csv", "json".
    """
    log.info("Tracking metrics (%d sequences):\n%s", len(result.per_sequence), result.format_table())
    paths = result.write(output_dir)
    log.info("Wrote %s and %s", paths["csv"], paths["json"])
    if loggers:
        log_evaluation(result, loggers, prefix=prefix)
    if len(sample_frames):
        log_frames(sample_frames, loggers, key=f"{prefix}frames", output_dir=output_dir)
    if result.missing_predictions:
        # Last line of the run: a sequence scored without any result is usually a file left out by mistake.
        log.warning("%d ground-truth sequence(s) had no result file and were scored as all misses: %s%s "
                    "(missing_prediction=error makes this an error)", len(result.missing_predictions),
                    ", ".join(result.missing_predictions[:10]), " ..." if len(result.missing_predictions) > 10 else "")
    return paths


def _read_frames(paths: Sequence[str], limit: int) -> list[Any]:
    import cv2

    frames = []
    for path in list(paths)[:limit]:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f"sample_frames: cannot read image {path}")
        frames.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    return frames


def evaluate_files(pred: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                   gt: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], format: str = "mot",
                   gt_format: str | None = None, protocol: EvaluationProtocol | None = None,
                   sequences: Sequence[str] | None = None, hota_backend: str = "own",
                   missing_prediction: str = "empty", benchmark: str = "auto") -> EvaluationResult:
    """Read result and ground-truth files and evaluate them (what ``evaluate.py`` does before reporting).

    Args:
        pred: result files / folders (e.g. predict's ``<output_dir>/mot``).
        gt: ground-truth files / folders.
        format: format of ``pred``: "mot" | "posetrack" | "phalp_pkl".
        gt_format: format of ``gt`` (default: ``format``).
        protocol: evaluation protocol (default: standard).
        sequences: score only these ground-truth sequences.
        hota_backend: "own" | "trackeval".
        missing_prediction: "empty" | "error".
        benchmark: "auto" or a preset of ``evaluation.benchmarks.BENCHMARKS`` (ground-truth preprocessing
            and CLEAR/Identity engine); "phalp" also selects the phalp protocol when ``protocol`` is None.

    Returns:
        The evaluation result; ``result.benchmark`` says which preset was applied and why.
    """
    ground_truth, chosen = load_ground_truth(_paths(gt), gt_format or format, benchmark=benchmark)
    predictions = load_sequences(_paths(pred), format, role="pred", benchmark=chosen, sequence_names=ground_truth)
    if sequences:
        wanted = [str(name) for name in sequences]
        unknown = sorted(set(wanted) - set(ground_truth))
        if unknown:
            raise EvaluationInputError(f"sequences={unknown} not in the ground truth ({sorted(ground_truth)[:10]} ...)",
                                       "name ground-truth sequences (file stems, or <seq> of <seq>/gt/gt.txt)")
        ground_truth = {name: ground_truth[name] for name in wanted}
        predictions = {name: sequence for name, sequence in predictions.items() if name in ground_truth}
    if (gt_format or format) == "mot" and chosen.name != "plain":
        for name, prediction in predictions.items():
            scored = ground_truth[name].evaluated_frames if name in ground_truth else None
            if scored is not None and prediction.frames.size and int(prediction.frames.max()) >= scored.shape[0]:
                raise EvaluationInputError(
                    f"results of {name!r}: frame {int(prediction.frames.max()) + 1} is past the sequence's "
                    f"seqLength {scored.shape[0]} (seqinfo.ini / image_info.json)", "check that the results belong to this sequence")
    if chosen.protocol == "phalp" and protocol is None:
        protocol = EvaluationProtocol.phalp()
    protocol = protocol or EvaluationProtocol()
    if chosen.protocol is not None and protocol.name != chosen.protocol:
        raise EvaluationInputError(
            f"benchmark={chosen.name} is scored under the {chosen.protocol} protocol, not eval_protocol={protocol.name}",
            f"drop eval_protocol= (benchmark={chosen.name} selects it), or use benchmark=plain for other protocols")
    # Short: the benchmark's explanation (why chosen, what it drops) is printed once, under the table.
    log.info("Evaluating %d predicted against %d ground-truth sequences (benchmark %s, protocol %s)",
             len(predictions), len(ground_truth), chosen.name, protocol.name)
    return evaluate_sequences(predictions, ground_truth, protocol=protocol, hota_backend=hota_backend,  # type: ignore[arg-type]
                              missing_prediction=missing_prediction, benchmark=chosen)  # type: ignore[arg-type]


# Lightning's CSVLogger, served by an equivalent writer that does not import Lightning and torch.
_LIGHTNING_CSV_LOGGER = "lightning.pytorch.loggers.CSVLogger"


def instantiate_evaluation_loggers(config: DictConfig | None) -> list[Any]:
    """``cfg.logger`` entries; a Lightning ``CSVLogger`` entry becomes :class:`ScalarCSVLogger`.

    Evaluation only writes one row of scalars, and ``ScalarCSVLogger`` writes the same file at the same
    place, so ``logger=csv`` costs no Lightning/torch import. Other loggers are built as configured.
    """
    if not config:
        return []
    loggers = []
    for name, entry in config.items():
        if isinstance(entry, DictConfig) and entry.get("_target_") in (_LIGHTNING_CSV_LOGGER, "lightning.pytorch.loggers.csv_logs.CSVLogger"):
            arguments = {key: value for key, value in entry.items() if key != "_target_"}
            loggers.append(ScalarCSVLogger(**arguments))
        elif entry is not None:
            loggers.extend(instantiate_loggers(DictConfig({name: entry})))
    return loggers


@task_wrapper
def run(cfg: DictConfig) -> dict[str, float]:
    """Evaluate ``cfg.pred`` against ``cfg.gt``; returns the overall metrics."""
    protocol: EvaluationProtocol = hydra.utils.instantiate(cfg.eval_protocol)
    result = evaluate_files(cfg.pred, cfg.gt, format=cfg.format, gt_format=cfg.gt_format, protocol=protocol,
                            sequences=list(cfg.sequences) if cfg.get("sequences") else None,
                            hota_backend=cfg.hota_backend, missing_prediction=cfg.missing_prediction,
                            benchmark=cfg.get("benchmark", "auto"))
    loggers = instantiate_evaluation_loggers(cfg.get("logger"))
    frames = _read_frames(_paths(cfg.sample_frames), cfg.max_sample_frames) if cfg.get("sample_frames") else []
    report(result, cfg.paths.output_dir, loggers=loggers, sample_frames=frames)
    if cfg.get("plot", False):
        from phalp_lightning.evaluation.plots import write_evaluation_plots

        log.info("Wrote plots: %s", ", ".join(str(p) for p in write_evaluation_plots(result, cfg.paths.output_dir)))
    for logger in loggers:
        logger.finalize("success")
    return result.overall
