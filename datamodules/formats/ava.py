"""AVA v2.2 CSV files (no header).

Ground truth rows: ``video_id, middle_frame_timestamp, x1, y1, x2, y2, action_id, person_id`` with the
box normalised to [0, 1] (top-left origin) and one row per (person, action). Prediction rows replace
``person_id`` by ``score``. Two-column rows ``video_id, timestamp`` mark a keyframe without boxes.
Excluded-timestamp files have rows ``video_id, second``. The frame key is ``"%s,%04d" % (video, ts)``.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from phalp_lightning.errors import UserError
from phalp_lightning.utils.boxes import box_iou

NUM_AVA_ACTIONS = 80


class AVAFormatError(UserError, ValueError):
    """A malformed AVA file; the message names the file and the line."""


@dataclass
class AVAPerson:
    """One person at one keyframe with all of their actions."""

    video_id: str
    timestamp: int
    box_xyxy: np.ndarray  # (4,) normalised
    actions: list[int]
    person_id: int | None = None
    scores: list[float] | None = None

    def multi_hot(self, num_actions: int = NUM_AVA_ACTIONS) -> np.ndarray:
        """(num_actions,) uint8 with a 1 at ``action_id - 1`` for each action."""
        vector = np.zeros(num_actions, np.uint8)
        vector[np.asarray(self.actions, np.int64) - 1] = 1
        return vector


@dataclass
class AVAAnnotations:
    """All rows of an AVA CSV, grouped per person and keyframe.

    Attributes:
        people: one entry per (video, timestamp, person) (per (video, timestamp, box) for predictions).
        empty_keyframes: keyframes listed without boxes.
    """

    path: Path | None
    people: list[AVAPerson]
    empty_keyframes: set[tuple[str, int]] = field(default_factory=set)

    @property
    def keyframes(self) -> list[tuple[str, int]]:
        """Sorted (video, timestamp) pairs that have people or were listed empty."""
        return sorted({(p.video_id, p.timestamp) for p in self.people} | self.empty_keyframes)

    def video(self, video_id: str) -> list[AVAPerson]:
        """The people of one video ordered by timestamp, then person id."""
        return sorted((p for p in self.people if p.video_id == video_id), key=lambda p: (p.timestamp, p.person_id or 0))

    def tracks(self, video_id: str) -> dict[int, list[AVAPerson]]:
        """person_id -> that person's keyframes in time order (person ids link 1 Hz keyframes)."""
        result: dict[int, list[AVAPerson]] = {}
        for person in self.video(video_id):
            if person.person_id is not None:
                result.setdefault(person.person_id, []).append(person)
        return result


def frame_key(video_id: str, timestamp: int) -> str:
    """AVA's keyframe key ``"video,0902"``."""
    return f"{video_id},{timestamp:04d}"


def read_ava_csv(path: str | os.PathLike[str], predictions: bool = False, excluded: set[tuple[str, int]] | None = None) -> AVAAnnotations:
    """Read an AVA v2.2 ground-truth CSV, or a predictions CSV with ``predictions=True``.

    Args:
        excluded: (video, timestamp) pairs to drop (see :func:`read_ava_excluded`).

    Raises:
        AVAFormatError: bad column count, non-numeric field, a box outside [0, 1] or with x2 <= x1,
            or an action id outside 1..80 (the message gives ``file:line``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"AVA CSV not found: {path}")
    excluded = excluded or set()
    grouped: dict[tuple, AVAPerson] = {}
    empty: set[tuple[str, int]] = set()
    with path.open(newline="") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or all(not cell.strip() for cell in row):
                continue
            where = f"{path}:{number}"
            if len(row) not in (2, 7, 8):
                raise AVAFormatError(f"{where}: expected 2, 7 or 8 columns, got {len(row)}: {row}")
            video_id = row[0].strip()
            try:
                timestamp = int(row[1])
                if len(row) > 2:
                    box = np.asarray([float(value) for value in row[2:6]])
                    action = int(row[6])
                    last = row[7].strip() if len(row) == 8 else None
                    extra = (float(last) if predictions else int(float(last))) if last not in (None, "") else None
            except ValueError:
                raise AVAFormatError(f"{where}: non-numeric field in {row}") from None
            if (video_id, timestamp) in excluded:
                continue
            if len(row) == 2:
                empty.add((video_id, timestamp))
                continue
            if not np.isfinite(box).all() or (box < -1e-6).any() or (box > 1 + 1e-6).any() or box[2] <= box[0] or box[3] <= box[1]:
                raise AVAFormatError(f"{where}: box must be normalised x1 < x2, y1 < y2 in [0, 1], got {box.tolist()}")
            if not 1 <= action <= NUM_AVA_ACTIONS:
                raise AVAFormatError(f"{where}: action id must be in 1..{NUM_AVA_ACTIONS}, got {action}")
            person_id = None if predictions else extra
            group = (video_id, timestamp, person_id) if person_id is not None else (video_id, timestamp, tuple(np.round(box, 3)))
            person = grouped.get(group)
            if person is None:
                person = grouped[group] = AVAPerson(video_id, timestamp, box, [], person_id, [] if predictions else None)
            person.actions.append(action)
            if predictions:
                person.scores.append(float(extra) if extra is not None else 1.0)
    return AVAAnnotations(path, list(grouped.values()), empty)


def read_ava_excluded(path: str | os.PathLike[str]) -> set[tuple[str, int]]:
    """``ava_*_excluded_timestamps_v2.2.csv`` -> {(video, second)}."""
    path = Path(path)
    result = set()
    with path.open(newline="") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row:
                continue
            if len(row) != 2:
                raise AVAFormatError(f"{path}:{number}: expected 2 columns (video_id, second), got {len(row)}")
            try:
                result.add((row[0].strip(), int(row[1])))
            except ValueError:
                raise AVAFormatError(f"{path}:{number}: second must be an integer, got {row[1]!r}") from None
    return result


def read_action_list(path: str | os.PathLike[str]) -> dict[int, str]:
    """An AVA label map ``.pbtxt`` (``item { name: "bend/bow (at the waist)" id: 1 }``) -> {id: name}."""
    text = Path(path).read_text()
    items = re.findall(r"item\s*\{(.*?)\}", text, flags=re.S)
    result = {}
    for item in items:
        name = re.search(r'name:\s*"([^"]*)"', item)
        ident = re.search(r"(?:label_)?id:\s*(\d+)", item)
        if name and ident:
            result[int(ident.group(1))] = name.group(1)
    if not result:
        raise AVAFormatError(f"{path}: no 'item {{ name: ... id: ... }}' entries found")
    return result


@dataclass(frozen=True)
class AVAClassMapping:
    """AVA's evaluated classes: which of the 80 action ids are scored, in order, with their names.

    AVA v2.2 is evaluated on 60 of its 80 action ids (the label map of the evaluated classes lists
    them with their original ids); column i of a 60-class vector is action id ``ids[i]``.
    """

    ids: tuple[int, ...]
    names: tuple[str, ...]

    @classmethod
    def from_label_map(cls, path: str | os.PathLike[str]) -> AVAClassMapping:
        """From a label-map ``.pbtxt`` of the evaluated classes (``item { name: "..." id: 1 }``), ids ascending."""
        labels = read_action_list(path)
        bad = sorted(ident for ident in labels if not 1 <= ident <= NUM_AVA_ACTIONS)
        if bad:
            raise AVAFormatError(f"{path}: action ids must be in 1..{NUM_AVA_ACTIONS}, got {bad[:5]}")
        ids = tuple(sorted(labels))
        return cls(ids, tuple(labels[ident] for ident in ids))

    @property
    def columns(self) -> np.ndarray:
        """0-based columns of the evaluated classes in an 80-wide multi-hot vector."""
        return np.asarray(self.ids, np.int64) - 1

    def map_multi_hot(self, labels: np.ndarray) -> np.ndarray:
        """(..., 80) multi-hot over all AVA ids -> (..., len(ids)) over the evaluated classes."""
        if labels.shape[-1] != NUM_AVA_ACTIONS:
            raise ValueError(f"expected (..., {NUM_AVA_ACTIONS}) AVA labels, got {labels.shape}")
        return labels[..., self.columns]


def average_precision(scores: np.ndarray, true_positive: np.ndarray, num_ground_truth: int) -> float:
    """PASCAL VOC (2010+) AP: area under the precision-recall curve made monotone (as AVA's evaluator)."""
    if num_ground_truth == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    hits = true_positive[order].astype(np.float64)
    true_cumulative = np.cumsum(hits)
    precision = true_cumulative / np.arange(1, len(hits) + 1)
    recall = true_cumulative / num_ground_truth
    precision = np.concatenate([[0.0], precision, [0.0]])
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    changed = np.nonzero(recall[1:] != recall[:-1])[0] + 1
    return float(np.sum((recall[changed] - recall[changed - 1]) * precision[changed]))


def frame_level_ap(
    ground_truth: AVAAnnotations, predictions: AVAAnnotations, mapping: AVAClassMapping, iou_threshold: float = 0.5
) -> dict[str, float]:
    """AVA's frame-level metric: per evaluated class, AP of the scored person boxes at the keyframes.

    Per class, every predicted (keyframe, box, score) is a true positive when its IoU with a
    not-yet-matched ground-truth box of that class at the same keyframe is >= ``iou_threshold``
    (boxes matched greedily in score order, as PASCAL VOC does); AP as :func:`average_precision`.
    Predictions at keyframes absent from ``ground_truth`` are dropped, as are action ids outside the
    mapping. Classes without a ground-truth box give NaN and are left out of ``"mAP"``.

    Returns:
        {class name: AP} for every class of ``mapping``, plus ``"mAP"``.
    """
    keyframes = set(ground_truth.keyframes)
    result: dict[str, float] = {}
    for ident, name in zip(mapping.ids, mapping.names, strict=True):
        truth: dict[tuple[str, int], list[np.ndarray]] = {}
        for person in ground_truth.people:
            if ident in person.actions:
                truth.setdefault((person.video_id, person.timestamp), []).append(person.box_xyxy)
        scored: dict[tuple[str, int], tuple[list[np.ndarray], list[float]]] = {}
        for person in predictions.people:
            key = (person.video_id, person.timestamp)
            if key not in keyframes:
                continue
            for action, score in zip(person.actions, person.scores or [1.0] * len(person.actions), strict=True):
                if action == ident:
                    boxes, scores = scored.setdefault(key, ([], []))
                    boxes.append(person.box_xyxy)
                    scores.append(score)
        all_scores, all_hits = [], []
        for key, (boxes, scores) in scored.items():
            scores = np.asarray(scores)
            hits = np.zeros(len(scores), bool)
            if key in truth:
                overlap = box_iou(np.stack(boxes)[np.argsort(-scores, kind="stable")], np.stack(truth[key]), min_union=1e-12)
                taken = np.zeros(overlap.shape[1], bool)
                for row in range(len(overlap)):  # greedy in score order: one ground-truth box per prediction
                    candidates = np.where(~taken & (overlap[row] >= iou_threshold), overlap[row], -1.0)
                    best = int(candidates.argmax())
                    if candidates[best] >= 0:
                        taken[best] = True
                        hits[row] = True
                scores = np.sort(scores)[::-1]
            all_scores.append(scores)
            all_hits.append(hits)
        count = sum(len(boxes) for boxes in truth.values())
        result[name] = average_precision(
            np.concatenate(all_scores) if all_scores else np.zeros(0), np.concatenate(all_hits) if all_hits else np.zeros(0, bool), count
        )
    values = np.asarray(list(result.values()))
    result["mAP"] = float(np.nanmean(values)) if (~np.isnan(values)).any() else float("nan")
    return result
