"""The closed-form feature-weight study: meta-gradient oracle, reduced reproduction, determinism, resume."""

from __future__ import annotations

import json

import pytest
import torch

from adaptlab.experiments import get
from adaptlab.io import Checkpoint
from adaptlab.meta.feature_weights import FeatureWeights, feature_weight_meta_loss
from adaptlab.runner import run_experiment
from adaptlab.tasks.fourier import FourierTasks

from conftest import assert_close

f64 = torch.float64


@pytest.mark.parametrize("x,reduction", [("grid", "sum"), ("uniform", "mean")])
def test_vectorized_meta_gradient_equals_per_task_loop(x, reduction):
    tasks = FourierTasks(d=41, support=[5, 6, 7, 8], x=x, n_support=12, n_query=20, noise=0.1)
    batch = tasks.sample(5, torch.Generator().manual_seed(3))
    c = (1 + 0.2 * torch.randn(41, dtype=f64, generator=torch.Generator().manual_seed(4))).requires_grad_()
    loss, _ = feature_weight_meta_loss({"c": c}, {}, batch, features=tasks.features, reduction=reduction)
    (g_fast,) = torch.autograd.grad(loss, c)
    # Naive reference: one task at a time, a generic pseudo-inverse, Python accumulation.
    losses = []
    for t in range(5):
        A = tasks.features(batch.support_x[t]) * c
        alpha = c * (torch.linalg.pinv(A) @ batch.support_y[t])
        pred = tasks.features(batch.query_x[t]) @ alpha
        losses.append(((pred - batch.query_y[t]) ** 2).sum())
    total = sum(losses)
    total = total if reduction == "sum" else total / (5 * 20)
    (g_loop,) = torch.autograd.grad(total, c)
    assert_close(g_fast, g_loop, rtol=1e-8, atol=1e-10)


def _aliases(d: int, n: int, support_freqs=(3, 4, 5)) -> list[int]:
    """Feature indices whose frequency aliases with a true frequency on the n-point grid."""
    ks = [k for k in range(1, (d - 1) // 2 + 1) if k not in support_freqs and min(k % n, n - k % n) in support_freqs]
    return sorted([2 * k - 1 for k in ks] + [2 * k for k in ks])


def _quick(name, tmp_path, **fields):
    exp = get(name)
    return run_experiment(exp, exp.config(quick=True, **fields), tmp_path / name).results


def _neighbours(curve, n):
    i = curve["n"].index(n)
    return curve["mean"][i], min(curve["mean"][i - 1], curve["mean"][i + 1])


def test_reduced_run_reproduces_the_grid_findings(tmp_path):
    r = _quick("fourier-closed-form", tmp_path)
    meta, init = r["curves"]["meta"], r["curves"]["init"]
    at, nb = _neighbours(meta, 32)
    assert at < _neighbours(init, 32)[0] / 10  # meta-learned weights beat all-ones at n_inner
    assert sum(meta["mean"]) < sum(init["mean"][: len(meta["mean"])])
    assert at < nb / 5  # a sharp downward spike of the test error exactly at n = n_inner
    c = torch.tensor(r["feature_weights"]).abs()
    al = _aliases(501, 32)
    others = torch.ones(501, dtype=torch.bool)
    others[list(range(5, 11)) + al] = False
    assert c[5:11].min() > 2.0  # true features grow
    assert c[al].max() < 0.6  # their aliases on the 32-point grid are driven toward zero
    assert (c[others] - 1).abs().max() < 0.05  # unrelated weights stay near 1
    _check_results_format(r)


def test_reduced_run_with_uniform_points_has_no_spike(tmp_path):
    r = _quick("fourier-closed-form-uniform", tmp_path)
    meta, init = r["curves"]["meta"], r["curves"]["init"]
    at, nb = _neighbours(meta, 32)
    assert at > nb / 3  # no dip at n_inner: the curve is smooth there
    assert at < _neighbours(init, 32)[0]  # meta-learning still helps
    c = torch.tensor(r["feature_weights"]).abs()
    assert c[5:11].min() > 2.0


def _check_results_format(r):
    for m in ("meta", "init", "oracle", "zero"):
        cur = r["curves"][m]
        assert len(cur["n"]) == len(cur["mean"]) == len(cur["p10"]) == len(cur["p90"]) == len(r["sizes"])
        assert all(lo <= hi for lo, hi in zip(cur["p10"], cur["p90"]))
    assert [h["step"] for h in r["history"]] == [0, 25, 50]
    assert len(r["feature_weights"]) == 501 and r["history"][0]["feature_weights"] == [1.0] * 501
    assert {32, 5, 6, 7} <= set(r["sizes"])


def test_same_seed_same_results_and_resume_is_exact(tmp_path, monkeypatch):
    exp = get("fourier-closed-form")
    cfg = exp.config(["train.steps=30", "eval.every=10", "train.checkpoint_every=10", "eval.num_sizes=8",
                      "task.d=101"])
    run_experiment(exp, cfg, tmp_path / "a")
    run_experiment(exp, cfg, tmp_path / "b")
    a = (tmp_path / "a" / "results.json").read_bytes()
    assert a == (tmp_path / "b" / "results.json").read_bytes()

    saves = {"n": 0}
    original = Checkpoint.save

    def interrupt_after_first_checkpoint(self, state):
        original(self, state)
        saves["n"] += 1
        if saves["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(Checkpoint, "save", interrupt_after_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(exp, cfg, tmp_path / "c")
    monkeypatch.setattr(Checkpoint, "save", original)
    assert not (tmp_path / "c" / "results.json").exists()  # nothing half-written
    assert (tmp_path / "c" / "checkpoint.pt").exists()
    assert torch.load(tmp_path / "c" / "checkpoint.pt", weights_only=True)["state"]["step"] == 20
    run_experiment(exp, cfg, tmp_path / "c", resume=True)
    assert (tmp_path / "c" / "results.json").read_bytes() == a
    assert not (tmp_path / "c" / "checkpoint.pt").exists()
    assert json.loads(a)["history"][-1]["step"] == 30


def test_overdetermined_shortcut_equals_the_weighted_solve():
    from adaptlab.experiments.fourier import weighted_fit
    from adaptlab.tasks.fourier import fourier_features, sample_x

    g = torch.Generator().manual_seed(5)
    phi = fourier_features(sample_x("uniform", 1, 60, g)[0], 21)  # n = 60 > d = 21
    y = torch.randn(4, 60, dtype=f64, generator=g)
    c = 0.5 + torch.rand(21, dtype=f64, generator=g)
    fast = weighted_fit(c)(phi, y)
    for _ in range(2):  # second call hits the cached QR
        assert_close(weighted_fit(c)(phi, y), fast)
    ref = torch.stack([c * (torch.linalg.pinv(phi * c) @ y[t]) for t in range(4)])
    assert_close(fast, ref, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_feature_weights_fit_twice_with_one_optimizer_equals_fit_once_and_state_round_trips(optimizer):
    tasks = FourierTasks(d=21, support=[3, 4], x="uniform", n_support=8, n_query=16)
    once = FeatureWeights(21, optimizer=optimizer, lr=1e-2)
    losses = once.fit(tasks, 6, 3, torch.Generator().manual_seed(0))
    twice = FeatureWeights(21, optimizer=optimizer, lr=1e-2)
    opt, gen = twice.make_optimizer(), torch.Generator().manual_seed(0)
    halves = twice.fit(tasks, 3, 3, gen, optimizer=opt) + twice.fit(tasks, 3, 3, gen, optimizer=opt)
    assert halves == losses and torch.equal(twice.c, once.c)
    assert not torch.equal(once.c, torch.ones_like(once.c))  # the steps moved c
    loaded = FeatureWeights(21)
    loaded.load_state_dict(once.state_dict())
    batch = tasks.sample(3, torch.Generator().manual_seed(1))
    assert torch.equal(loaded.loss(batch)[0], once.functional()(once.params(), once.buffers(), batch)[0])
    assert loaded.parameters()[0] is loaded.c and "opt" not in once.state_dict()  # no optimizer inside


def test_alias_labels_match_the_grid_identity():
    """A feature flagged as an alias takes the values of a support feature (up to sign) on the grid."""
    from adaptlab.experiments.fourier import feature_name, suppressed_features
    from adaptlab.tasks.fourier import fourier_features, grid_points

    d, n, support = 201, 32, [5, 6]  # sin 3, cos 3
    phi = fourier_features(grid_points(n), d)  # (n, d)
    c = torch.ones(d)
    c[torch.arange(1, d)] = torch.linspace(1, 2, d - 1)  # every weight distinct, all above the probes
    probes = [57, 58, 59, 60]  # sin 29, cos 29 (29 = -3 mod 32: aliases), sin 30, cos 30 (not)
    c[probes] = torch.tensor([0.1, 0.2, 0.3, 0.4])
    flagged = {f["index"]: f["aliases_support"] for f in suppressed_features(c, support, n, grid=True, top=4)}
    assert flagged == {57: True, 58: True, 59: False, 60: False}
    for i, alias in flagged.items():
        same = any(torch.allclose(phi[:, i], s * phi[:, j], atol=1e-9) for j in support for s in (1, -1))
        assert same == alias, (i, feature_name(i))
    assert not any(f["aliases_support"] for f in suppressed_features(c, support, n, grid=False, top=4))
