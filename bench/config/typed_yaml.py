"""YAML data -> frozen dataclasses, checked field by field (nanoGPT's configurator, without exec).

:func:`build` walks a dataclass's type hints: unknown keys (with the nearest valid one), wrong
types, values outside a ``Literal`` and missing required keys each give one
:class:`~dptq.errors.ConfigError` naming the field path (``pair.lr_polcy: unknown key; did you
mean 'lr_policy'?``). A field whose type depends on a sibling (a dataset's options depend on the
dataset's name) declares ``metadata={"options_of": (sibling, lookup)}``: ``lookup(sibling's value)``
gives the dataclass its mapping is built into. A field whose *defaults* depend on a sibling (the
pair settings on the recipe) declares ``metadata={"defaults_of": (sibling, lookup)}``:
``lookup(sibling's value)`` is the default instance, and a given mapping changes fields of it.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from dptq.errors import ConfigError

_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls, include_extras=False)
    return _HINTS[cls]


def describe(tp) -> str:
    """A type as a user reads it ("an integer", "one of 'a', 'b'", ...)."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if dataclasses.is_dataclass(tp):
        return f"a mapping with keys {', '.join(f.name for f in dataclasses.fields(tp))}"
    if origin in (tuple, list):
        return f"a list of {describe(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in typing.get_args(tp))
    return {
        int: "an integer",
        float: "a number",
        bool: "true or false",
        str: "a string",
        type(None): "null",
    }.get(tp, getattr(tp, "__name__", str(tp)))


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def convert(value, tp, path: str, prepare=None):
    """``value`` (from YAML) as type ``tp``, or ConfigError("<path>: ...")."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return convert(value, a, path, prepare)
            except ConfigError as e:
                errors.append(e)
        raise (
            errors[0]
            if len(errors) == 1
            else ConfigError(f"{path}: expected {describe(tp)}, got {_shown(value)}")
        )
    if origin is Literal:
        if not isinstance(value, typing.Hashable) or value not in typing.get_args(tp):
            raise ConfigError(f"{path}: {_shown(value)} is not {describe(tp)}")
        return value
    if dataclasses.is_dataclass(tp):
        return build(tp, value, path, prepare)
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{path}: expected {describe(tp)}, got {_shown(value)}")
        item = typing.get_args(tp)[0]
        return tuple(convert(v, item, f"{path}[{i}]", prepare) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {_shown(value)}")
        _, vt = typing.get_args(tp)
        return {str(k): convert(v, vt, f"{path}.{k}", prepare) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {_shown(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {_shown(value)}")
        if abs(value) > 2**53:
            raise ConfigError(f"{path}: {value} is too large")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path}: expected a number, got {_shown(value)}")
        if not math.isfinite(value) or abs(value) > 1e15:
            raise ConfigError(f"{path}: expected a finite number, got {_shown(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {_shown(value)}")
        return value
    raise ConfigError(f"{path}: unsupported type {tp}")


def build(cls, data, path: str = "", prepare=None):
    """A ``cls`` from a YAML mapping, every field converted and checked (errors name the path).

    ``prepare(cls, data, path) -> data`` may rewrite shorthand forms first (a student given as a
    plain name, say) and return defaults for a section (``StageConfig`` of the teacher).
    """
    if prepare is not None:
        data = prepare(cls, data, path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'suite'}: expected {describe(cls)}, got {_shown(data)}")
    fields_ = {f.name: f for f in dataclasses.fields(cls)}
    kwargs, deferred = {}, []
    for key, value in data.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in fields_:
            near = difflib.get_close_matches(str(key), list(fields_), n=1)
            hint = f"did you mean '{near[0]}'?" if near else f"allowed: {', '.join(fields_)}"
            raise ConfigError(f"{where}: unknown key; {hint}")
        if {"options_of", "defaults_of"} & set(fields_[key].metadata):
            deferred.append((key, value, where))
            continue
        kwargs[key] = convert(value, _hints(cls)[key], where, prepare)
    for f in fields_.values():  # defaults set by a sibling apply when the key is absent too
        if "defaults_of" in f.metadata and f.name not in data:
            deferred.append((f.name, None, f"{path}.{f.name}" if path else f.name))
    for key, value, where in deferred:  # typed by a sibling, now converted
        meta = fields_[key].metadata
        sibling, lookup = meta.get("options_of") or meta["defaults_of"]
        name = kwargs.get(sibling, fields_[sibling].default)
        try:
            found = lookup(name)
        except (KeyError, ValueError, TypeError):
            continue  # an unknown name: the class itself says so, listing the known ones
        if "options_of" in meta:
            kwargs[key] = build(found, {} if value is None else value, where, prepare)
        elif value is None:
            kwargs[key] = found
        elif isinstance(value, dict):
            kwargs[key] = build(type(found), {**to_plain(found), **value}, where, prepare)
        else:
            kwargs[key] = build(type(found), value, where, prepare)  # says what is expected
    try:
        return cls(**kwargs)
    except ConfigError as e:
        msg = str(e)
        head, _, rest = msg.partition(": ")
        if head.split(".")[0].split("[")[0] in fields_:  # the class named one of its own fields
            raise ConfigError(f"{path}.{head}: {rest}" if path else msg) from None
        raise ConfigError(f"{path or 'suite'}: {msg}") from None
    except TypeError as e:  # a required key is missing
        missing = str(e).rsplit(":", 1)[-1].strip().strip("'")
        where = f"{path}.{missing}" if path else missing
        raise ConfigError(f"{where}: required key is missing") from None


def read_yaml(path: Path) -> Any:
    """A YAML file's data with ``yaml.safe_load``; ConfigError (one line) when it cannot be read."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text (byte {e.start}); save the file as UTF-8 YAML") from None
    except OSError as e:
        raise ConfigError(f"cannot be read ({e.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" (line {where.line + 1})" if where else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise ConfigError(f"not valid YAML{line}: {problem}") from None
    except RecursionError:
        raise ConfigError("not valid YAML: nested too deeply") from None


def to_plain(obj):
    """JSON-friendly form of any nested dataclass (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_plain(v) for v in obj]
    return obj
