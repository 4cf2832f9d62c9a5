"""Batched logistic regression against naive references, and the fourier-classification study."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from adaptlab.experiments.fourier_classification import EXPERIMENTS
from adaptlab.inner.logistic import logistic_objective, logistic_regression
from adaptlab.io import Checkpoint

from conftest import assert_close
from helpers import cli

EXP = EXPERIMENTS[0]


def _naive_newton(A: torch.Tensor, y: torch.Tensor, lam: float, iters: int = 200) -> torch.Tensor:
    """One task, primal, explicit Hessian, Newton step halved until the objective decreases."""
    n, d = A.shape
    beta = torch.zeros(d, dtype=A.dtype)

    def f(b):
        return torch.nn.functional.softplus(-y * (A @ b)).mean() + lam / 2 * b @ b

    for _ in range(iters):
        m = A @ beta
        p = torch.sigmoid(m)
        g = A.T @ (-y * torch.sigmoid(-y * m)) / n + lam * beta
        H = A.T @ (A * (p * (1 - p) / n)[:, None]) + lam * torch.eye(d, dtype=A.dtype)
        step = torch.linalg.solve(H, g)
        t = 1.0
        while f(beta - t * step) > f(beta) and t > 1e-12:
            t /= 2
        if f(beta - t * step) <= f(beta):
            beta = beta - t * step
    return beta


@pytest.mark.parametrize("n, d, lam, shared", [(40, 6, 1e-3, True), (40, 6, 1e-3, False), (8, 30, 1e-3, True),
                                               (12, 30, 1e-5, True), (30, 12, 1e-5, False)])
def test_batched_newton_matches_naive_newton_and_scipy(n, d, lam, shared):
    from scipy.optimize import minimize

    g = torch.Generator().manual_seed(n * d)
    A = torch.randn(n, d, generator=g, dtype=torch.float64) if shared else \
        torch.randn(3, n, d, generator=g, dtype=torch.float64)
    y = torch.where(torch.randn(3, n, generator=g, dtype=torch.float64) >= 0, 1.0, -1.0).to(torch.float64)
    beta = logistic_regression(A, y, ridge=lam)
    for t in range(3):
        At = A if shared else A[t]
        assert_close(beta[t], _naive_newton(At, y[t], lam), rtol=1e-7, atol=1e-8)  # two iterative solvers

        An, yn = At.numpy(), y[t].numpy()

        def fun(b, An=An, yn=yn):
            m = An @ b
            return (np.logaddexp(0, -yn * m).mean() + lam / 2 * b @ b,
                    An.T @ (-yn / (1 + np.exp(yn * m))) / n + lam * b)

        ref = minimize(fun, np.zeros(d), jac=True, method="L-BFGS-B",
                       options={"gtol": 1e-13, "ftol": 1e-16, "maxiter": 100000, "maxcor": 50})
        ours = float(logistic_objective(At, y[t:t + 1], beta[t:t + 1], lam))
        assert ours <= ref.fun + 1e-12  # never worse than L-BFGS, to rounding


def test_separable_data_give_a_finite_perfect_separator_with_tiny_ridge():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(20, 50, generator=g, dtype=torch.float64)  # n < d: always separable
    y = torch.where(torch.randn(4, 20, generator=g, dtype=torch.float64) >= 0, 1.0, -1.0).to(torch.float64)
    beta = logistic_regression(A, y, ridge=1e-8)
    assert torch.isfinite(beta).all()
    assert ((beta @ A.T).sign() == y).all()
    m = beta @ A.T  # stationarity: A^T (-y sigmoid(-y m)) / n + lam beta = 0
    grad = (-y * torch.sigmoid(-y * m)) @ A / 20 + 1e-8 * beta
    assert grad.norm(dim=-1).max() < 1e-9 * max(1.0, float(beta.norm(dim=-1).max()))
    with pytest.raises(ValueError, match="ridge"):
        logistic_regression(A, y, ridge=0.0)


def test_reduced_run_meta_learning_beats_all_ones_and_larger_step_learns_more(tmp_path):
    cfg = EXP.config(quick=True)
    res = EXP.run(cfg, tmp_path, resume=False)  # the study itself; figures are the contract test's job
    small, large = res["runs"]["0.01"], res["runs"]["0.3"]
    i = small["curves"]["meta"]["n"].index(cfg.task.n_inner)
    err = {name: r["curves"]["meta"]["mean"][i] for name, r in (("0.01", small), ("0.3", large))}
    init = small["curves"]["init"]["mean"][i]
    assert err["0.01"] < init and err["0.3"] < init, (err, init)
    assert err["0.3"] < err["0.01"]

    def share(r):
        c = torch.tensor(r["feature_weights"])
        return float((c[cfg.task.support] ** 2).sum() / (c ** 2).sum())

    assert share(large) > 2 * share(small) > 2 * len(cfg.task.support) / cfg.task.d
    assert not any(tmp_path.glob("inner-lr-*"))  # per-step-size folders removed when done


def test_resume_after_an_interruption_in_the_second_step_size(tmp_path, monkeypatch):
    sets = ["task.d=11", "task.n_inner=8", "task.n_meta=16", "train.steps=8", "eval.every=4",
            "train.checkpoint_every=3", "eval.num_sizes=2", "eval.num_tasks=3", "eval.n_test=50", "eval.min_n=10"]
    (tmp_path / "full").mkdir()
    (tmp_path / "cut").mkdir()
    full = EXP.run(EXP.config(sets), tmp_path / "full", resume=False)
    calls = {"n": 0}
    original = Checkpoint.save

    def crash(self, state):
        original(self, state)
        calls["n"] += 1
        if calls["n"] == 3:  # the first step size saved twice and finished; crash in the second
            raise KeyboardInterrupt

    monkeypatch.setattr(Checkpoint, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        EXP.run(EXP.config(sets), tmp_path / "cut", resume=False)
    monkeypatch.setattr(Checkpoint, "save", original)
    assert (tmp_path / "cut" / "inner-lr-0.01" / "results.json").exists()
    resumed = EXP.run(EXP.config(sets), tmp_path / "cut", resume=True)
    assert json.dumps(resumed, sort_keys=True) == json.dumps(full, sort_keys=True)


@pytest.mark.parametrize("bad, key", [("inner.lrs=0", "inner.lrs"), ("eval.ridge=0", "eval.ridge"),
                                      ("flip_prob=0.7", "flip_prob"), ("inner.lrs=0.1,0.1", "inner.lrs")])
def test_bad_configs_exit_2(tmp_path, bad, key):
    code, _, err = cli("run", "fourier-classification", "--quick", "--set", bad, "--out", str(tmp_path / "r"))
    assert code == 2 and key in err and len(err.strip().splitlines()) == 1
