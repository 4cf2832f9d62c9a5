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
    lines = out.strip().splitlines()
    assert lines[0].split()[:3] == ["experiment", "full", "quick"]
    names = [line.split()[0] for line in lines[1:len(registry()) + 1]]
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
    assert res.results["final_c"] and not (tmp_path / "r1").exists()  # rank 0 creates it
    monkeypatch.setenv("RANK", "0")
    run_experiment(exp, exp.config(quick=True), tmp_path / "r0")
    assert (tmp_path / "r0" / "results.json").exists() and (tmp_path / "r0" / "config.json").exists()


def test_a_second_run_on_a_locked_folder_is_refused_naming_the_pid(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".lock").write_text(f"{holder.pid}\n")
        code, _, err = cli("run", "alias-two-feature", "--quick", "--out", str(out))
        assert code == 2 and f"pid {holder.pid}" in err and len(err.strip().splitlines()) == 1
        assert not (out / "config.json").exists()
    finally:
        holder.kill()
        holder.wait()
    code, _, err = cli("run", "alias-two-feature", "--quick", "--out", str(out))  # stale lock: taken over
    assert code == 0, err
    assert (out / "results.json").exists() and not (out / ".lock").exists()


def test_a_failed_start_leaves_nothing_behind(tmp_path, monkeypatch):
    from adaptlab.experiments import get

    exp = get("alias-two-feature")

    def boom(cfg, out_dir, resume=False):
        raise RuntimeError("broken before the first checkpoint")

    monkeypatch.setattr(exp, "run", boom)
    out = tmp_path / "new" / "run"
    code, _, err = cli("run", "alias-two-feature", "--quick", "--out", str(out))
    assert code == 1 and "unexpected RuntimeError" in err and "ADAPTLAB_DEBUG" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "new").exists()
    existing = tmp_path / "mine"
    existing.mkdir()
    (existing / "notes.txt").write_text("keep me")
    code, _, _ = cli("run", "alias-two-feature", "--quick", "--out", str(existing))
    assert code == 1 and sorted(p.name for p in existing.iterdir()) == ["notes.txt"]


def test_missing_device_leaves_nothing_behind(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    out = tmp_path / "run"
    code, _, err = cli("run", "alias-two-feature", "--quick", "--device", "cuda", "--out", str(out))
    assert code == 2 and "cuda" in err and not out.exists()


@pytest.mark.parametrize("content", [b"[1, 2]", b"\x89PNG\x00\xff", None])
def test_resume_with_a_damaged_config_is_one_line(tmp_path, content):
    out = tmp_path / "run"
    out.mkdir()
    if content is None:
        (out / "config.json").mkdir()
    else:
        (out / "config.json").write_bytes(content)
    code, _, err = cli("run", "alias-two-feature", "--resume", "--out", str(out))
    assert code == 2 and len(err.strip().splitlines()) == 1, err


def test_an_overlong_out_name_is_one_line(tmp_path):
    code, _, err = cli("run", "alias-two-feature", "--quick", "--out", str(tmp_path / ("x" * 300)))
    assert code == 2 and "255" in err and len(err.strip().splitlines()) == 1


def test_show_lists_the_runs_of_a_folder_of_runs(tmp_path):
    assert cli("run", "alias-two-feature", "--quick", "--out", str(tmp_path / "a"))[0] == 0
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.json").write_text("{}")
    code, out, err = cli("show", str(tmp_path))
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0].split()[:3] == ["a", "finished", "alias-two-feature"] and lines[1].split() == ["b", "unfinished"]


@pytest.mark.parametrize("name", ["results.json", "summary.md"])
@pytest.mark.parametrize("damage", ["binary", "folder"])
def test_show_of_a_damaged_file_is_one_line(tmp_path, name, damage):
    (tmp_path / "results.json").write_text("{}")
    (tmp_path / name).unlink(missing_ok=True)
    if damage == "folder":
        (tmp_path / name).mkdir()
    else:
        (tmp_path / name).write_bytes(b"\xff\xfe\x00\x89")
    code, _, err = cli("show", str(tmp_path))
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1 and name in err


def test_non_finite_results_are_a_divergence_not_a_finished_run(tmp_path, monkeypatch):
    from adaptlab.experiments import get

    exp = get("alias-two-feature")
    monkeypatch.setattr(exp, "run", lambda cfg, out_dir, resume=False: {"loss": [0.1, float("nan")]})
    code, _, err = cli("run", "alias-two-feature", "--quick", "--out", str(tmp_path / "r"))
    assert code == 2 and "diverged" in err and "loss[1]=nan" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_results_json_is_strict(tmp_path):
    import json

    from adaptlab.io import atomic_write_json

    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "r.json", {"x": float("inf")})
    assert not list(tmp_path.iterdir())
    atomic_write_json(tmp_path / "r.json", {"x": 1.5})
    assert json.loads((tmp_path / "r.json").read_text(), parse_constant=lambda c: 1 / 0) == {"x": 1.5}


def test_a_quick_summary_says_it_is_a_smoke_test(tmp_path):
    assert cli("run", "alias-two-feature", "--quick", "--out", str(tmp_path / "q"))[0] == 0
    assert "Quick form" in (tmp_path / "q" / "summary.md").read_text()


@pytest.mark.parametrize("n", ["0", "-1", "100000"])
def test_threads_out_of_range_are_refused(tmp_path, n):
    code, _, err = cli("run", "alias-two-feature", "--quick", "--threads", n, "--out", str(tmp_path / "t"))
    assert code == 2 and "--threads" in err and not (tmp_path / "t").exists()


def test_timings_are_kept_out_of_results_json(tmp_path, monkeypatch):
    import json

    from adaptlab.experiments import get

    exp = get("alias-two-feature")
    monkeypatch.setattr(exp, "run", lambda cfg, out_dir, resume=False: {"acc": 0.5, "timings": {"train_s": 1.25}})
    monkeypatch.setattr(exp, "figures", None)
    monkeypatch.setattr(exp, "summary", lambda results, cfg: f"trained in {results['timings']['train_s']} s")
    assert cli("run", "alias-two-feature", "--quick", "--out", str(tmp_path / "r"))[0] == 0
    assert json.loads((tmp_path / "r" / "results.json").read_text()) == {"acc": 0.5}
    timings = json.loads((tmp_path / "r" / "timings.json").read_text())
    assert timings["train_s"] == 1.25 and timings["wall_seconds"] >= 0
    assert "trained in 1.25 s" in (tmp_path / "r" / "summary.md").read_text()  # the summary still sees them
