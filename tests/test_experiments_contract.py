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
