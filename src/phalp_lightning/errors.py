"""One error convention for every command line: problems the user can fix end in one line.

A :class:`UserError` names the input it is about (a file, with its line where there is one, or a
config key) and what to do about it. The entry points (``train.py``, ``predict.py``, ``evaluate.py``
and ``python -m phalp_lightning.assets``) run under :func:`exit_on_user_error`, which prints such an
error as ``error: <what and where> — <what to do>`` on stderr and exits with status 2, with no
traceback. Anything else is a bug or an unexpected failure and keeps its full traceback.

Hydra wraps exceptions raised inside an instantiated object's constructor; the wrapper's cause chain
is searched, so a ``UserError`` raised deep inside ``hydra.utils.instantiate`` still prints as one line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A failure the user can fix; ``str()`` is the whole message: what, where, and what to do."""

    def __init__(self, what: str, todo: str | None = None) -> None:
        self.what = what
        self.todo = todo
        super().__init__(f"{what} — {todo}" if todo else what)

    def __str__(self) -> str:
        # KeyError (a base of some subclasses) would quote the message.
        return str(self.args[0]) if self.args else ""


def find_user_error(error: BaseException | None) -> UserError | None:
    """``error`` itself or the first :class:`UserError` on its cause/context chain, else None."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, UserError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def one_line(message: str) -> str:
    """Collapse a multi-line message so the user reads it on one line."""
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


@contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Turn a :class:`UserError` (raised directly or wrapped) into ``error: ...`` and exit status 2."""
    try:
        yield
    except Exception as error:  # noqa: BLE001 - re-raised unless it is the user's to fix
        user_error = find_user_error(error)
        if user_error is None:
            raise
        print(f"error: {one_line(str(user_error))}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_USER_ERROR) from None


def run_reporting_user_errors(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``function`` under :func:`exit_on_user_error` (the entry points' one line of glue)."""
    with exit_on_user_error():
        return function(*args, **kwargs)
