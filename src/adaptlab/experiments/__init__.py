"""The experiment registry.

Each module in this package that defines ``EXPERIMENTS: list[Experiment]`` is discovered automatically, so a
new experiment is one new file. Modules are imported on first use of the registry only.
"""

from __future__ import annotations

import importlib
import pkgutil

from adaptlab.errors import ConfigError
from adaptlab.runner import Experiment

_REGISTRY: dict[str, Experiment] | None = None


def registry() -> dict[str, Experiment]:
    """All registered experiments by name, in module order."""
    global _REGISTRY
    if _REGISTRY is None:
        found: dict[str, Experiment] = {}
        for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
            if mod.name.startswith("_"):
                continue
            module = importlib.import_module(f"{__name__}.{mod.name}")
            for exp in getattr(module, "EXPERIMENTS", []):
                if exp.name in found:
                    raise RuntimeError(f"experiment {exp.name!r} registered twice")
                found[exp.name] = exp
        _REGISTRY = found
    return _REGISTRY


def get(name: str) -> Experiment:
    reg = registry()
    if name not in reg:
        import difflib

        close = difflib.get_close_matches(name, reg, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown experiment {name!r}{hint}; run 'adaptlab list' to see the {len(reg)} available")
    return reg[name]
