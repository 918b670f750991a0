"""The one-line error convention shared by the command lines."""

from __future__ import annotations

import hydra
import pytest
from phalp_lightning.datamodules.formats.mot import MOTFormatError

from phalp_lightning.assets import AssetMissingError
from phalp_lightning.errors import EXIT_USER_ERROR, UserError, exit_on_user_error, find_user_error


class _RaisesInConstructor:
    def __init__(self) -> None:
        raise UserError("model.file=x.pth: truncated checkpoint", "download it again")


def test_user_error_message_joins_what_and_todo():
    assert str(UserError("gt.txt:3: 5 columns", "write 9 columns")) == "gt.txt:3: 5 columns — write 9 columns"
    assert str(UserError("only what")) == "only what"


def test_domain_errors_are_user_errors_and_keep_their_builtin_base():
    assert issubclass(AssetMissingError, FileNotFoundError) and issubclass(AssetMissingError, UserError)
    assert issubclass(MOTFormatError, ValueError) and issubclass(MOTFormatError, UserError)


def test_user_error_wrapped_by_hydra_instantiate_is_found():
    with pytest.raises(Exception) as info:
        hydra.utils.instantiate({"_target_": f"{__name__}._RaisesInConstructor"})
    assert not isinstance(info.value, UserError)  # Hydra wrapped it
    found = find_user_error(info.value)
    assert found is not None and "truncated checkpoint" in str(found)


def test_exit_on_user_error_prints_one_line_and_exits_2(capsys):
    with pytest.raises(SystemExit) as info, exit_on_user_error():
        raise UserError("a.txt:2: bad\nvalue", "fix line 2")
    assert info.value.code == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err == "error: a.txt:2: bad value — fix line 2\n"


def test_unexpected_errors_keep_their_traceback():
    with pytest.raises(ZeroDivisionError), exit_on_user_error():
        1 / 0  # noqa: B018
