"""Every docstring example and every Python block of README.md and docs/*.md runs."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import adaptlab

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(m.name for m in pkgutil.walk_packages(adaptlab.__path__, "adaptlab.") if m.name != "adaptlab.__main__")
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name, globs=vars(module).copy()):
        runner.run(test, out=lambda s: None)
    failed, attempted = runner.summarize(verbose=False)
    if failed:  # run again, printing the report, so the failure shows what differed
        report: list[str] = []
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        for test in finder.find(module, name, globs=vars(module).copy()):
            runner.run(test, out=report.append)
        pytest.fail(f"{failed} of {attempted} doctest examples failed in {name}:\n" + "".join(report))


def test_no_skipped_examples():
    """``+SKIP`` hides examples that cannot run; they must run instead."""
    src = ROOT / "src" / "adaptlab"
    skipping = [str(p.relative_to(src)) for p in src.rglob("*.py") if "doctest: +SKIP" in p.read_text()]
    assert not skipping, f"docstring examples skipped in {skipping}"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), re.S | re.M)


@pytest.mark.parametrize("path", [p for p in DOCS if python_blocks(p)], ids=lambda p: p.name)
def test_markdown_python_blocks_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # blocks that write files write them here
    namespace: dict = {"__name__": "__docs__"}
    for i, block in enumerate(python_blocks(path)):
        try:
            exec(compile(block, f"{path.name}[block {i}]", "exec"), namespace)
        except Exception as e:  # noqa: BLE001
            pytest.fail(f"{path.name}, Python block {i}: {type(e).__name__}: {e}")
