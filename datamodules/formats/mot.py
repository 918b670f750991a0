"""MOTChallenge text files: ``frame, id, bb_left, bb_top, bb_width, bb_height, conf[, x, y, z | class, visibility]``.

Frames are 1-based, one file per sequence, boxes in pixels as (left, top, width, height). In
ground truth the ``conf`` column is an ignore flag (0 = ignore); MOT17 ground truth adds the class
and the visibility ratio, results add ``x, y, z = -1``. Extra columns are kept as they are.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from phalp_lightning.errors import UserError
from phalp_lightning.utils.io import atomic_write_text


class MOTFormatError(UserError, ValueError):
    """A MOT file has a malformed line; the message names the file and the line.

    Attributes:
        starts_as_mot: the file's first non-empty line is a well-formed MOT row, so the file is MOT
            text with a broken line further down (not some other text file, e.g. a README).
    """

    def __init__(self, what: str, todo: str | None = None, starts_as_mot: bool = False) -> None:
        super().__init__(what, todo)
        self.starts_as_mot = starts_as_mot


_FIX_ROW = "fix or remove that line (MOT rows: frame,id,x,y,w,h,conf[,...], frame >= 1, w and h > 0)"


@dataclass
class MOTSequence:
    """All rows of one MOT file, as parallel arrays sorted by (frame, id).

    Attributes:
        frames: (N,) int64 1-based frame numbers.
        track_ids: (N,) int64.
        boxes_xywh: (N, 4) float64 left, top, width, height in pixels.
        confidences: (N,) float64 (the ignore flag in ground truth).
        extra: (N, K) float64 remaining columns (K may be 0).
        path: the file it was read from, if any.
    """

    frames: np.ndarray
    track_ids: np.ndarray
    boxes_xywh: np.ndarray
    confidences: np.ndarray
    extra: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    path: Path | None = None

    def __post_init__(self) -> None:
        count = len(self.frames)
        if self.extra.shape[0] != count:
            self.extra = np.zeros((count, 0))

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def boxes_xyxy(self) -> np.ndarray:
        """(N, 4) boxes as x1, y1, x2, y2."""
        return np.concatenate([self.boxes_xywh[:, :2], self.boxes_xywh[:, :2] + self.boxes_xywh[:, 2:]], axis=1)

    @property
    def frame_numbers(self) -> np.ndarray:
        """Sorted unique frame numbers that have rows."""
        return np.unique(self.frames)

    def frame(self, number: int) -> MOTSequence:
        """The rows of one (1-based) frame."""
        keep = self.frames == number
        return MOTSequence(self.frames[keep], self.track_ids[keep], self.boxes_xywh[keep], self.confidences[keep], self.extra[keep], self.path)

    def to_array(self) -> np.ndarray:
        """(N, 7 + K) rows in file order of columns."""
        return np.concatenate(
            [self.frames[:, None], self.track_ids[:, None], self.boxes_xywh, self.confidences[:, None], self.extra], axis=1
        )


def _validate_rows(rows: np.ndarray, source: str, line_numbers: np.ndarray | None = None) -> None:
    def where(index: int) -> str:
        return f"{source}:{line_numbers[index]}" if line_numbers is not None else f"{source} row {index}"

    problems = (
        (~np.isfinite(rows).all(axis=1),
         lambda row: f"NaN or infinite value in column {int(np.argmax(~np.isfinite(row))) + 1} ({_COLUMN_NAMES.get(int(np.argmax(~np.isfinite(row))), 'extra')})"),
        ((rows[:, 0] < 1) | (rows[:, 0] != np.round(rows[:, 0])),
         lambda row: f"frame must be an integer >= 1 (MOT frames are 1-based), got {row[0]:g}"),
        (rows[:, 1] != np.round(rows[:, 1]), lambda row: f"track id must be an integer, got {row[1]:g}"),
        ((rows[:, 4] <= 0) | (rows[:, 5] <= 0), lambda row: f"box width and height must be > 0, got w={row[4]:g}, h={row[5]:g}"),
    )
    first_bad = None
    for mask, describe in problems:
        bad = np.flatnonzero(mask)
        if len(bad) and (first_bad is None or bad[0] < first_bad[0]):
            first_bad = (int(bad[0]), describe)
    if first_bad is not None:
        index, describe = first_bad
        raise MOTFormatError(f"{where(index)}: {describe(rows[index])}", _FIX_ROW, starts_as_mot=index > 0)


_COLUMN_NAMES = {0: "frame", 1: "id", 2: "x", 3: "y", 4: "width", 5: "height", 6: "conf"}


def _from_rows(rows: np.ndarray, path: Path | None) -> MOTSequence:
    order = np.lexsort((rows[:, 1], rows[:, 0]))
    rows = rows[order]
    return MOTSequence(
        frames=rows[:, 0].astype(np.int64),
        track_ids=rows[:, 1].astype(np.int64),
        boxes_xywh=rows[:, 2:6].astype(np.float64),
        confidences=rows[:, 6].astype(np.float64),
        extra=rows[:, 7:].astype(np.float64),
        path=path,
    )


# First bytes of files that are certainly not MOT text: pickle protocols 2-5, zip (torch, npz), gzip, NumPy.
_BINARY_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05", b"PK\x03\x04", b"\x1f\x8b", b"\x93NUMPY")


def _decode_text(path: Path) -> str:
    data = path.read_bytes()
    if data.startswith(_BINARY_MAGIC) or b"\x00" in data[:4096]:
        raise MOTFormatError(f"{path}: binary data, not MOT text (a pickle, archive or video?)",
                             "pass the MOT .txt file (frame,id,x,y,w,h,conf,...), or set the matching format=")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise MOTFormatError(f"{path}: not UTF-8 text at byte {error.start}, not a MOT text file",
                             "pass the MOT .txt file (frame,id,x,y,w,h,conf,...)") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_lines(text: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Line-by-line parse: slower, but every malformed line is named (``file:line``)."""
    rows, line_numbers = [], []
    width = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        fields = [item for item in stripped.replace(" ", ",").split(",") if item != ""]
        starts_as_mot = bool(rows)
        try:
            values = [float(item) for item in fields]
        except ValueError:
            bad = next(item for item in fields if not _is_number(item))
            raise MOTFormatError(f"{path}:{number}: {bad[:20]!r} is not a number in {stripped[:80]!r}", _FIX_ROW,
                                 starts_as_mot=starts_as_mot) from None
        if len(values) < 7:
            raise MOTFormatError(f"{path}:{number}: expected at least 7 columns (frame, id, x, y, w, h, conf), got {len(values)}",
                                 _FIX_ROW, starts_as_mot=starts_as_mot)
        if width is not None and len(values) != width:
            raise MOTFormatError(f"{path}:{number}: {len(values)} columns where earlier lines have {width}",
                                 "give every row the same columns", starts_as_mot=True)
        width = len(values)
        rows.append(values)
        line_numbers.append(number)
    if not rows:
        return np.zeros((0, 7)), np.zeros(0, dtype=np.int64)
    return np.asarray(rows, np.float64), np.asarray(line_numbers)


def read_mot(path: str | os.PathLike[str]) -> MOTSequence:
    """Read a MOTChallenge text file (ground truth or results).

    Well-formed comma-separated files are parsed in one call to NumPy's C reader; anything else
    (spaces as separators, a bad line) goes through a line-by-line parse that names the line.

    Every row must hold at least 7 numbers, as many as the other rows, all finite; the frame an
    integer >= 1, the id an integer, width and height > 0.

    Raises:
        FileNotFoundError: the file does not exist.
        MOTFormatError: binary content, or a malformed line (the message gives ``file:line`` and
            what to do; ``starts_as_mot`` tells a broken MOT file from another kind of text file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MOT file not found: {path}")
    text = _decode_text(path)
    array = None
    if "," in text:
        try:
            array = np.loadtxt(io.StringIO(text), delimiter=",", ndmin=2, dtype=np.float64, comments=None)
        except ValueError:
            array = None
    if array is not None and array.size and array.shape[1] >= 7:
        try:
            _validate_rows(array, str(path))
            return _from_rows(array, path)
        except MOTFormatError:
            pass  # parse again line by line, so that the message names the line
    array, line_numbers = _parse_lines(text, path)
    if not array.size:
        return _from_rows(np.zeros((0, 7)), path)
    _validate_rows(array, str(path), line_numbers)
    return _from_rows(array, path)


def write_mot(path: str | os.PathLike[str], rows: MOTSequence | np.ndarray | Iterable[Iterable[float]], precision: int = 2) -> Path:
    """Write rows in MOTChallenge format atomically (temporary file + ``os.replace``).

    Args:
        path: destination file (parent folders are created).
        rows: a :class:`MOTSequence` or (N, >= 7) rows ``frame, id, x, y, w, h, conf, ...``;
            rows with exactly 7 columns get ``-1, -1, -1`` appended (the results layout).
        precision: decimals written for the box and extra columns.

    Returns:
        The written path.
    """
    path = Path(path)
    array = rows.to_array() if isinstance(rows, MOTSequence) else np.asarray(list(rows) if not isinstance(rows, np.ndarray) else rows, np.float64)
    if array.size == 0:
        array = np.zeros((0, 10))
    if array.ndim != 2 or array.shape[1] < 7:
        raise MOTFormatError(f"{path}: rows must be (N, >= 7), got shape {array.shape}")
    _validate_rows(array, str(path))
    if array.shape[1] == 7:
        array = np.concatenate([array, -np.ones((len(array), 3))], axis=1)
    array = array[np.lexsort((array[:, 1], array[:, 0]))]
    lines = []
    for row in array:
        numbers = [f"{int(row[0])}", f"{int(row[1])}"] + [f"{value:.{precision}f}" for value in row[2:6]]
        numbers += [f"{value:g}" for value in row[6:]]
        lines.append(",".join(numbers))
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))
    return path
