"""Turn result / ground-truth files into :class:`TrackSequence` s, through the readers in ``datamodules.formats``.

Every loader keys frames by their 0-based position in the video, so formats can be mixed (e.g.
predict's MOT text against PoseTrack ground truth). Layouts understood (``paths`` may mix files and
folders):

- ``mot``: a ``.txt`` file per sequence, named ``<sequence>.txt`` (results) or
  ``<sequence>/gt/gt.txt`` (MOTChallenge ground truth). A ground-truth folder in the MOTChallenge
  layout gives only its ``gt/gt.txt`` files. Which ground-truth rows are scored is the benchmark
  preset's choice (``evaluation.benchmarks``; plain: rows whose ``conf`` ignore flag is 0 are dropped).
- ``posetrack``: one PoseTrack18/21 JSON per video, sequence name = file stem. Frames are keyed by
  their position in the video (images sorted by ``frame_id``), so a prediction file must list the
  video's images like the ground truth does (the official submission format). Ground truth scores
  only ``is_labeled`` frames and carries the ignore regions.
- ``phalp_pkl``: as predictions PHALP results pickles (``demo_<video>.pkl`` -> sequence ``<video>``):
  the entries detected in their frame; as ground truth PHALP given-boxes pickles (``<video>.pkl``
  with ``gt_bbox`` / ``extra_data.gt_track_id`` per frame).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from phalp_lightning.errors import UserError
from phalp_lightning.evaluation.benchmarks import (
    Benchmark,
    image_info_path,
    mot_gt_kinds,
    resolve_benchmark,
    sequence_length,
)
from phalp_lightning.evaluation.sequences import TrackSequence

if TYPE_CHECKING:
    from phalp_lightning.datamodules.formats.mot import MOTSequence

Role = Literal["gt", "pred"]
FORMATS = ("mot", "posetrack", "phalp_pkl")
_SUFFIXES = {"mot": (".txt",), "posetrack": (".json",), "phalp_pkl": (".pkl", ".pickle")}

log = logging.getLogger(__name__)


class EvaluationInputError(UserError, ValueError):
    """Result or ground-truth files that cannot be evaluated as given (names the file)."""


class EvaluationFileNotFoundError(UserError, FileNotFoundError):
    """A result or ground-truth path does not exist or holds no file of the format."""


def _is_mot_ground_truth(path: Path) -> bool:
    return path.name == "gt.txt" and path.parent.name == "gt"


def _expand(paths: Iterable[str | os.PathLike[str]], format: str, role: Role = "pred") -> list[tuple[Path, bool]]:
    """Files named by ``paths`` as (file, found_in_a_folder): files as given, folders searched.

    A MOT ground-truth folder in the MOTChallenge layout (``<seq>/gt/gt.txt``) gives only those
    files: ``det/det.txt``, READMEs and other stray files are not sequences. Other folders give every
    file with the format's suffix.
    """
    files: list[tuple[Path, bool]] = []
    for entry in paths:
        path = Path(entry).expanduser()
        if path.is_file():
            files.append((path, False))
        elif path.is_dir():
            found = sorted(file for file in path.rglob("*") if file.is_file() and file.suffix in _SUFFIXES[format])
            if format == "mot":
                layout = [file for file in found if _is_mot_ground_truth(file)]
                if role == "gt" and layout:
                    skipped = len(found) - len(layout)
                    if skipped:
                        log.info("%s: MOTChallenge layout, reading the %d <seq>/gt/gt.txt files (%d other .txt files are not "
                                 "ground truth)", path, len(layout), skipped)
                    found = layout
                else:
                    # MOTChallenge folders hold det/det.txt next to gt/gt.txt: detections are not sequences.
                    found = [file for file in found if file.parent.name != "det"]
            if not found:
                raise EvaluationFileNotFoundError(f"{path}: no {'/'.join(_SUFFIXES[format])} files for format={format}",
                                                  "point to the folder of the files, or set format=")
            files.extend((file, True) for file in found)
        else:
            raise EvaluationFileNotFoundError(f"{path}: no such file or folder", "check the path")
    return files


def _mot_name(path: Path) -> str:
    if _is_mot_ground_truth(path):
        return path.parent.parent.name
    return path.stem


def _line_of(path: Path, frame: int, track_id: int, occurrence: int = 2) -> int | None:
    """Line number of the ``occurrence``-th row of ``frame`` with ``track_id`` (for error messages only)."""
    seen = 0
    with path.open(errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            fields = [item for item in line.strip().replace(" ", ",").split(",") if item]
            try:
                if len(fields) >= 2 and float(fields[0]) == frame and float(fields[1]) == track_id:
                    seen += 1
                    if seen == occurrence:
                        return number
            except ValueError:
                continue
    return None


def _check_unique_ids(path: Path, frames: np.ndarray, track_ids: np.ndarray) -> None:
    """Raise naming ``file:line`` when a track id repeats within a frame (rows sorted by frame, id)."""
    if frames.shape[0] < 2:
        return
    repeated = np.flatnonzero((frames[1:] == frames[:-1]) & (track_ids[1:] == track_ids[:-1]))
    if repeated.size:
        frame, track = int(frames[repeated[0]]), int(track_ids[repeated[0]])
        line = _line_of(path, frame, track)
        where = f"{path}:{line}" if line else str(path)
        raise EvaluationInputError(f"{where}: track id {track} appears twice in frame {frame}",
                                   "each id may appear once per frame; fix the file")


def load_mot(path: Path, role: Role, benchmark: Benchmark | None = None, table: MOTSequence | None = None) -> TrackSequence:
    """One MOTChallenge text file; its 1-based frame numbers become 0-based frame indices.

    Ground truth is preprocessed as ``benchmark`` says (default plain: rows with ``conf == 0`` dropped).
    """
    from phalp_lightning.datamodules.formats.mot import read_mot

    sequence = table if table is not None else read_mot(path)
    _check_unique_ids(path, sequence.frames, sequence.track_ids)
    name = _mot_name(path)
    if role == "pred":
        if benchmark is not None and benchmark.is_mot and sequence.extra.shape[1] >= 1 and (sequence.extra[:, 0] > 1).any():
            row = int(np.argmax(sequence.extra[:, 0] > 1))
            raise EvaluationInputError(
                f"{path}: class {sequence.extra[row, 0]:g} in column 8 (frame {sequence.frames[row]}); MOTChallenge "
                "evaluates pedestrians only", "write -1 or 1 in column 8 of the results")
        return TrackSequence(name, sequence.frames - 1, sequence.track_ids, sequence.boxes_xywh)
    if benchmark is not None and benchmark.name == "posetrack21_boxes":
        return _posetrack21_mot_ground_truth(path, name, sequence)
    evaluated = None
    if benchmark is not None and benchmark.is_mot:
        length = sequence_length(path)
        if length is not None:
            if sequence.frames.size and int(sequence.frames.max()) > length:
                raise EvaluationInputError(f"{path}: frame {int(sequence.frames.max())} is past seqinfo.ini's seqLength {length}",
                                           "fix the ground truth or seqinfo.ini")
            evaluated = np.arange(length)
    classes = sequence.extra[:, 0] if sequence.extra.shape[1] >= 1 else None
    kinds = mot_gt_kinds(classes, sequence.confidences, benchmark, path) if benchmark is not None else None
    if kinds is not None:
        return TrackSequence(name, sequence.frames - 1, sequence.track_ids, sequence.boxes_xywh,
                             evaluated_frames=evaluated, kinds=kinds)
    if benchmark is not None and benchmark.zero_marked_as_int:
        keep = sequence.confidences.astype(np.int64) != 0
    else:
        keep = sequence.confidences != 0
    return TrackSequence(name, sequence.frames[keep] - 1, sequence.track_ids[keep], sequence.boxes_xywh[keep],
                         evaluated_frames=evaluated)


def _posetrack21_mot_ground_truth(path: Path, name: str, sequence: MOTSequence) -> TrackSequence:
    """PoseTrack21's MOT layout: every image of image_info.json is scored, every gt.txt row is ground
    truth (its evaluation drops none), and image ``t``'s ignore regions apply to frame ``t + 1``."""
    from phalp_lightning.datamodules.formats.posetrack import read_image_info

    info = image_info_path(path)
    if info is None:
        raise EvaluationInputError(f"{path}: benchmark=posetrack21_boxes on MOT text needs PoseTrack21's <seq>/image_info.json",
                                   "use the PoseTrack21 MOT layout, PoseTrack JSON (format=posetrack), or another preset")
    images = read_image_info(info)
    if sequence.frames.size and int(sequence.frames.max()) > len(images):
        raise EvaluationInputError(f"{path}: frame {int(sequence.frames.max())} is past the {len(images)} images of {info}",
                                   "fix the ground truth or image_info.json")
    regions = {index: image["ignore_regions"] for index, image in enumerate(images) if image["ignore_regions"]}
    return TrackSequence(name, sequence.frames - 1, sequence.track_ids, sequence.boxes_xywh,
                         evaluated_frames=np.arange(len(images)), ignore_regions=regions)


def load_posetrack(path: Path, role: Role, benchmark: Benchmark | None = None) -> TrackSequence:
    """One PoseTrack JSON file; ground truth keeps the benchmark's scored frames and the ignore regions."""
    from phalp_lightning.datamodules.formats.posetrack import read_posetrack

    video = read_posetrack(path)
    frames, ids, boxes, keypoints = [], [], [], []
    for frame in video.frames:
        track_ids = [person.track_id for person in frame.people]
        if len(set(track_ids)) != len(track_ids):
            repeated = next(track for track in track_ids if track_ids.count(track) > 1)
            raise EvaluationInputError(f"{path}: track id {repeated} appears twice in image {frame.image_id} "
                                       f"({frame.file_name})", "each track id may appear once per image; fix the file")
        for person in frame.people:
            frames.append(frame.frame_index)
            ids.append(person.track_id)
            boxes.append(person.box_xywh)
            keypoints.append(person.keypoints)
    frames_array = np.asarray(frames, dtype=np.int64)
    ids_array = np.asarray(ids, dtype=np.int64)
    boxes_array = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    keypoints_array = np.asarray(keypoints, dtype=np.float64).reshape(-1, 17, 3)
    if role == "pred":
        return TrackSequence(path.stem, frames_array, ids_array, boxes_array, keypoints=keypoints_array)
    labeled = {frame.frame_index for frame in video.frames if frame.is_labeled}
    keep_person = np.ones(frames_array.shape[0], dtype=bool)
    if benchmark is not None and benchmark.scored_frames == "annotated":
        from phalp_lightning.evaluation.sequences import posetrack18_annotated

        # poseval scores the frames holding an annotated person, and no person without an annotated joint.
        labeled &= set(frames_array.tolist())
        keep_person = posetrack18_annotated(keypoints_array).any(axis=1)
    keep = np.isin(frames_array, list(labeled)) & keep_person
    return TrackSequence(
        path.stem, frames_array[keep], ids_array[keep], boxes_array[keep],
        evaluated_frames=np.asarray(sorted(labeled), dtype=np.int64),
        ignore_regions={frame.frame_index: list(frame.ignore_regions) for frame in video.frames
                        if frame.frame_index in labeled and frame.ignore_regions},
        keypoints=keypoints_array[keep],
    )


def _phalp_name(path: Path, prefix: str = "demo_") -> str:
    # PHALP (and predict.py) name results "demo_<video>.pkl"; the sequence is "<video>".
    return path.stem[len(prefix):] if path.stem.startswith(prefix) and len(path.stem) > len(prefix) else path.stem


def load_phalp_pkl(path: Path, role: Role) -> TrackSequence:
    """A PHALP results pickle (pred) or a PHALP given-boxes pickle (gt).

    Predictions: the entries detected in their frame (``tracked_time == 0``, PHALP's
    ``tracked_ids``), at frame index ``time`` (the file's order when ``time`` is absent); a track
    listed twice in one frame (back-fill) counts once. Ground truth: ``gt_bbox`` / ``gt_track_id``
    per frame, frames in sorted-name order as PHALP reads them; boxes without a track id (-1) are
    dropped, every listed frame is scored.
    """
    from phalp_lightning.datamodules.formats.phalp_results import read_given_boxes, read_phalp_results

    if role == "gt":
        given = read_given_boxes(path)
        frames = [np.full(len(entry.track_ids), index) for index, entry in enumerate(given.values())]
        ids = [entry.track_ids for entry in given.values()]
        boxes = [entry.boxes_xywh for entry in given.values()]
        frames_all = np.concatenate(frames) if frames else np.zeros(0, dtype=np.int64)
        ids_all = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
        boxes_all = np.concatenate(boxes) if boxes else np.zeros((0, 4))
        known = ids_all >= 0
        return TrackSequence(_phalp_name(path), frames_all[known], ids_all[known], boxes_all[known],
                             evaluated_frames=np.arange(len(given)))
    results = read_phalp_results(path)
    frames, ids, boxes = [], [], []
    for position, frame in enumerate(results.frames):
        detected = np.flatnonzero(frame.detected)
        _, first = np.unique(frame.track_ids[detected], return_index=True)
        keep = detected[np.sort(first)]
        frames.append(np.full(keep.shape[0], frame.time if frame.time >= 0 else position))
        ids.append(frame.track_ids[keep])
        boxes.append(frame.boxes_xywh[keep])
    if not frames:
        return TrackSequence(_phalp_name(path), np.zeros(0), np.zeros(0), np.zeros((0, 4)))
    return TrackSequence(_phalp_name(path), np.concatenate(frames), np.concatenate(ids), np.concatenate(boxes))


def _as_list(value: object) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _read_files(files: list[tuple[Path, bool]], format: str, role: Role, benchmark: Benchmark | None,
                tables: dict[Path, Any] | None = None) -> dict[str, TrackSequence]:
    sequences: dict[str, TrackSequence] = {}
    origin: dict[str, Path] = {}
    for file, _ in files:
        if tables is not None and file not in tables:
            continue  # skipped while reading (see _read_mot_tables)
        if format == "mot":
            loaded = load_mot(file, role, benchmark, table=None if tables is None else tables[file])
        elif format == "posetrack":
            loaded = load_posetrack(file, role, benchmark)
        else:
            loaded = load_phalp_pkl(file, role)
        for sequence in _as_list(loaded):
            if sequence.name in sequences:
                raise EvaluationInputError(
                    f"sequence {sequence.name!r} is given twice: {origin[sequence.name]} and {file}",
                    "sequences are paired by name; keep one file per sequence (or pass the files explicitly)")
            sequences[sequence.name] = sequence
            origin[sequence.name] = file
    return sequences


def _read_mot_tables(files: list[tuple[Path, bool]], role: Role = "pred",
                     sequence_names: Iterable[str] = ()) -> dict[Path, Any]:
    """Read MOT files once. A file that does not parse is an error naming its line, except a stray file.

    Stray (skipped with a warning that names it): found by searching a folder, its first line is not
    a MOT row (a README, a seqmap), it is not ground truth in the MOTChallenge layout, and (results)
    its name is not a ground-truth sequence. A MOT file broken further down is always an error:
    skipping it would score its sequence as all misses.
    """
    from phalp_lightning.datamodules.formats.mot import MOTFormatError, read_mot

    expected = set(sequence_names)
    tables = {}
    for file, from_folder in files:
        try:
            tables[file] = read_mot(file)
        except MOTFormatError as error:
            if not from_folder or error.starts_as_mot or _is_mot_ground_truth(file) or role == "pred" and _mot_name(file) in expected:
                raise
            if role == "gt" and not _looks_stray(file):
                raise EvaluationInputError(
                    error.what, "in a ground-truth folder outside the MOTChallenge layout every .txt is a sequence: fix "
                    "the file or move it out (README*, seqmap* files are skipped)") from None
            log.warning("skipped %s: found in the folder, not MOT text and not named after a sequence (%s)", file, error.what)
    if files and not tables:
        raise EvaluationFileNotFoundError(f"no MOT text among {len(files)} .txt files ({files[0][0]}, ...)",
                                          "point to the folder of the MOT files (see the warnings above)")
    return tables


# Names of the text files that sit next to MOTChallenge data without being sequences.
_STRAY_STEMS = ("readme", "seqmap", "license", "notes", "changelog", "info")


def _looks_stray(path: Path) -> bool:
    """A ground-truth .txt that is a known companion file (README, seqmap, ...), never a sequence."""
    stem = path.stem.lower()
    return any(stem.startswith(prefix) or stem.endswith(prefix) for prefix in _STRAY_STEMS) or path.parent.name == "seqmaps"


def load_sequences(paths: Iterable[str | os.PathLike[str]], format: str, role: Role,
                   benchmark: Benchmark | None = None, sequence_names: Iterable[str] = ()) -> dict[str, TrackSequence]:
    """Read every sequence named by ``paths`` (files or folders).

    Args:
        paths: files and/or folders. A MOT ground-truth folder in the MOTChallenge layout gives its
            ``<seq>/gt/gt.txt`` files only; a .txt file found in a folder that is not MOT text is
            skipped with a warning (given explicitly, it is an error).
        format: "mot" | "posetrack" | "phalp_pkl".
        role: "gt" (ground truth: ignore flags, scored frames, ignore regions) or "pred".
        benchmark: the preprocessing preset (``evaluation.benchmarks``); None = plain.
        sequence_names: the ground-truth sequences (results): a results file named after one of
            them is never skipped as stray, it must parse.

    Returns:
        sequence name -> sequence.

    Raises:
        EvaluationInputError (a ValueError): unknown format, two files giving the same sequence name,
            a repeated id in a frame (names file and line).
        EvaluationFileNotFoundError (a FileNotFoundError): a path does not exist or a folder holds no file of the format.
    """
    if format not in FORMATS:
        raise EvaluationInputError(f"format={format!r} is not one of {FORMATS}", "set format= (and gt_format=) to one of them")
    if role not in ("gt", "pred"):
        raise ValueError(f"role must be 'gt' or 'pred', got {role!r}")
    files = _expand(paths, format, role)
    tables = _read_mot_tables(files, role, sequence_names) if format == "mot" else None
    return _read_files(files, format, role, benchmark, tables)


def load_ground_truth(paths: Iterable[str | os.PathLike[str]], format: str, benchmark: str = "auto"
                      ) -> tuple[dict[str, TrackSequence], Benchmark]:
    """Read ground truth and choose its benchmark preset (``auto``: from the files; see ``resolve_benchmark``).

    Returns:
        (sequence name -> sequence, the preset applied).
    """
    if format not in FORMATS:
        raise EvaluationInputError(f"format={format!r} is not one of {FORMATS}", "set format= (and gt_format=) to one of them")
    files = _expand(paths, format, "gt")
    tables = _read_mot_tables(files, "gt") if format == "mot" else None
    classes = {file: (table.extra[:, 0] if table.extra.shape[1] in (1, 2) else None) for file, table in tables.items()} \
        if tables is not None else None
    chosen = resolve_benchmark(benchmark, [file for file, _ in files if tables is None or file in tables], format, classes)
    if format == "mot" and chosen.name == "posetrack18_boxes" or format == "posetrack" and chosen.is_mot:
        raise EvaluationInputError(f"benchmark={chosen.name} does not apply to format={format} ground truth",
                                   "use benchmark=auto or a preset of that format")
    return _read_files(files, format, "gt", chosen, tables), chosen
