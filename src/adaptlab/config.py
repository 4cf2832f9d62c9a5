"""Typed dataclass configs: dotted overrides, JSON round-trips and validation helpers.

Every experiment config is a (possibly nested) dataclass deriving from :class:`BaseConfig`. Fields are
typed; :func:`apply_overrides` parses ``"train.steps=300"`` against the field's annotation, so unknown keys
and ill-typed values are refused with a :class:`~adaptlab.errors.ConfigError` naming the key and what would
be accepted. Validation lives in each dataclass's ``__post_init__`` (use :func:`check`).

Example::

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Cfg(BaseConfig):
    ...     steps: int = 100
    ...     lr: float = 1e-3
    >>> cfg = apply_overrides(Cfg(), ["steps=3", "lr=0.5"])
    >>> cfg.steps, cfg.lr
    (3, 0.5)

(Nested sections work the same way, ``"meta.steps=300"``, for sections defined at module level.)
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from adaptlab.errors import ConfigError

C = TypeVar("C")

_TRUE = {"true", "1", "yes", "on"}
# Bounds every number of every config obeys, whatever its field: a finite float of sane magnitude and an
# integer that fits the 32-bit sizes, counts and seeds the libraries below take. Fields narrow these further.
MAX_ABS_FLOAT = 1e12
MAX_ABS_INT = 2**31 - 1
MAX_RANGE = 100_000  # elements an "LO..HI" range may expand to, checked before it is expanded
_FALSE = {"false", "0", "no", "off"}


@dataclass
class BaseConfig:
    """Fields every experiment has. ``seed`` and ``device`` are also set by ``--seed``/``--device``."""

    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        check(0 <= self.seed <= 2**31 - 1, "seed", self.seed, "an integer in 0..2147483647")
        check(self.device in ("cpu", "cuda") or self.device.startswith("cuda:"),
              "device", self.device, "'cpu', 'cuda' or 'cuda:N'")


def check(ok: bool, key: str, value: Any, accepted: str) -> None:
    """Raise ConfigError("key=value is invalid; expected ACCEPTED") unless ``ok``."""
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid; expected {accepted}")


# ----------------------------------------------------------------------------------------- conversion


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) dataclass config; tuples become lists."""
    def conv(v):
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, Mapping):
            return {str(k): conv(x) for k, x in v.items()}
        return v
    return conv(cfg)


def from_dict(cls: type[C], data: Mapping[str, Any], prefix: str = "") -> C:
    """Build ``cls`` from a dict (as written by :func:`to_dict`), refusing unknown keys.

    A saved config written before a key was renamed (``cls.RENAMED``, old dotted key -> new dotted key, see
    docs/config.md) is read with the key in its new place.
    """
    if not prefix:
        data = migrate(cls, data)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown config key {prefix + unknown[0]!r}; known keys: {', '.join(sorted(names))}")
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp) and isinstance(value, Mapping):
            kwargs[name] = from_dict(tp, value, prefix=f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, tp, prefix + name)
    return cls(**kwargs)


def migrate(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with every key renamed in ``cls.RENAMED`` (old dotted key -> new dotted key) moved to its
    new place; a renamed section is merged into the section it moved to.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Cfg:
    ...     RENAMED = {"meta_steps": "train.steps"}
    >>> migrate(Cfg, {"meta_steps": 5, "train": {"lr": 0.1}})
    {'train': {'lr': 0.1, 'steps': 5}}
    """
    data = json.loads(json.dumps(data))  # a deep copy of JSON-like data
    for old, new in getattr(cls, "RENAMED", {}).items():
        node, parts = data, old.split(".")
        for part in parts[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or parts[-1] not in node:
            continue
        value, node, parts = node.pop(parts[-1]), data, new.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if isinstance(value, dict) and isinstance(node.get(parts[-1]), dict):
            node[parts[-1]].update(value)
        else:
            node[parts[-1]] = value
    return data


def renamed_to(cls: type, key: str) -> str | None:
    """The new name of ``key`` (or of the section it lies in) if ``cls.RENAMED`` renamed it, else None."""
    for old, new in getattr(cls, "RENAMED", {}).items():
        if key == old or key.startswith(old + "."):
            return new + key[len(old):]
    return None


def save_json(cfg: Any) -> str:
    return json.dumps(to_dict(cfg), indent=2, sort_keys=True)


# ----------------------------------------------------------------------------------------- overrides


def parse_override(text: str) -> tuple[str, str]:
    """Split ``"a.b=value"``; refuse anything else."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"malformed override {text!r}; expected KEY=VALUE, e.g. train.steps=300")
    return key.strip(), value.strip()


def apply_overrides(cfg: C, overrides: Iterable[str] | Mapping[str, Any]) -> C:
    """Return a copy of ``cfg`` with dotted overrides applied, typed and re-validated.

    ``overrides`` is a list of ``"key=value"`` strings (values parsed from text by the field's type) or a
    mapping from dotted key to an already-typed value.
    """
    items = overrides.items() if isinstance(overrides, Mapping) else map(parse_override, overrides)
    data = to_dict(cfg)
    for key, raw in items:
        new = renamed_to(type(cfg), key)
        if new is not None:
            raise ConfigError(f"config key {key!r} was renamed {new!r} (docs/config.md); use {new}=...")
        node, parts = data, key.split(".")
        tp: Any = type(cfg)
        for i, part in enumerate(parts):
            if not (dataclasses.is_dataclass(tp) and isinstance(node, dict)):
                raise ConfigError(f"unknown config key {key!r}: {'.'.join(parts[:i])!r} is not a section")
            hints = typing.get_type_hints(tp)
            if part not in hints:
                known = ", ".join(sorted(".".join(parts[:i] + [n]) for n in hints))
                raise ConfigError(f"unknown config key {key!r}; known keys here: {known}")
            tp = hints[part]
            if i < len(parts) - 1:
                node = node[part]
        if dataclasses.is_dataclass(tp):
            raise ConfigError(f"config key {key!r} is a section; set one of its fields, e.g. {key}.<field>=...")
        value = _parse_text(raw, tp, key) if isinstance(raw, str) else raw
        node[parts[-1]] = to_dict(_coerce(value, tp, key))
    try:
        return from_dict(type(cfg), data)
    except TypeError as e:  # pragma: no cover - defensive: a dataclass refusing its own fields
        raise ConfigError(str(e)) from None


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp))
    if origin in (list, tuple):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        return f"a comma-separated list of {_describe(args[0]) if args else 'values'}"
    if tp is type(None):
        return "none"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(tp, str(tp))


def _parse_text(raw: str, tp: Any, key: str) -> Any:
    """Parse the text of an override according to the annotation ``tp``."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if type(None) in args and raw.lower() in ("none", "null"):
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(_parse_text(raw, a, key), a, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}={raw!r} is invalid; expected {_describe(tp)}")
    if origin in (list, tuple):
        text = raw.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                raise ConfigError(f"{key}={raw!r} is not valid JSON; expected {_describe(tp)}") from None
        args = [a for a in get_args(tp) if a is not Ellipsis] or [str]
        if ".." in text and args[0] is int:  # inclusive integer range "5..10"
            lo, _, hi = text.partition("..")
            try:
                lo_i, hi_i = int(lo), int(hi)
            except ValueError:
                raise ConfigError(f"{key}={raw!r} is invalid; expected {_describe(tp)} or LO..HI") from None
            if not 0 < hi_i - lo_i + 1 <= MAX_RANGE:
                raise ConfigError(f"{key}={raw!r} is invalid; expected LO..HI with LO <= HI and at most "
                                  f"{MAX_RANGE} values")
            return list(range(lo_i, hi_i + 1))
        return [_parse_text(p.strip(), args[0], key) for p in text.split(",") if p.strip()]
    if tp is bool:
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ConfigError(f"{key}={raw!r} is invalid; expected true or false")
    if tp is int:
        try:
            if not raw.isascii():  # int() reads other scripts' digits ("٣" == 3): refuse them as typos
                raise ValueError
            return int(raw)
        except ValueError:
            raise ConfigError(f"{key}={raw!r} is invalid; expected an integer") from None
    if tp is float:
        try:
            if not raw.isascii():
                raise ValueError
            return float(raw)
        except ValueError:
            raise ConfigError(f"{key}={raw!r} is invalid; expected a number") from None
    return raw


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check/convert an already-parsed value against ``tp`` (used for JSON and mapping overrides)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{key}={value!r} is invalid; expected {_describe(tp)}")
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in get_args(tp):
            return None
        for a in get_args(tp):
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}={value!r} is invalid; expected {_describe(tp)}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}={value!r} is invalid; expected {_describe(tp)}")
        args = [a for a in get_args(tp) if a is not Ellipsis]
        items = [_coerce(v, args[0], key) for v in value] if args else list(value)
        return tuple(items) if origin is tuple else items
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}={value!r} is invalid; expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if not (isinstance(value, float) and value.is_integer()):
                raise ConfigError(f"{key}={value!r} is invalid; expected an integer")
        if not -MAX_ABS_INT <= value <= MAX_ABS_INT:
            raise ConfigError(f"{key}={value!r} is invalid; expected an integer of magnitude at most {MAX_ABS_INT}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}={value!r} is invalid; expected a number")
        if not (math.isfinite(value) and abs(value) <= MAX_ABS_FLOAT):
            raise ConfigError(f"{key}={value!r} is invalid; expected a finite number of magnitude at most "
                              f"{MAX_ABS_FLOAT:g}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}={value!r} is invalid; expected a string")
        return value
    if dataclasses.is_dataclass(tp) and isinstance(value, Mapping):
        return from_dict(tp, value, prefix=key + ".")
    return value
