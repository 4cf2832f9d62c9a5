"""Layers point one way: no library module imports the runner, the CLI or the experiments.

The imports are read from the source with :mod:`ast` (module level and inside functions alike), so a lazy
``from adaptlab.runner import ...`` inside a function counts as much as one at the top of a file.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "adaptlab"
# The application layer: these may import anything. Everything else under adaptlab/ is the library.
APP = {"runner", "cli", "__main__", "experiments", "report"}
FORBIDDEN = ("adaptlab.runner", "adaptlab.cli", "adaptlab.experiments")


def _module_name(path: Path, root: Path = SRC) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path = SRC) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import in the file, relative imports resolved.

    ``from adaptlab import runner`` yields ``adaptlab.runner``; ``importlib.import_module("adaptlab.x")``
    with a literal string is counted too.
    """
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
              == "import_module" and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            out.append((node.lineno, node.args[0].value))
    return out


def _is_forbidden(mod: str) -> bool:
    return any(mod == f or mod.startswith(f + ".") for f in FORBIDDEN)


def library_modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py")
                  if p.relative_to(PKG).parts[0].removesuffix(".py") not in APP)


def test_the_scan_sees_the_library():
    mods = {_module_name(p) for p in library_modules()}
    assert {"adaptlab", "adaptlab.io", "adaptlab.meta.maml", "adaptlab.models.conv4"} <= mods
    assert not any(m.startswith(("adaptlab.experiments", "adaptlab.runner", "adaptlab.cli")) for m in mods)


def test_the_scan_finds_every_kind_of_forbidden_import(tmp_path):
    # The checker itself must be able to fail: a fake library module with each kind of import.
    fake = tmp_path / "adaptlab" / "meta" / "fake.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("import adaptlab.runner\n"
                    "from adaptlab import cli\n"
                    "def f():\n"
                    "    from ..experiments import registry\n"
                    "    import importlib\n"
                    "    importlib.import_module('adaptlab.runner')\n"
                    "from . import maml\n")
    hits = [m for _, m in imported_modules(fake, root=tmp_path) if _is_forbidden(m)]
    assert hits == ["adaptlab.runner", "adaptlab.cli", "adaptlab.experiments", "adaptlab.experiments.registry",
                    "adaptlab.runner"]


@pytest.mark.parametrize("path", library_modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_library_module_does_not_import_the_application_layer(path):
    bad = [f"line {line}: {mod}" for line, mod in imported_modules(path) if _is_forbidden(mod)]
    assert not bad, (f"{path.relative_to(SRC)} is a library module and must not import the runner, the CLI or "
                     f"the experiments: {'; '.join(bad)}")
