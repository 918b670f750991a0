"""Fetch the released asset files: resume, retries, timeout, content check, atomic landing.

A file is streamed into ``<target>.part``. An interrupted transfer keeps that file, and the next
attempt (a retry here, or a later run) asks the server for the rest with an HTTP ``Range`` header;
a server that answers with the whole file instead restarts it from zero. Transient failures
(connection refused or dropped, timeouts, 5xx) are retried with doubling back-off; a 404, a full
disk or a refused write are not. A complete ``.part`` is checked by content
(:mod:`phalp_lightning.pipelines.assets.checks`) and only then renamed to its final name, so a file under
its final name is always complete and valid; a file that fails the check is deleted. An existing
valid file is not fetched again unless ``force``.

Every failure is a :class:`DownloadError` (a :class:`~phalp_lightning.errors.UserError`): one line
with the URL, the file and what to do.
"""

from __future__ import annotations

import errno
import http.client
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlparse
from urllib.request import url2pathname

from phalp_lightning.assets import ASSETS, asset_path, assets_root
from phalp_lightning.assets.remote import BASE_URL_ENV_VAR, RemoteFile, download_command
from phalp_lightning.assets.stand_ins import is_stand_in
from phalp_lightning.errors import UserError
from phalp_lightning.pipelines.assets.checks import AssetContentError, check_asset

log = logging.getLogger(__name__)

PART_SUFFIX = ".part"
# HTTP answers that retrying will not change.
_PERMANENT_HTTP = {400, 401, 403, 404, 405, 410, 451}


class DownloadError(UserError, OSError):
    """A file could not be fetched or failed its check; the message names the URL, file and remedy."""

    def __str__(self) -> str:  # OSError would format its own way
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class DownloadOptions:
    """How hard to try: per-request timeout (s), retries after the first attempt, first back-off (s)."""

    timeout: float = 60.0
    retries: int = 4
    backoff: float = 2.0
    chunk_size: int = 1 << 20
    progress: bool = True


class _Retry(Exception):
    """A transient failure: the next attempt resumes from the .part file."""


class _Fatal(Exception):
    """A failure retrying cannot fix: (what happened, what to do)."""

    def __init__(self, what: str, todo: str) -> None:
        super().__init__(what)
        self.what, self.todo = what, todo


def part_path(target: Path) -> Path:
    return target.with_name(target.name + PART_SUFFIX)


def _write_chunk(handle: BinaryIO, chunk: bytes) -> None:
    handle.write(chunk)


def _human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


class _NoProgress:
    """Stands in for a rich progress display when progress is off."""

    def add_task(self, *args: Any, **kwargs: Any) -> int:
        return 0

    def update(self, *args: Any, **kwargs: Any) -> None:
        pass

    def remove_task(self, *args: Any, **kwargs: Any) -> None:
        pass


@contextmanager
def progress_display(enabled: bool = True) -> Iterator[Any]:
    """A rich progress display (file name, bar, size, speed, time left) on stderr, or a no-op."""
    if not enabled:
        yield _NoProgress()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        yield progress


def _disk_error(error: OSError, part: Path, url: str, remaining: int | None) -> _Fatal:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        need = f"at least {_human(remaining)} " if remaining else ""
        return _Fatal(
            f"no space left on the device writing {part} (downloading {url})",
            f"free {need}in {part.parent} or set PHALP_ASSETS to a folder on a larger disk, then rerun: "
            f"the download resumes from {part.name}",
        )
    return _Fatal(
        f"cannot write {part} (downloading {url}): {error.strerror or error}",
        f"make {part.parent} writable or set PHALP_ASSETS to a writable folder",
    )


def _open_http(url: str, offset: int, timeout: float) -> tuple[Any, int, int | None]:
    """Open ``url`` from byte ``offset``; returns (response, offset the body starts at, total size)."""
    from phalp_lightning import __version__

    headers = {"User-Agent": f"phalp_lightning/{__version__}", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            raise _Retry("the server refused to resume (416); restarting from zero") from error
        if error.code in _PERMANENT_HTTP:
            raise _Fatal(
                f"{url} answered HTTP {error.code} {error.reason}",
                "the file is not at that address: check --base-url / $" + BASE_URL_ENV_VAR + " (a mirror must hold the "
                "published tree, see `download --dry-run`), or fetch it by hand into the printed path",
            ) from error
        raise _Retry(f"HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        raise _Retry(f"cannot connect ({reason})") from error
    length = response.headers.get("Content-Length")
    if response.status == 206:
        content_range = response.headers.get("Content-Range", "")  # "bytes START-END/TOTAL"
        try:
            span, total_text = content_range.split(" ", 1)[1].split("/")
            start = int(span.split("-")[0])
            total = None if total_text == "*" else int(total_text)
        except (IndexError, ValueError):
            response.close()
            raise _Retry(f"unreadable Content-Range {content_range!r}; restarting from zero") from None
        return response, start, total
    return response, 0, int(length) if length is not None else None


def _open_file(url: str, offset: int) -> tuple[BinaryIO, int, int]:
    source = Path(url2pathname(urlparse(url).path))
    if not source.is_file():
        raise _Fatal(
            f"{url}: no such file in the mirror",
            "a mirror holds the published tree (`download --dry-run` prints every path): complete it or fix --base-url",
        )
    total = source.stat().st_size
    start = offset if offset <= total else 0
    handle = source.open("rb")
    handle.seek(start)
    return handle, start, total


def _transfer(url: str, part: Path, options: DownloadOptions, progress: Any, task: Any) -> None:
    """One attempt: append the rest of ``url`` to ``part``; returns when the whole file is there."""
    offset = part.stat().st_size if part.exists() else 0
    scheme = urlparse(url).scheme
    if scheme == "file":
        stream, start, total = _open_file(url, offset)
    elif scheme in ("http", "https"):
        stream, start, total = _open_http(url, offset, options.timeout)
    else:
        raise _Fatal(f"{url}: unsupported URL scheme {scheme!r}", "use an http://, https:// or file:// base URL")
    if start == offset:
        mode = "ab"
    elif start == 0:
        log.warning("%s: the server does not resume partial downloads; restarting %s from zero", url, part.name)
        mode = "wb"
    else:
        stream.close()
        raise _Retry(f"the server sent bytes from {start}, not {offset}; restarting from zero")
    progress.update(task, completed=start, total=total)
    received = start
    try:
        part.parent.mkdir(parents=True, exist_ok=True)
        with stream, part.open(mode) as handle:
            while True:
                try:
                    chunk = stream.read(options.chunk_size)
                except http.client.IncompleteRead as error:
                    _write_chunk(handle, error.partial)
                    received += len(error.partial)
                    raise _Retry(f"connection closed after {_human(received)}") from error
                except (OSError, http.client.HTTPException) as error:  # timeouts and resets included
                    raise _Retry(f"transfer interrupted after {_human(received)} ({error})") from error
                if not chunk:
                    break
                _write_chunk(handle, chunk)
                received += len(chunk)
                progress.update(task, completed=received)
    except _Retry:
        raise
    except OSError as error:
        raise _disk_error(error, part, url, None if total is None else total - received) from error
    if total is not None and received != total:
        raise _Retry(f"connection closed after {_human(received)} of {_human(total)}")


def download_file(
    url: str,
    target: str | os.PathLike[str],
    check: Callable[[Path], str] | None = None,
    force: bool = False,
    options: DownloadOptions | None = None,
    progress: Any = None,
    label: str | None = None,
) -> str:
    """Fetch ``url`` into ``target`` (resume, retries, check, atomic rename).

    Args:
        url: ``http(s)://`` or ``file://`` address.
        target: final path; it appears only once the file is complete and ``check`` passed.
        check: content check of a file (returns a summary, raises :class:`AssetContentError`).
        force: fetch again even if ``target`` exists and passes ``check``.
        options: timeout, retries, back-off, chunk size.
        progress: a rich ``Progress`` (see :func:`progress_display`); None shows nothing.
        label: name shown on the progress bar (default: the file name).

    Returns:
        What happened, for the user: ``"already present: ..."`` or ``"downloaded ..."``.
    """
    options = options or DownloadOptions()
    target = Path(target)
    progress = progress if progress is not None else _NoProgress()
    if target.is_file() and not force:
        if check is None:
            return "already present"
        try:
            return f"already present, valid: {check(target)}"
        except AssetContentError as error:
            log.warning("%s; fetching it again", error.what)
    part = part_path(target)
    if force and part.exists():
        part.unlink()
    task = progress.add_task(label or target.name, total=None)
    try:
        seconds, size, summary = _fetch_checked(url, target, part, check, options, progress, task)
    finally:
        progress.remove_task(task)
    speed = f", {_human(size / seconds)}/s" if seconds > 0 else ""
    return f"downloaded {_human(size)} in {seconds:.1f} s{speed}" + (f": {summary}" if summary else "")


def _fetch_checked(
    url: str, target: Path, part: Path, check: Callable[[Path], str] | None, options: DownloadOptions, progress: Any, task: Any
) -> tuple[float, int, str]:
    """Fetch into ``part`` with retries, check it, rename it to ``target``; returns (seconds, bytes, summary)."""
    started = time.monotonic()
    last_reason = ""
    for attempt in range(options.retries + 1):
        if attempt:
            delay = options.backoff * 2 ** (attempt - 1)
            log.warning("%s: %s; retry %d of %d in %.0f s", url, last_reason, attempt, options.retries, delay)
            time.sleep(delay)
        try:
            _transfer(url, part, options, progress, task)
            break
        except _Retry as error:
            last_reason = str(error)
            if "restarting from zero" in last_reason and part.exists():
                part.unlink()
        except _Fatal as error:
            raise DownloadError(f"{error.what} (for {target})", error.todo) from None
    else:
        kept = f"; {part.name} keeps the {_human(part.stat().st_size)} received and the next run resumes it" if part.exists() else ""
        attempts = f"{options.retries + 1} attempt" + ("s" if options.retries else "")
        raise DownloadError(
            f"cannot download {url} to {target}: {last_reason} (after {attempts}){kept}",
            "check the network connection or proxy (https_proxy), raise --retries / --timeout, or fetch the "
            f"files on another machine and point --base-url (or ${BASE_URL_ENV_VAR}) at a file:// copy",
        )
    seconds = time.monotonic() - started
    size = part.stat().st_size
    summary = ""
    if check is not None:
        try:
            summary = check(part)
        except AssetContentError as error:
            part.unlink()
            raise DownloadError(
                f"downloaded {url} but it fails the content check, nothing was saved under {target}: {error.what}",
                "the server or mirror holds another or damaged file: check --base-url / "
                f"${BASE_URL_ENV_VAR}, or retry later",
            ) from None
    with part.open("rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(part, target)
    return seconds, size, summary


def check_for(remote: RemoteFile, root: str | os.PathLike[str] | None = None, full: bool = True) -> Callable[[Path], str]:
    """The content check of ``remote``'s asset (with its published size and digest when known)."""
    config = asset_path("pose_predictor_config", root)
    todo = f"rerun `{download_command(remote.group)}` (it fetches again every file that fails its check)"
    return lambda path: check_asset(
        remote.asset, path, full=full, size=remote.size, sha256=remote.sha256, pose_predictor_config=config, todo=todo
    )


def download_assets(
    remotes: list[RemoteFile],
    root: str | os.PathLike[str] | None = None,
    base_url: str | None = None,
    force: bool = False,
    options: DownloadOptions | None = None,
    report: Callable[[str], None] = print,
) -> list[Path]:
    """Fetch ``remotes`` into the assets root; returns their paths. Stops at the first failure."""
    options = options or DownloadOptions()
    base = assets_root(root)
    paths = []
    with progress_display(options.progress) as progress:
        for remote in remotes:
            relpath = ASSETS[remote.asset].relpath
            target = base / relpath
            url = remote.url(base_url)
            # A generated stand-in passes the structural checks; the released file replaces it.
            stand_in = not force and is_stand_in(base, relpath)
            outcome = download_file(url, target, check_for(remote, root), force or stand_in, options, progress, label=relpath)
            report(f"{relpath}: {outcome}" + (" (replaced the synthetic stand-in)" if stand_in else ""))
            paths.append(target)
    return paths


def smpl_note(root: str | os.PathLike[str] | None = None) -> str | None:
    """A reminder when the licensed SMPL file is absent (it is never downloaded)."""
    from phalp_lightning.assets import SMPL_HELP

    path = asset_path("smpl_neutral", root)
    return None if path.is_file() else f"note: {path} is missing; {SMPL_HELP}"
