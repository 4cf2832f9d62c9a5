"""Sinusoid tasks and the sinusoid-maml experiment: sampling, the MAML-vs-pretrained finding, resume, CLI."""

from __future__ import annotations

import math

import pytest
import torch

from adaptlab.experiments.sinusoid import EXPERIMENTS
from adaptlab.io import Checkpoint
from adaptlab.tasks.sinusoid import SinusoidTasks

from helpers import cli


def test_sinusoid_tasks_follow_the_paper_distribution():
    b = SinusoidTasks().sample(2000, torch.Generator().manual_seed(0), n_support=5, n_query=7)
    assert b.support_x.shape == (2000, 5, 1) and b.query_x.shape == (2000, 7, 1)
    assert 0.1 <= b.amplitude.min() and b.amplitude.max() <= 5.0
    assert 0.0 <= b.phase.min() and b.phase.max() <= math.pi
    assert -5.0 <= b.support_x.min() and b.query_x.max() <= 5.0
    want = b.amplitude[:, None, None] * torch.sin(b.query_x - b.phase[:, None, None])
    torch.testing.assert_close(b.query_y, want)
    assert abs(b.amplitude.mean() - 2.55) < 0.1  # U[0.1, 5] has mean 2.55
    again = SinusoidTasks(n_support=5, n_query=7).sample(2000, torch.Generator().manual_seed(0))
    assert torch.equal(again.support_y, b.support_y)


def test_maml_beats_the_jointly_pretrained_baseline_after_adaptation(tmp_path):
    exp = EXPERIMENTS[0]
    cfg = exp.config(["shots=10", "methods=maml,pretrained", "train.steps=400", "eval_tasks=200",
                      "plot_tasks=1"])
    res = exp.run(cfg, tmp_path, resume=False)["shots"]["10"]  # the study; figures: the contract test
    maml, pre = res["maml"], res["pretrained"]
    # after 10 test-time steps MAML is better, beyond both confidence intervals
    assert maml["mse"][-1] + maml["ci95"][-1] < pre["mse"][-1] - pre["ci95"][-1]
    # adaptation helps MAML a lot more than the pretrained network
    assert maml["mse"][0] - maml["mse"][-1] > 1.5 * (pre["mse"][0] - pre["mse"][-1])


def test_resume_gives_the_same_results_as_an_uninterrupted_run(tmp_path, monkeypatch):
    exp = EXPERIMENTS[0]
    cfg = exp.config(["shots=5", "methods=fomaml,pretrained", "train.steps=40", "train.checkpoint_every=15",
                      "eval_tasks=20", "eval_steps=3", "plot_tasks=1"])
    (tmp_path / "full").mkdir()
    (tmp_path / "cut").mkdir()
    full = exp.run(cfg, tmp_path / "full", resume=False)
    saves = {"n": 0}
    original = Checkpoint.save

    def crash_on_second_save(self, state):
        original(self, state)
        saves["n"] += 1
        if saves["n"] == 2:  # inside the first model's training, after a checkpoint
            raise KeyboardInterrupt

    monkeypatch.setattr(Checkpoint, "save", crash_on_second_save)
    with pytest.raises(KeyboardInterrupt):
        exp.run(cfg, tmp_path / "cut", resume=False)
    monkeypatch.setattr(Checkpoint, "save", original)
    state = Checkpoint(tmp_path / "cut").load()
    assert state["current"]["stage"] == "fomaml-5" and state["current"]["state"]["step"] == 30 and not state["done"]
    assert exp.run(cfg, tmp_path / "cut", resume=True) == full


@pytest.mark.parametrize("bad, key", [("shots=0", "shots"), ("methods=maml,reptile", "methods"),
                                      ("inner_lr=-1", "inner_lr"), ("eval_tasks=1", "eval_tasks"),
                                      ("train.lr=0", "train.lr"), ("meta_steps=10", "train.steps")])
def test_bad_configs_exit_2_with_a_clear_line(tmp_path, bad, key):
    code, _, err = cli("run", "sinusoid-maml", "--quick", "--set", bad, "--out", str(tmp_path / "r"))
    assert code == 2
    assert key in err and len(err.strip().splitlines()) == 1
