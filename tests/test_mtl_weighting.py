"""Task weightings: equal = summed loss, uncertainty's closed-form optimum, GradNorm's balancing, DWA."""

from __future__ import annotations

import math

import torch

from adaptlab.mtl.weighting import (
    DWA,
    EqualWeighting,
    FixedWeighting,
    GradNorm,
    UncertaintyWeighting,
    dwa_weights,
    gradnorm_objective,
    uncertainty_loss,
)

from conftest import assert_close


def _toy():
    torch.manual_seed(0)
    W = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    x = torch.randn(16, 4, dtype=torch.float64)
    z = x @ W.T
    return W, [(z[:, 0] - 1).pow(2).mean(), 5 * z[:, 1:].pow(2).mean()]


def test_equal_weighting_is_gradient_of_summed_loss():
    W, L = _toy()
    g = torch.autograd.grad(EqualWeighting(2).combine(L), W, retain_graph=True)[0]
    ref = sum(torch.autograd.grad(li, W, retain_graph=True)[0] for li in L)
    assert_close(g, ref)


def test_fixed_weighting():
    _, L = _toy()
    assert_close(FixedWeighting([0.25, 0.75]).combine(L).double(), 0.25 * L[0] + 0.75 * L[1],
                 rtol=1e-6)  # weights are stored in float32


def test_uncertainty_weights_reach_closed_form_optimum():
    L = torch.tensor([0.3, 2.0, 7.5], dtype=torch.float64)
    s = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([s], lr=1, max_iter=200, tolerance_grad=1e-14, tolerance_change=1e-16)

    def closure():
        opt.zero_grad()
        loss = uncertainty_loss(L, s)
        loss.backward()
        return loss

    opt.step(closure)
    assert_close(s.detach(), L.log(), rtol=1e-7, atol=1e-9)  # LBFGS stops at its own tolerance
    w = UncertaintyWeighting(3)
    with torch.no_grad():
        w.log_vars.copy_(L.log().float())
    assert_close(w.weights().double(), 1 / (2 * L), rtol=1e-6)  # float32 state


def test_gradnorm_objective_equalises_weighted_norms_when_rates_equal():
    norms = torch.tensor([1.0, 4.0], dtype=torch.float64)
    L = torch.tensor([1.0, 1.0], dtype=torch.float64)
    w = torch.tensor([1.0, 1.0], dtype=torch.float64, requires_grad=True)
    obj = gradnorm_objective(w, norms, L, L, alpha=1.5)
    g = torch.autograd.grad(obj, w)[0]
    # target = mean(w*norms) = 2.5 for both; task 0 is below (grow w0), task 1 above (shrink w1)
    assert g[0] < 0 and g[1] > 0
    assert_close(obj, torch.tensor(abs(1 - 2.5) + abs(4 - 2.5), dtype=torch.float64))


def test_gradnorm_moves_weights_towards_balance_and_keeps_sum():
    W, L = _toy()
    gn = GradNorm(2, alpha=0.0, lr=0.05, device="cpu")
    for _ in range(30):
        W_, L_ = _toy()
        gn.combine(L_, shared_weight=W_)
    n = torch.stack([torch.autograd.grad(li, W, retain_graph=True)[0].norm() for li in L])
    w = gn.weights()
    assert_close(w.sum().double(), torch.tensor(2.0, dtype=torch.float64), rtol=1e-6)  # float32 weights
    before = (n[0] - n[1]).abs()
    after = (w[0] * n[0] - w[1] * n[1]).abs()
    assert after < 0.5 * before


def test_dwa_weights():
    h = torch.tensor([[1.0, 1.0], [0.5, 1.0]])
    w = dwa_weights(h, temperature=2.0)
    e = torch.exp(torch.tensor([0.5 / 2, 1.0 / 2]))
    assert_close(w, 2 * e / e.sum(), rtol=1e-6)  # float32
    assert w[1] > w[0]  # the task whose loss fell less gets more weight
    d, L = DWA(2), torch.tensor([2.0, 3.0])
    assert_close(d.combine(L, history=h[:1]), L.sum())  # fewer than two epochs: weights 1
    assert_close(d.weights(), torch.ones(2))
    assert_close(d.combine(L, history=[torch.tensor([9.0, 9.0]), *h]), (w * L).sum())  # the last two epochs
    assert_close(d.weights(), w)
    assert math.isclose(float(d.weights().sum()), 2.0, rel_tol=1e-6)
