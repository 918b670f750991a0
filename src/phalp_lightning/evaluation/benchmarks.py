"""Benchmark presets: the ground-truth preprocessing each benchmark's official evaluation applies.

A preset decides which ground-truth rows are scored, which predictions are removed before scoring,
and which frames count. Matching thresholds and HOTA aggregation stay with the
:class:`~phalp_lightning.evaluation.protocol.EvaluationProtocol`.

- ``plain``: every ground-truth row with a non-zero ``conf`` is scored; nothing else is removed
  (besides the protocol's ignore-region rule for files that carry ignore regions).
- ``mot15``: TrackEval's MotChallenge2DBox with ``BENCHMARK=MOT15``: rows whose ``conf`` truncated to
  an integer is 0 are dropped; no class filter, no distractors.
- ``mot16`` / ``mot17``: TrackEval's MOTChallenge preprocessing. Each frame's predictions are matched
  to *all* ground-truth rows (Hungarian on IoU, IoU < 0.5 never matches); a prediction matched to a
  distractor (person on vehicle, static person, distractor, reflection) is removed. Then only
  pedestrians (class 1) with a non-zero mark are scored. Visibility is not used (neither does the
  official evaluation).
- ``mot20``: as MOT17, and non-motorised vehicles (class 6) are distractors too.
- ``posetrack21_boxes`` (was ``posetrack21``): PoseTrack21's box (MOT) evaluation: labelled frames are scored (in its MOT layout,
  every image of ``image_info.json``, with every ``gt.txt`` row); a prediction that TrackEval's
  match leaves unmatched is removed when its IoU with an ignore region exceeds 0.1, in frames that
  hold ground truth.
- ``posetrack18_boxes`` (was ``posetrack18``): PoseTrack18's evaluation (poseval) data rules applied to boxes: frames with at least
  one annotated person are scored; a person's points are its 15 scored joints that are annotated
  (not ``x = y = v = 0``); a ground-truth person without any point is not scored (poseval has no
  joint of it to score); in frames with ignore regions, points inside a region are dropped and people
  (ground truth and predictions) left without a point are removed. A prediction without keypoints (a
  box-only tracker) is represented by its box centre. poseval's own score is keypoint MOTA (PCKh
  matching), which this box evaluation does not compute.
- ``phalp``: PHALP's own ``evaluate_PHALP.py``: ground truth as given, motmetrics' CLEAR/Identity,
  and the ``phalp`` protocol (IoU >= 0.01, HOTA averaged per video).

The official presets (``mot15`` ... ``mot20``, ``posetrack21_boxes``) compute CLEAR and Identity by
TrackEval's rules (``clear_trackeval``); ``plain``, ``posetrack18_boxes`` and ``phalp`` use
motmetrics. Every output says which engine computed which column.

``resolve_benchmark`` picks the preset from the files when the layout leaves one answer, and says why.
"""

from __future__ import annotations

import configparser
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from phalp_lightning.errors import UserError

log = logging.getLogger(__name__)

IgnoreRule = Literal["protocol", "posetrack21", "posetrack18"]

# MOTChallenge class ids (TrackEval's MotChallenge2DBox).
MOT_CLASSES = {"pedestrian": 1, "person_on_vehicle": 2, "car": 3, "bicycle": 4, "motorbike": 5, "non_mot_vehicle": 6,
               "static_person": 7, "distractor": 8, "occluder": 9, "occluder_on_ground": 10, "occluder_full": 11,
               "reflection": 12, "crowd": 13}
_MOT17_DISTRACTORS = frozenset({2, 7, 8, 12})
MOT_PRESETS = ("mot15", "mot16", "mot17", "mot20")
POSETRACK_PRESETS = ("posetrack18_boxes", "posetrack21_boxes")
BENCHMARKS = ("plain", *MOT_PRESETS, *POSETRACK_PRESETS, "phalp")
# Names before the PoseTrack presets said what they compute: accepted with a warning.
DEPRECATED_NAMES = {"posetrack18": "posetrack18_boxes", "posetrack21": "posetrack21_boxes"}
# Roles of ground-truth rows (``TrackSequence.kinds``): the presets assign them, the matching in
# evaluation.sequences reads them, so they live here and sequences imports them one way.
SCORED, UNSCORED, DISTRACTOR = 0, 1, 2
ClearEngine = Literal["trackeval", "motmetrics"]
# What each CLEAR/Identity engine is, for the table footer and metrics.json.
ENGINE_LABELS = {
    "trackeval": "TrackEval 1.3.0's CLEAR/Identity rules (phalp_lightning.evaluation.clear_trackeval)",
    "motmetrics": "motmetrics 1.4.0 (phalp_lightning.evaluation.clear)",
}
HOTA_ENGINE_LABEL = "TrackEval's HOTA definition (phalp_lightning.evaluation.hota)"
HOTA_COLUMNS_LABEL = "HOTA, DetA, AssA, LocA, ..."
CLEAR_COLUMNS_LABEL = "MOTA, MOTP, IDSW, FP, FN, Frag, MT/PT/ML, IDF1, IDP, IDR, ..."


@dataclass(frozen=True)
class Benchmark:
    """One benchmark's preprocessing.

    Attributes:
        name: ``plain``, ``mot15`` ... ``posetrack21``.
        summary: what the preset drops, for the table footer and the output files.
        reason: how it was chosen ("set by benchmark=..." or what in the files decided it).
        zero_marked_as_int: the ignore flag is TrackEval's ``int(conf) == 0`` (else ``conf == 0``).
        class_column: ground truth must carry MOT16/17/20's class column; only class 1 is scored.
        distractor_classes: classes whose matched predictions are removed (the loader marks their rows
            ``DISTRACTOR``; pairing then runs TrackEval's match against them in every frame).
        ignore_rule: how ignore regions remove predictions: "protocol" (the protocol's fields),
            "posetrack21" or "posetrack18" (see the module docstring).
        scored_frames: "rows" (frames holding a row, or seqinfo.ini's length), "labeled" or
            "annotated" (labelled frames with at least one person).
        clear_engine: who computes MOTA, MOTP, IDSW, FP, FN, Frag, MT/PT/ML and IDF1: "trackeval"
            (TrackEval's rules, the official evaluator of the benchmarks) or "motmetrics".
        protocol: the protocol name the preset implies (``phalp``), or None (any protocol).
    """

    name: str
    summary: str
    reason: str = ""
    zero_marked_as_int: bool = False
    class_column: bool = False
    distractor_classes: frozenset[int] = frozenset()
    ignore_rule: IgnoreRule = "protocol"
    scored_frames: Literal["rows", "labeled", "annotated"] = "rows"
    clear_engine: ClearEngine = "trackeval"
    protocol: str | None = None

    @property
    def is_mot(self) -> bool:
        return self.name in MOT_PRESETS

    @property
    def engines(self) -> dict[str, str]:
        """Which code computed which column group (footer and ``metrics.json``)."""
        return {HOTA_COLUMNS_LABEL: HOTA_ENGINE_LABEL, CLEAR_COLUMNS_LABEL: ENGINE_LABELS[self.clear_engine]}

    def describe(self) -> str:
        """One line for the table footer: name, why it was chosen, what it drops."""
        return f"benchmark: {self.name} ({self.reason}) — {self.summary}"

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "reason": self.reason, "summary": self.summary, "clear_engine": self.clear_engine,
                "engines": self.engines}


PRESETS: dict[str, Benchmark] = {
    "plain": Benchmark("plain", "ground-truth rows with conf 0 dropped; no class filter, no distractor removal",
                       clear_engine="motmetrics"),
    "mot15": Benchmark("mot15", "TrackEval MOT15: ground-truth rows with int(conf) 0 dropped; no class filter",
                       zero_marked_as_int=True),
    "mot16": Benchmark("mot16", "TrackEval MOT16: predictions matched to distractors (classes 2, 7, 8, 12) removed; "
                                "only pedestrians (class 1) not zero-marked (int(conf) != 0) scored",
                       zero_marked_as_int=True, class_column=True, distractor_classes=_MOT17_DISTRACTORS),
    "mot17": Benchmark("mot17", "TrackEval MOT17: predictions matched to distractors (classes 2, 7, 8, 12) removed; "
                                "only pedestrians (class 1) not zero-marked (int(conf) != 0) scored",
                       zero_marked_as_int=True, class_column=True, distractor_classes=_MOT17_DISTRACTORS),
    "mot20": Benchmark("mot20", "TrackEval MOT20: predictions matched to distractors (classes 2, 6, 7, 8, 12) removed; "
                                "only pedestrians (class 1) not zero-marked (int(conf) != 0) scored",
                       zero_marked_as_int=True, class_column=True, distractor_classes=_MOT17_DISTRACTORS | {6}),
    "posetrack18_boxes": Benchmark(
        "posetrack18_boxes", "box metrics on PoseTrack18 with poseval's data rules (not poseval's keypoint MOTA): frames "
                             "with an annotated person scored; people with no annotated joint outside the ignore regions "
                             "removed (ground truth and predictions)",
        ignore_rule="posetrack18", scored_frames="annotated", clear_engine="motmetrics"),
    "posetrack21_boxes": Benchmark(
        "posetrack21_boxes", "PoseTrack21's box tracking (MOT) evaluation: labelled frames scored; unmatched predictions "
                             "overlapping an ignore region (IoU > 0.1) removed",
        ignore_rule="posetrack21", scored_frames="labeled"),
    "phalp": Benchmark("phalp", "PHALP's evaluate_PHALP.py: ground-truth rows as given (conf 0 dropped), motmetrics "
                                "CLEAR/Identity, protocol phalp (IoU >= 0.01, HOTA averaged per video)",
                       clear_engine="motmetrics", protocol="phalp"),
}


def get_benchmark(name: str, reason: str = "set by benchmark=") -> Benchmark:
    """The preset called ``name``."""
    if name in DEPRECATED_NAMES:
        new_name = DEPRECATED_NAMES[name]
        warnings.warn(f"benchmark={name} is deprecated: it computes box metrics, now named benchmark={new_name}",
                      DeprecationWarning, stacklevel=2)
        log.warning("benchmark=%s is deprecated and means benchmark=%s (box HOTA/MOTA/IDF1 with the benchmark's "
                    "ignore rules, not the keypoint metrics); use the new name", name, new_name)
        reason = f"set by benchmark={name}, deprecated name of {new_name}" if reason == "set by benchmark=" else reason
        name = new_name
    if name not in PRESETS:
        raise UserError(f"benchmark={name!r} is not a preset", f"use one of auto, {', '.join(BENCHMARKS)}")
    return replace(PRESETS[name], reason=reason if reason != "set by benchmark=" else f"set by benchmark={name}")


def _sequence_folder(path: Path) -> Path | None:
    """``<seq>`` for a MOTChallenge ``<seq>/gt/gt.txt``."""
    return path.parent.parent if path.name == "gt.txt" and path.parent.name == "gt" else None


def _mot_name_benchmark(names: Sequence[str]) -> str | None:
    """mot16 / mot17 / mot20 when every sequence is named ``MOT16-..`` / ``MOT17-..`` / ``MOT20-..``."""
    found = {name.split("-", 1)[0].upper() for name in names}
    if len(found) == 1 and next(iter(found)) in ("MOT16", "MOT17", "MOT20"):
        return next(iter(found)).lower()
    return None


def resolve_benchmark(name: str, gt_files: Sequence[Path], format: str,
                      mot_classes: dict[Path, np.ndarray | None] | None = None) -> Benchmark:
    """The preset to use: ``name`` itself, or with ``auto`` the one the ground-truth files imply.

    ``auto`` decides:

    - PoseTrack JSON: ``posetrack21`` when annotations carry ``person_id`` (PoseTrack21 adds it),
      else ``posetrack18``.
    - MOT text in PoseTrack21's MOT layout (``<seq>/image_info.json`` next to ``<seq>/gt/gt.txt``):
      ``posetrack21``.
    - MOT text: ``mot16`` / ``mot17`` / ``mot20`` when every sequence is named ``MOT16-*`` /
      ``MOT17-*`` / ``MOT20-*``. Other ground truth with a MOTChallenge class column: ``mot17`` when
      no row has class 6 (MOT16, MOT17 and MOT20 then give the same numbers), else an error asking
      for ``benchmark=``. Without a class column: ``plain``.
    - PHALP pickles: ``plain``.

    Args:
        name: "auto" or a preset name.
        gt_files: the ground-truth files.
        format: the ground truth's format.
        mot_classes: for MOT text, each file's class column (None when it has none).
    """
    if name != "auto":
        return get_benchmark(name)
    if format == "posetrack":
        import json

        for path in gt_files:
            try:
                data = json.loads(path.read_text())
            except (ValueError, UnicodeDecodeError):
                continue  # the reader names the broken file
            annotations = data.get("annotations", []) if isinstance(data, dict) else []
            if any(isinstance(item, dict) and "person_id" in item for item in annotations):
                return get_benchmark("posetrack21_boxes", f"auto: {path.name} has PoseTrack21's person_id")
        return get_benchmark("posetrack18_boxes", "auto: PoseTrack JSON without person_id")
    if format == "mot":
        with_info = [path for path in gt_files if image_info_path(path) is not None]
        if with_info and len(with_info) == len(gt_files):
            return get_benchmark("posetrack21_boxes", "auto: <seq>/image_info.json next to gt/ (PoseTrack21's MOT layout)")
        names = [folder.name if (folder := _sequence_folder(path)) else path.stem for path in gt_files]
        by_name = _mot_name_benchmark(names)
        if by_name:
            return get_benchmark(by_name, f"auto: sequences named {by_name.upper()}-*")
        classes = {path: values for path, values in (mot_classes or {}).items()
                   if values is not None and values.size and np.isin(values, list(MOT_CLASSES.values())).all()}
        if classes:
            with_six = [path for path, values in classes.items() if (values == MOT_CLASSES["non_mot_vehicle"]).any()]
            if with_six:
                raise UserError(
                    f"{with_six[0]}: MOTChallenge ground truth with class 6 (non_mot_vehicle), and the sequence names "
                    "do not say whether it is MOT16/17 (class 6 scored as unscored) or MOT20 (class 6 a distractor)",
                    "set benchmark=mot17 or benchmark=mot20 (or benchmark=plain to score every row)")
            return get_benchmark("mot17", "auto: MOTChallenge class column, no class 6, so MOT16/17/20 rules agree")
        return get_benchmark("plain", "auto: MOT text without a class column")
    return get_benchmark("plain", f"auto: format={format}")


def image_info_path(gt_file: Path) -> Path | None:
    """PoseTrack21's ``<seq>/image_info.json`` next to ``<seq>/gt/gt.txt``, if there is one."""
    folder = _sequence_folder(gt_file)
    return folder / "image_info.json" if folder is not None and (folder / "image_info.json").is_file() else None


def sequence_length(gt_file: Path) -> int | None:
    """``seqLength`` from the MOTChallenge ``seqinfo.ini`` next to ``<seq>/gt/gt.txt``, if there is one."""
    folder = _sequence_folder(gt_file)
    if folder is None or not (folder / "seqinfo.ini").is_file():
        return None
    parser = configparser.ConfigParser()
    try:
        parser.read(folder / "seqinfo.ini")
        return int(parser["Sequence"]["seqLength"])
    except (KeyError, ValueError, configparser.Error) as error:
        raise UserError(f"{folder / 'seqinfo.ini'}: no integer [Sequence] seqLength ({error})",
                        "fix the file or remove it (frames are then taken from the rows)") from None


def mot_gt_kinds(classes: np.ndarray | None, confidences: np.ndarray, benchmark: Benchmark, path: Path) -> np.ndarray | None:
    """Role of each MOT ground-truth row under ``benchmark`` (see ``SCORED``), or a keep mask.

    Returns:
        (N,) int8 kinds for presets with a class column, else None (the caller drops ignored rows).
    """
    if not benchmark.class_column:
        return None
    if classes is None or (classes == -1).all():
        raise UserError(f"{path}: ground truth has no class column (8th), which benchmark={benchmark.name} needs",
                        "use MOT16/17/20 ground truth (frame,id,x,y,w,h,conf,class,visibility), or benchmark=plain / mot15")
    class_ids = classes.astype(np.int64)
    invalid = ~np.isin(class_ids, list(MOT_CLASSES.values()))
    if invalid.any():
        raise UserError(f"{path}: class {int(class_ids[np.argmax(invalid)])} is not a MOTChallenge class (1..13)",
                        "fix the ground truth, or use benchmark=plain")
    scored = (confidences.astype(np.int64) != 0) & (class_ids == MOT_CLASSES["pedestrian"])
    kinds = np.full(class_ids.shape[0], UNSCORED, dtype=np.int8)
    kinds[np.isin(class_ids, list(benchmark.distractor_classes))] = DISTRACTOR
    kinds[scored] = SCORED
    return kinds
