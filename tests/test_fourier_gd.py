"""K-step gradient-descent inner loops and the fourier-gd studies: oracles, gradients, reduced reproductions."""

from __future__ import annotations

import pytest
import torch

from adaptlab.experiments.fourier_gd import EXPERIMENTS
from adaptlab.inner.gd import gd_weighted, logistic_point_loss

from conftest import assert_close
from helpers import cli

EXP = {e.name: e for e in EXPERIMENTS}


def _problem(T=3, n=7, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    phi = torch.randn(T, n, d, generator=g, dtype=torch.float64)
    c = torch.rand(d, generator=g, dtype=torch.float64) + 0.5
    y = torch.randn(T, n, generator=g, dtype=torch.float64)
    return phi, c, y


@pytest.mark.parametrize("loss, wd", [("squared", 0.0), ("squared", 1e-2), ("logistic", 1e-5),
                                      ("logistic", 0.1)])
def test_gd_equals_torch_sgd_per_task(loss, wd):
    """Oracle: each task alone, beta = 0, torch.optim.SGD(weight_decay=wd) on the autograd mean loss."""
    phi, c, y = _problem()
    if loss == "logistic":
        y = torch.where(y >= 0, 1.0, -1.0).to(y)
    beta, alpha = gd_weighted(phi, c, y, steps=4, lr=0.3, loss=loss, weight_decay=wd)
    for t in range(3):
        b = torch.zeros(5, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.SGD([b], lr=0.3, weight_decay=wd)
        for _ in range(4):
            opt.zero_grad()
            pred = (phi[t] * c) @ b
            err = ((pred - y[t]) ** 2).mean() if loss == "squared" else logistic_point_loss(pred, y[t]).mean()
            err.backward()
            opt.step()
        assert_close(beta[t], b.detach())
        assert_close(alpha[t], c * b.detach())


def test_meta_gradient_through_the_steps_passes_gradcheck():
    phi, c, y = _problem(T=2, n=4, d=3)
    for loss in ("squared", "logistic"):
        yy = torch.where(y >= 0, 1.0, -1.0).to(y) if loss == "logistic" else y

        def fn(cc, yy=yy, loss=loss):
            return gd_weighted(phi, cc, yy, steps=3, lr=0.2, loss=loss, weight_decay=1e-3)[1]

        cc = c.clone().requires_grad_()
        assert torch.autograd.gradcheck(fn, (cc,))
        assert torch.autograd.gradgradcheck(fn, (cc,))


def test_zero_steps_give_zero_and_one_step_lowers_the_inner_loss():
    phi, c, y = _problem()
    assert torch.equal(gd_weighted(phi, c, y, 0, 0.1)[1], torch.zeros(3, 5, dtype=torch.float64))
    beta, _ = gd_weighted(phi, c, y, 1, 0.05)
    A = phi * c
    before = (y ** 2).mean(-1)
    after = ((torch.einsum("tnd,td->tn", A, beta) - y) ** 2).mean(-1)
    assert (after < before).all()
    with pytest.raises(ValueError, match="steps"):
        gd_weighted(phi, c, y, -1, 0.1)


@pytest.mark.parametrize("name", ["fourier-gd", "fourier-gd-1step"])
def test_reduced_run_meta_learning_beats_all_ones_weights(tmp_path, name):
    exp = EXP[name]
    cfg = exp.config(["eval.num_sizes=4", "eval.every=60"], quick=True)
    res = exp.run(cfg, tmp_path, resume=False)  # the study itself; figures are the contract test's job
    i = res["sizes"].index(cfg.task.n_inner)
    meta, init = res["curves"]["meta"]["mean"][i], res["curves"]["init"]["mean"][i]
    assert meta < 0.6 * init, (meta, init)
    c = torch.tensor(res["feature_weights"]).abs()
    on_s = torch.zeros_like(c, dtype=torch.bool)
    on_s[cfg.task.support] = True
    assert c[on_s].min() > c[~on_s].max()  # the true support carries the largest weights


@pytest.mark.parametrize("bad, key", [("inner.steps=-1", "inner.steps"), ("inner.lr=0", "inner.lr"),
                                      ("task.d=100", "task.d")])
def test_bad_configs_exit_2(tmp_path, bad, key):
    code, _, err = cli("run", "fourier-gd", "--quick", "--set", bad, "--out", str(tmp_path / "r"))
    assert code == 2 and key in err and len(err.strip().splitlines()) == 1
