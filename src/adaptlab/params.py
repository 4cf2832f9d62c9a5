"""The one way to pick parameters by name: prefixes or glob patterns over ``named_parameters()`` keys.

MAML's ``adapt=`` (ANIL adapts ``head``), pruning's layer lists, selective fine-tuning's blocks and a soft
prompt's trainable tensor all name parameters the same way:

* a plain pattern is a **prefix**: ``"head"`` selects ``head.weight`` and ``head.bias``;
* a pattern with ``*``, ``?`` or ``[`` is a **glob** over the whole name: ``"features.*.weight"``.

A pattern that matches nothing is an error naming the parameters there are, so a typo never silently
selects nothing.

>>> import torch
>>> p = {"body.0.weight": torch.zeros(2), "body.0.bias": torch.zeros(1), "head.weight": torch.zeros(3)}
>>> chosen, rest = split(p, ["head"])
>>> list(chosen), list(rest)
(['head.weight'], ['body.0.weight', 'body.0.bias'])
>>> list(select(p, "*.weight"))
['body.0.weight', 'head.weight']
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from typing import TypeVar

V = TypeVar("V")


def _patterns(patterns: str | Iterable[str]) -> tuple[str, ...]:
    return (patterns,) if isinstance(patterns, str) else tuple(patterns)


def matches(name: str, pattern: str) -> bool:
    """Whether ``name`` is selected by ``pattern`` (a prefix, or a glob when it holds ``*?[``)."""
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return name.startswith(pattern)


def select(named: Mapping[str, V], patterns: str | Iterable[str] | None) -> dict[str, V]:
    """The entries of ``named`` selected by any of ``patterns`` (``None`` selects all), in their order.

    Raises:
        ValueError: a pattern matches no parameter (the message lists the names).
    """
    if patterns is None:
        return dict(named)
    pats = _patterns(patterns)
    for p in pats:
        if not any(matches(n, p) for n in named):
            shown = ", ".join(list(named)[:12]) + (", ..." if len(named) > 12 else "")
            raise ValueError(f"parameter pattern {p!r} matches no parameter; names are {shown}")
    return {n: v for n, v in named.items() if any(matches(n, p) for p in pats)}


def split(named: Mapping[str, V], patterns: str | Iterable[str] | None) -> tuple[dict[str, V], dict[str, V]]:
    """``(selected, rest)``: :func:`select` and its complement, both in the original order."""
    chosen = select(named, patterns)
    return chosen, {n: v for n, v in named.items() if n not in chosen}


__all__ = ["matches", "select", "split"]
