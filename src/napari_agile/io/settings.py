"""Settings read from files (TOML recipes, model files) checked against the types their dataclass declares."""

from __future__ import annotations

import dataclasses
import types
import typing

from napari_agile.errors import AgileInputError

_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}


def _matches(value: object, hint: object) -> bool:
    """Whether `value` (as TOML or JSON gives it) fits the type `hint`."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint in (int, float):
        return isinstance(value, (int, float) if hint is float else int) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        return isinstance(value, (list, tuple)) and all(_matches(v, typing.get_args(hint)[0]) for v in value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return isinstance(value, (dict, hint))
    return True


def _describe(hint: object) -> str:
    """The type `hint` in words ("a whole number", "a list of text")."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint) if h is not type(None))
    if typing.get_origin(hint) is tuple:
        return f"a list of {_describe(typing.get_args(hint)[0])}"
    words = _WORDS.get(hint) if isinstance(hint, type) else None
    return words or ("a table" if dataclasses.is_dataclass(hint) else str(hint))


def check_types(cls: type, values: dict, where: str) -> None:
    """A clear error naming `where` and the key whose value is not of its field's type (unknown keys are left to
    the class, which names them); nested tables are checked too."""
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        hint = hints.get(key)
        if hint is None:
            continue
        if not _matches(value, hint):
            raise AgileInputError(f"{where}: {key} = {value!r} must be {_describe(hint)}.")
        if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, dict):
            check_types(hint, value, f"{where} {key}")
