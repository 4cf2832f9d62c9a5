"""The CLI: listing, showing, and bad input refused with exit code 2 and one clear line."""

from __future__ import annotations

import pytest

from adaptlab.experiments import registry

from helpers import cli

BAD = [
    (["run", "fourier-closed-form", "--set", "task.d=500"], "task.d=500"),
    (["run", "fourier-closed-form", "--set", "task.support=[]"], "task.support"),
    (["run", "fourier-closed-form", "--set", "task.support=5,600"], "task.support"),
    (["run", "fourier-closed-form", "--set", "task.n_inner=0"], "task.n_inner"),
    (["run", "fourier-closed-form", "--set", "eval.num_tasks=-3"], "eval.num_tasks"),
    (["run", "fourier-closed-form", "--set", "train.steps=ten"], "train.steps"),
    (["run", "fourier-closed-form", "--set", "train.optimizer=rmsprop"], "train.optimizer"),
    (["run", "fourier-closed-form", "--set", "train.stepz=3"], "train.stepz"),
    (["run", "fourier-closed-form", "--set", "meta.steps=3"], "renamed 'train.steps'"),
    (["run", "fourier-closed-form", "--set", "task"], "malformed"),
    (["run", "fourier-closed-form", "--set", "task=3"], "section"),
    (["run", "fourier-closed-form", "--device", "cuda:x"], "device"),
    (["run", "fourier-closed-fom"], "fourier-closed-form"),
    (["run", "alias-two-feature", "--set", "lr=-1"], "lr"),
    (["frobnicate"], "invalid choice"),
]


@pytest.mark.parametrize("argv,needle", BAD)
def test_bad_input_exits_2_with_one_line(argv, needle, tmp_path):
    code, out, err = cli(*argv, "--out", str(tmp_path / "o")) if argv[0] == "run" else cli(*argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err
    assert not (tmp_path / "o" / "results.json").exists()


def test_unwritable_out_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = cli("run", "alias-two-feature", "--quick", "--out", str(blocker / "sub"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--out" in err


def test_finished_run_is_not_overwritten_and_show_works(tmp_path):
    out = tmp_path / "run"
    code, stdout, _ = cli("run", "alias-two-feature", "--quick", "--out", str(out))
    assert code == 0 and "results.json" in stdout and "alias.png" in stdout
    before = (out / "results.json").read_bytes()
    code, _, err = cli("run", "alias-two-feature", "--quick", "--out", str(out))
    assert code == 2 and "already holds a finished run" in err
    assert (out / "results.json").read_bytes() == before
    code, stdout, _ = cli("show", str(out))
    assert code == 0 and "alias-two-feature" in stdout and "alias.png" in stdout
    code, _, err = cli("show", str(tmp_path / "nothing"))
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_resume_refuses_a_different_config(tmp_path):
    out = tmp_path / "run"
    assert cli("run", "alias-two-feature", "--quick", "--out", str(out))[0] == 0
    code, _, err = cli("run", "alias-two-feature", "--resume", "--seed", "3", "--out", str(out))
    assert code == 2 and "--resume" in err
    code, stdout, _ = cli("run", "alias-two-feature", "--resume", "--out", str(out))
    assert code == 0 and "already finished" in stdout


def test_list_names_every_experiment_once():
    code, out, _ = cli("list")
    assert code == 0
    names = [line.split()[0] for line in out.strip().splitlines()]
    assert names == list(registry()) and len(set(names)) == len(names)


def test_overrides_are_typed():
    from adaptlab.experiments import get

    cfg = get("fourier-closed-form").config(["task.support=1..3", "train.lr=0.5", "task.x=uniform", "seed=3"])
    assert cfg.task.support == [1, 2, 3] and cfg.train.lr == 0.5 and cfg.task.x == "uniform" and cfg.seed == 3


def test_only_rank_zero_writes_the_run_folder(tmp_path, monkeypatch):
    from adaptlab.experiments import get
    from adaptlab.runner import run_experiment

    exp = get("alias-two-feature")
    monkeypatch.setenv("RANK", "1")  # as torchrun sets it on the second process
    res = run_experiment(exp, exp.config(quick=True), tmp_path / "r1")
    assert res.results["final_c"] and list((tmp_path / "r1").iterdir()) == []
    monkeypatch.setenv("RANK", "0")
    run_experiment(exp, exp.config(quick=True), tmp_path / "r0")
    assert (tmp_path / "r0" / "results.json").exists() and (tmp_path / "r0" / "config.json").exists()
