"""Shared machinery for the typed config dataclasses.

Every component owns a small dataclass that validates itself in `__post_init__` and raises
`ConfigError` saying which field is wrong and what to change. Configs round-trip through
plain dicts (JSON in run directories) and accept dotted overrides (`train.lr=3e-4`).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import numbers
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value is invalid; the message names the field and what to change."""


def require(condition: bool, field: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{field}: {message}")


def to_dict(cfg: Any) -> Any:
    """Recursively turn dataclasses (and paths/tuples) into JSON-ready values."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {str(k): to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, Path):
        return str(cfg)
    return cfg


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _required(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)
            if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]


def from_dict(cls: type[T], data: dict[str, Any], where: str = "", source: str | Path | None = None) -> T:
    """Build dataclass `cls` from a dict, recursing into nested dataclass fields.

    Every value is checked against its field's type first (see `check_fields`), so a wrong type
    is a ConfigError naming the field instead of a TypeError from deep inside. ``source`` (a file)
    prefixes every error, including those the dataclasses' own checks raise.
    """
    if source is not None:
        try:
            return from_dict(cls, data, where)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    data = _moved(cls, data, where)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"{where or cls.__name__}: unknown field(s) {sorted(unknown)}; known: {sorted(names)}")
    missing = [name for name in _required(cls) if name not in data]
    if missing:
        raise ConfigError(f"{_join(where, missing[0])}: missing (required field{'s' if len(missing) > 1 else ''} "
                          f"of {where or cls.__name__}: {', '.join(missing)})")
    kwargs = {name: _coerce(hints[name], value, _join(where, name), convert=True) for name, value in data.items()}
    return cls(**kwargs)


def _node(data: Any, path: list[str]) -> Any:
    for part in path:
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _moved(cls: type, data: dict, where: str) -> dict:
    """``data`` with the fields ``cls.MOVED_FIELDS`` names (old dotted path -> new one) moved to their new
    place, so configs written before a field moved still load. An old value whose new parent is absent (an
    optional stage the config does not have) has nowhere to apply and is dropped; old and new set to
    different values is an error."""
    moves = getattr(cls, "MOVED_FIELDS", None)
    if not moves:
        return data
    data = copy.deepcopy(data)
    for old, new in moves.items():
        *old_parent, old_name = old.split(".")
        parent = _node(data, old_parent)
        if not isinstance(parent, dict) or old_name not in parent:
            continue
        value = parent.pop(old_name)
        *new_parent, new_name = new.split(".")
        target = _node(data, new_parent)
        if not isinstance(target, dict):
            continue
        if new_name in target and target[new_name] != value:
            raise ConfigError(f"{_join(where, old)}: moved to {_join(where, new)}, which is also set "
                              f"({target[new_name]!r} vs {value!r}); keep only {new}")
        target[new_name] = value
    return data


def check_fields(cfg: Any, where: str = "") -> None:
    """Check every field of dataclass instance ``cfg`` (recursively) against its type.

    Numbers must be numbers (not strings or booleans), finite, and integral where the field is
    an ``int``; strings, booleans, paths, literals, lists and mappings likewise. Top-level configs
    call this from their own validation, so configs built in Python get the checks that
    `from_dict` applies to JSON and ``--set`` values.
    """
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        _coerce(hints[f.name], getattr(cfg, f.name), _join(where, f.name), convert=False)


# Types checked by isinstance alone: hint -> (accepted types, what the message asks for).
_SCALARS = {bool: ((bool,), "true or false"), str: ((str,), "a string"), Path: ((str, Path), "a path")}


def _type_name(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if not isinstance(value, (dict, list)) else type(value).__name__


def _coerce(hint: Any, value: Any, where: str, convert: bool) -> Any:
    """``value`` checked against ``hint``; with ``convert``, also turned into it (dict -> dataclass,
    str -> Path, list -> tuple, int -> float, an integral float -> int)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        if convert:
            return from_dict(hint, value, where)
        if not isinstance(value, hint):
            raise ConfigError(f"{where}: expected a {hint.__name__} mapping, got {_type_name(value)}")
        check_fields(value, where)
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None:
            if type(None) not in args:
                raise ConfigError(f"{where}: must not be null")
            return None
        non_none = [a for a in args if a is not type(None)]
        return _coerce(non_none[0], value, where, convert) if len(non_none) == 1 else value
    if origin is typing.Literal:
        if value not in args or type(value) not in {type(a) for a in args}:
            raise ConfigError(f"{where}: must be one of {', '.join(repr(a) for a in args)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {_type_name(value)}")
        inner = args[0] if args else Any
        items = [_coerce(inner, v, f"{where}[{i}]", convert) for i, v in enumerate(value)]
        return (tuple(items) if origin is tuple else items) if convert else value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {_type_name(value)}")
        inner = args[1] if len(args) == 2 else Any
        out = {k: _coerce(inner, v, f"{where}.{k}", convert) for k, v in value.items()}
        return out if convert else value
    if hint in _SCALARS:
        accepted, expected = _SCALARS[hint]
        if not isinstance(value, accepted):
            raise ConfigError(f"{where}: expected {expected}, got {_type_name(value)}")
        return Path(value) if convert and hint is Path else value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(f"{where}: expected an integer, got {_type_name(value)}")
        if isinstance(value, numbers.Integral):
            return int(value) if convert else value
        if convert and math.isfinite(value) and float(value).is_integer():  # 1e3 from JSON is 1000
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(f"{where}: expected a number, got {_type_name(value)}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: must be a finite number, got {value!r}")
        return float(value) if convert else value
    return value


def load_json_file(path: str | Path) -> Any:
    """A JSON config file's content; a missing or malformed file is a ConfigError naming it (and the line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}:{err.lineno}: malformed JSON ({err.msg} at column {err.colno})") from None


def apply_overrides(cfg: T, overrides: list[str]) -> T:
    """Return a copy of `cfg` with `a.b.c=value` overrides applied (values parsed as JSON if possible)."""
    data = to_dict(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. train.lr=3e-4")
        key, raw = item.split("=", 1)
        key = getattr(type(cfg), "MOVED_FIELDS", {}).get(key, key)  # a key from before its field moved
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"override {item!r}: no field {part!r} in {key!r}")
            node = node[part]
        if not isinstance(node, dict) or parts[-1] not in node:
            raise ConfigError(f"override {item!r}: no field {parts[-1]!r}")
        node[parts[-1]] = _override_value(raw, node[parts[-1]])
    return from_dict(type(cfg), data)


def _override_value(raw: str, current: Any) -> Any:
    """``raw`` parsed as JSON (numbers, true/false, null, lists), except that a field holding a string
    keeps the text as given (``--set name=2024`` is the name "2024")."""
    if isinstance(current, str) and raw != "null":
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of dataclass ``cls`` (first paragraph, one line): the configs'
    own documentation, read from the source so that what `alignpt train --example-config` explains cannot
    drift from the code."""
    import ast
    import inspect
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):  # no source (frozen app): no docs rather than a failure
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs = {}
    for node, after in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split("\n\n")[0].split())
    return docs


def describe_fields(cfg: Any, where: str = "") -> list[str]:
    """``key = value  # doc`` for every field of dataclass instance ``cfg``, nested ones by dotted key."""
    lines = []
    docs = field_docs(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = _join(where, f.name)
        if dataclasses.is_dataclass(value):
            head = f"{key}: {docs[f.name]}" if f.name in docs else f"{key}:"
            lines.append(head)
            lines += describe_fields(value, key)
        else:
            doc = f"  # {docs[f.name]}" if f.name in docs else ""
            lines.append(f"{key} = {json.dumps(to_dict(value))}{doc}")
    return lines
