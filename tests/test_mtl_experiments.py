"""mtl-multimnist and mtl-toy: tiny runs, exact resume, and clear errors (exit 2) for bad configs."""

from __future__ import annotations

import json

import pytest

from adaptlab.experiments import get
from adaptlab.io import Checkpoint
from adaptlab.runner import run_experiment

from helpers import cli

TINY_MM = {"data.n_train": 192, "data.n_test": 64, "train.epochs": 2, "train.batch_size": 64, "seeds": [0],
           "methods": ["single", "gradnorm", "pcgrad"], "pareto_weights": [0.5], "cka_examples": 64,
           "probe_examples": 32, "probe_epochs": 3}


def _strip_times(obj):
    if isinstance(obj, dict):
        return {k: _strip_times(v) for k, v in obj.items() if k not in ("train_seconds_per_epoch", "seconds")}
    if isinstance(obj, list):
        return [_strip_times(v) for v in obj]
    return obj


def _check_multimnist_results(res, folder):
    assert set(res["methods"]) == {"single", "gradnorm", "pcgrad"}
    assert res["methods"]["single"]["delta_m"] == 0.0
    for e in res["methods"].values():
        assert 0 <= e["left"] <= 100 and 0 <= e["right"] <= 100
    assert len(res["pareto"]) == 1 and res["selection"]["left"]["chosen"] in res["selection"]["left"]["cka"]
    assert all(-1 <= c <= 1 for c in res["conflict"]["pcgrad"]["cosine"])
    assert {p.name for p in folder.glob("*.png")} == {"pareto.png", "conflict.png", "cka.png"}


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("name,overrides,kill_after", [
    ("mtl-multimnist", TINY_MM, 2),
    ("mtl-toy", {"train.steps": 60, "train.checkpoint_every": 50, "record_every": 1, "grid": 30,
                 "problems": ["pcgrad"]}, 1),
])
def test_resume_matches_uninterrupted_run(tmp_path, monkeypatch, name, overrides, kill_after):
    exp = get(name)
    cfg = exp.config(quick=True, **overrides)
    full = run_experiment(exp, cfg, tmp_path / "full").results
    if name == "mtl-multimnist":
        _check_multimnist_results(full, tmp_path / "full")

    calls = {"n": 0}
    real_save = Checkpoint.save

    def save_then_die(self, state):
        real_save(self, state)
        calls["n"] += 1
        if calls["n"] == kill_after:
            raise _Interrupt

    monkeypatch.setattr(Checkpoint, "save", save_then_die)
    with pytest.raises(_Interrupt):
        run_experiment(exp, cfg, tmp_path / "cut")
    monkeypatch.setattr(Checkpoint, "save", real_save)
    resumed = run_experiment(exp, cfg, tmp_path / "cut", resume=True).results
    assert _strip_times(json.loads(json.dumps(resumed))) == _strip_times(json.loads(json.dumps(full)))


@pytest.mark.parametrize("argv,needle", [
    (["mtl-multimnist", "--set", "methods=equal,bogus"], "methods"),
    (["mtl-multimnist", "--set", "train.epochs=0"], "train.epochs"),
    (["mtl-multimnist", "--set", "train.optimizer=lbfgs"], "train.optimizer"),
    (["mtl-multimnist", "--set", "pareto_weights=0,1"], "pareto_weights"),
    (["mtl-multimnist", "--set", "data.n_train=70000"], "data.n_train"),
    (["mtl-toy", "--set", "problems=himmelblau"], "problems"),
    (["mtl-toy", "--set", "methods=adam"], "methods"),
    (["mtl-toy", "--set", "train.steps=-1"], "train.steps"),
    (["mtl-toy", "--set", "lr=0.1"], "renamed 'train.lr'"),
])
def test_bad_configs_exit_2(tmp_path, argv, needle):
    code, _, err = cli("run", *argv, "--out", str(tmp_path / "x"))
    assert code == 2
    assert needle in err and err.count("\n") == 1
