"""Every registered experiment: its quick form runs through the CLI and writes a valid run folder."""

from __future__ import annotations

import json

import pytest

from adaptlab.config import from_dict
from adaptlab.experiments import registry

from helpers import cli


@pytest.mark.parametrize("name", list(registry()))
def test_quick_form_writes_a_valid_run_folder(name, tmp_path):
    out = tmp_path / name
    code, stdout, err = cli("run", name, "--quick", "--out", str(out))
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    assert isinstance(results, dict) and results
    cfg = json.loads((out / "config.json").read_text())
    from_dict(registry()[name].config_cls, cfg)  # the saved config round-trips
    assert (out / "summary.md").read_text().strip()
    assert list(out.glob("*.png")), "every experiment draws at least one figure"
    assert not list(out.glob("checkpoint*")) and not list(out.glob(".*.tmp"))


@pytest.mark.parametrize("name", ["prune-mnist", "quantize-mnist", "mtl-multimnist", "omniglot-protonet"])
def test_the_same_seed_gives_a_byte_identical_results_json(name, tmp_path):
    """The experiments that measure time keep it in timings.json, so results.json repeats byte for byte."""
    for run in ("a", "b"):
        code, _, err = cli("run", name, "--quick", "--out", str(tmp_path / run))
        assert code == 0, err
    assert (tmp_path / "a" / "results.json").read_bytes() == (tmp_path / "b" / "results.json").read_bytes()
    assert json.loads((tmp_path / "a" / "timings.json").read_text())["wall_seconds"] > 0
