"""Turn result / ground-truth files into :class:`TrackSequence` s, through the readers in ``datamodules.formats``.

Every loader keys frames by their 0-based position in the video, so formats can be mixed (e.g.
predict's MOT text against PoseTrack ground truth). Layouts understood (``paths`` may mix files and
folders):

- ``mot``: a ``.txt`` file per sequence, named ``<sequence>.txt`` (results) or
  ``<sequence>/gt/gt.txt`` (MOTChallenge ground truth); a folder is searched for both. Ground-truth
  rows whose ``conf`` (ignore flag) is 0 are dropped.
- ``posetrack``: one PoseTrack18/21 JSON per video, sequence name = file stem. Frames are keyed by
  their position in the video (images sorted by ``frame_id``), so a prediction file must list the
  video's images like the ground truth does (the official submission format). Ground truth scores
  only ``is_labeled`` frames and carries the ignore regions.
- ``phalp_pkl``: as predictions PHALP results pickles (``demo_<video>.pkl`` -> sequence ``<video>``):
  the entries detected in their frame; as ground truth PHALP given-boxes pickles (``<video>.pkl``
  with ``gt_bbox`` / ``extra_data.gt_track_id`` per frame).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

import numpy as np

from phalp_lightning.evaluation.sequences import TrackSequence

Role = Literal["gt", "pred"]
FORMATS = ("mot", "posetrack", "phalp_pkl")
_SUFFIXES = {"mot": (".txt",), "posetrack": (".json",), "phalp_pkl": (".pkl", ".pickle")}


def _expand(paths: Iterable[str | os.PathLike[str]], format: str) -> list[Path]:
    """Files named by ``paths``: files as given, folders searched recursively for the format's suffix."""
    files: list[Path] = []
    for entry in paths:
        path = Path(entry).expanduser()
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            found = sorted(file for file in path.rglob("*") if file.is_file() and file.suffix in _SUFFIXES[format])
            if format == "mot":
                # MOTChallenge folders hold gt/gt.txt and det/det.txt per sequence: keep only the ground truth.
                found = [file for file in found if file.parent.name not in ("det",) and file.name != "seqinfo.ini"]
            if not found:
                raise FileNotFoundError(f"{path}: no {'/'.join(_SUFFIXES[format])} files for format={format}")
            files.extend(found)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return files


def _mot_name(path: Path) -> str:
    if path.name == "gt.txt" and path.parent.name == "gt":
        return path.parent.parent.name
    return path.stem


def load_mot(path: Path, role: Role) -> TrackSequence:
    """One MOTChallenge text file; its 1-based frame numbers become 0-based frame indices."""
    from phalp_lightning.datamodules.formats.mot import read_mot

    sequence = read_mot(path)
    keep = sequence.confidences != 0 if role == "gt" else np.ones(len(sequence), dtype=bool)
    return TrackSequence(_mot_name(path), sequence.frames[keep] - 1, sequence.track_ids[keep], sequence.boxes_xywh[keep])


def load_posetrack(path: Path, role: Role) -> TrackSequence:
    """One PoseTrack JSON file; ground truth keeps ``is_labeled`` frames and ignore regions."""
    from phalp_lightning.datamodules.formats.posetrack import read_posetrack

    video = read_posetrack(path)
    frames, ids, boxes = [], [], []
    for frame in video.frames:
        for person in frame.people:
            frames.append(frame.frame_index)
            ids.append(person.track_id)
            boxes.append(person.box_xywh)
    if role == "pred":
        return TrackSequence(path.stem, np.asarray(frames), np.asarray(ids), np.asarray(boxes).reshape(-1, 4))
    labeled = {frame.frame_index for frame in video.frames if frame.is_labeled}
    keep = np.asarray([index in labeled for index in frames], dtype=bool)
    return TrackSequence(
        path.stem, np.asarray(frames)[keep] if frames else np.zeros(0), np.asarray(ids)[keep] if ids else np.zeros(0),
        np.asarray(boxes).reshape(-1, 4)[keep] if boxes else np.zeros((0, 4)),
        evaluated_frames=np.asarray(sorted(labeled), dtype=np.int64),
        ignore_regions={frame.frame_index: list(frame.ignore_regions) for frame in video.frames
                        if frame.is_labeled and frame.ignore_regions},
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


_LOADERS: dict[str, Callable[[Path, Role], TrackSequence | list[TrackSequence]]] = {
    "mot": load_mot,
    "posetrack": load_posetrack,
    "phalp_pkl": load_phalp_pkl,
}


def load_sequences(paths: Iterable[str | os.PathLike[str]], format: str, role: Role) -> dict[str, TrackSequence]:
    """Read every sequence named by ``paths`` (files or folders).

    Args:
        paths: files and/or folders.
        format: "mot" | "posetrack" | "phalp_pkl".
        role: "gt" (ground truth: ignore flags, scored frames, ignore regions) or "pred".

    Returns:
        sequence name -> sequence.

    Raises:
        ValueError: unknown format, or two files giving the same sequence name.
        FileNotFoundError: a path does not exist or a folder holds no file of the format.
    """
    if format not in _LOADERS:
        raise ValueError(f"format={format!r} is not one of {FORMATS}")
    if role not in ("gt", "pred"):
        raise ValueError(f"role must be 'gt' or 'pred', got {role!r}")
    sequences: dict[str, TrackSequence] = {}
    origin: dict[str, Path] = {}
    for file in _expand(paths, format):
        for sequence in _as_list(_LOADERS[format](file, role)):
            if sequence.name in sequences:
                raise ValueError(f"sequence {sequence.name!r} is given twice: {origin[sequence.name]} and {file}")
            sequences[sequence.name] = sequence
            origin[sequence.name] = file
    return sequences
