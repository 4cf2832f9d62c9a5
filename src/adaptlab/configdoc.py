"""Documentation of a config, read from the config itself: every key with its type, default, accepted values and
meaning.

The meaning is the comment on the field's line in the dataclass (and comment-only lines right below it); the
accepted values are the ``accepted`` text of the :func:`~adaptlab.config.check` call that validates the key in
the experiment's module. Nothing is written twice, so the help cannot drift from the code.

>>> from adaptlab.experiments import get
>>> docs = {d.key: d for d in describe(get("alias-two-feature").config())}
>>> docs["train.lr"].type, docs["train.lr"].accepted
('a number', 'a positive number')
"""

from __future__ import annotations

import ast
import dataclasses
import fnmatch
import inspect
import io
import json
import sys
import tokenize
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any


@dataclass
class FieldDoc:
    key: str
    type: str
    default: Any
    accepted: str
    help: str


@cache
def _comments(cls: type) -> dict[str, str]:
    """Field name -> its trailing comment (plus comment-only continuation lines) in the class source."""
    try:
        src = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    lines = src.splitlines()
    fields = {f.name for f in dataclasses.fields(cls)}
    tokens = list(tokenize.generate_tokens(io.StringIO(src).readline))
    for tok in tokens:
        if tok.type != tokenize.COMMENT:
            continue
        row = tok.start[0]
        first = lines[row - 1].strip()
        name = first.split(":")[0].strip() if ":" in first else ""
        text = tok.string.lstrip("#").strip()
        if name in fields and not first.startswith("#"):
            out[name] = text
            j = row
            while j < len(lines) and lines[j].strip().startswith("#"):  # continuation lines
                out[name] += " " + lines[j].strip().lstrip("#").strip()
                j += 1
    return out


def _text(node: ast.AST, env: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and node.id in env:  # check(..., key, ...) inside `for key in (...)`
        return env[node.id]
    if isinstance(node, ast.JoinedStr):
        parts = []
        for v in node.values:
            if isinstance(v, ast.Constant):
                parts.append(str(v.value))
            elif isinstance(v, ast.FormattedValue) and isinstance(v.value, ast.Name) and v.value.id in env:
                parts.append(env[v.value.id])
            else:  # a value only known at run time: a wildcard in a key, an ellipsis in a description
                parts.append("\0")
        return "".join(parts)
    return None


@cache
def _accepted(module_name: str) -> dict[str, str]:
    """Dotted key -> accepted text, from every ``check(ok, key, value, accepted)`` call of a module."""
    module = sys.modules.get(module_name)
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}

    def visit(node: ast.AST, envs: list[dict[str, str]]):
        if isinstance(node, ast.For) and isinstance(node.target, ast.Name) and isinstance(node.iter, ast.Tuple):
            values = [e.value for e in node.iter.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            envs = [{**env, node.target.id: v} for env in envs for v in values] or envs
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "check" and len(node.args) >= 4:
            for env in envs:
                key, accepted = _text(node.args[1], env), _text(node.args[3], env)
                if key and accepted:
                    out.setdefault(key.replace("\0", "*"), accepted.replace("\0", "…"))
        for child in ast.iter_child_nodes(node):
            visit(child, envs)

    visit(tree, [{}])
    return out


def describe(cfg: Any, prefix: str = "") -> list[FieldDoc]:
    """One :class:`FieldDoc` per leaf key of the config instance ``cfg`` (defaults are its values)."""
    from adaptlab.config import _describe

    cls = type(cfg)
    hints = typing.get_type_hints(cls)
    out: list[FieldDoc] = []
    for klass in cls.__mro__:  # comments of inherited fields (seed, device) live in the base class
        if dataclasses.is_dataclass(klass):
            _comments(klass)
    for f in dataclasses.fields(cls):
        key, value = prefix + f.name, getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out += describe(value, prefix=key + ".")
            continue
        owner = next(k for k in cls.__mro__ if dataclasses.is_dataclass(k) and f.name in k.__dict__.get(
            "__dataclass_fields__", {}) and f.name in getattr(k, "__annotations__", {}))
        accepted = getattr(cls, "ACCEPTED", {}).get(f.name, "")  # ranges checked by a shared validator
        for k in cls.__mro__:
            table = _accepted(k.__module__)
            accepted = accepted or table.get(key, "") or next(
                (v for p, v in table.items() if "*" in p and fnmatch.fnmatchcase(key, p)), "")
        default = list(value) if isinstance(value, tuple) else value
        out.append(FieldDoc(key, _describe(hints[f.name]), default, accepted, _comments(owner).get(f.name, "")))
    return out


def format_help(docs: list[FieldDoc], width: int = 100) -> str:
    """The config keys as text: ``key = default  (type)`` then the meaning and accepted values, wrapped."""
    import textwrap

    rows = []
    for d in docs:
        default = json.dumps(d.default) if not isinstance(d.default, str) else repr(d.default)
        if len(default) > 60:
            default = default[:57] + "..."
        rows.append(f"  {d.key} = {default}  ({d.type})")
        meaning = " ".join(x for x in (d.help.rstrip(".") + "." if d.help else "",
                                       f"Accepts {d.accepted}." if d.accepted else "") if x)
        if meaning:
            rows += textwrap.wrap(meaning, width, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(rows)
