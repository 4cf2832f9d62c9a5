"""``kill -9`` at a random moment after a checkpoint, then ``--resume``: the same results.json, byte for byte."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from helpers import cli

CASES = {
    "sinusoid-maml": ["--set", "train.checkpoint_every=10"],
    "omniglot-protonet": ["--set", "train.steps=16", "--set", "train.checkpoint_every=2",
                          "--set", "data.backgrounds=small1,small2"],
    "prune-mnist": ["--set", "train.checkpoint_every=5"],
    "mtl-toy": ["--set", "train.checkpoint_every=20"],
}


def _cmd(name: str, out, *extra: str) -> list[str]:
    return [sys.executable, "-m", "adaptlab", "run", name, "--quick", *CASES[name], "--threads", "1", "--out",
            str(out), *extra]


def _env() -> dict:
    return {**os.environ, "ADAPTLAB_PROGRESS": "0", "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize("name", list(CASES))
def test_kill_9_then_resume_gives_the_same_results(name, tmp_path):
    ref = tmp_path / "ref"
    code, _, err = cli(*_cmd(name, ref)[3:])  # the uninterrupted run, in this process
    assert code == 0, err
    rng = random.Random(name)  # fixed delays per experiment, so a failure reproduces
    for attempt in range(3):
        out = tmp_path / f"killed{attempt}"
        proc = subprocess.Popen(_cmd(name, out), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while not (out / "checkpoint.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.05) / (attempt + 1))  # somewhere after a checkpoint, maybe during a write
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if not (out / "results.json").exists():
            break  # killed mid-run, as intended
    else:
        pytest.fail(f"{name} finished before every kill; the test did not interrupt it")
    done = subprocess.run(_cmd(name, out, "--resume"), env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (out / "results.json").read_bytes() == (ref / "results.json").read_bytes()
    assert not (out / "checkpoint.pt").exists() and not (out / ".lock").exists()
    assert not list(out.glob(".*.tmp")), "a write torn by the kill was left behind"
