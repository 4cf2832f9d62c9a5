"""adaptlab: getting models onto new tasks with little data and little compute.

Subpackages are imported lazily so ``import adaptlab`` stays light::

    import adaptlab as al
    tasks = al.tasks.FourierTasks(d=501, support=range(5, 11))
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBPACKAGES = (
    "tasks", "data", "inner", "meta", "eval", "experiments", "models", "mtl", "compress", "io", "viz", "lm",
    "config", "runner", "errors", "typing", "distributed", "params", "report", "engine", "adapt", "zeroshot",
)


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"adaptlab.{name}")
    raise AttributeError(f"module 'adaptlab' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBPACKAGES))
