"""Lazy re-exports for package ``__init__`` files: ``al.meta.MAML`` imports ``adaptlab.meta.maml`` on first use.

Each package names its public objects per submodule; :func:`attach` returns the sorted ``__all__`` and the
module-level ``__getattr__`` / ``__dir__`` that import a submodule only when one of its names is first read, so
``import adaptlab.meta`` stays as light as ``import adaptlab``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence


def attach(package: str, exports: Mapping[str, Sequence[str]]) -> tuple[list[str], Callable, Callable]:
    """``(__all__, __getattr__, __dir__)`` for ``package`` exporting ``exports[submodule] = [names]``.

    Submodules themselves are reachable as attributes too (``al.meta.maml``).

    >>> all_, getattr_, _ = attach("adaptlab.inner", {"lstsq": ["min_norm_lstsq"]})
    >>> all_, getattr_("min_norm_lstsq").__name__
    (['min_norm_lstsq'], 'min_norm_lstsq')
    """
    where = {name: sub for sub, names in exports.items() for name in names}
    if len(where) != sum(len(names) for names in exports.values()):
        raise ValueError(f"{package}: a name is exported by two submodules")
    public = sorted(where)

    def __getattr__(name: str):
        if name in where:
            value = getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        elif name in exports:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return value

    def __dir__():
        return sorted(set(public) | set(exports))

    return public, __getattr__, __dir__
