"""Registry-driven contract: every registered weighting and aggregator on the same small problems.

Each entry of :data:`adaptlab.mtl.registry.WEIGHTINGS` / :data:`AGGREGATORS` is built from one options dict
(each factory reads what it needs) and run on 2 and 3 random quadratic tasks over a tiny shared model in
float64. The shared invariants hold for every entry, so a new entry is tested the moment it is registered;
the per-method invariants (equal = summed loss, MGDA on the simplex, ...) follow.
"""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from adaptlab.mtl import HardSharing
from adaptlab.mtl.aggregators import Aggregator, mtl_backward, task_gradients
from adaptlab.mtl.registry import AGGREGATORS, WEIGHTINGS, make_aggregator, make_weighting
from adaptlab.mtl.train import METHODS, MethodStep
from adaptlab.mtl.weighting import Weighting

from conftest import assert_close

TASKS = (2, 3)


def _options(T: int) -> dict:
    """One options dict for every factory; a fresh generator each call so two builds draw alike."""
    return {"weights": [1.0 / (i + 1) for i in range(T)], "generator": torch.Generator().manual_seed(0),
            "alpha": 1.5, "c": 0.4, "normalize": "none", "device": "cpu"}


def _problem(T: int, seed: int = 0):
    """A shared trunk W (3×4) + tanh, one linear head per task, L_i = mean((head_i(z) - y_i)²)."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    heads = [torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(T)]
    x = torch.randn(16, 4, generator=g, dtype=torch.float64)
    y = torch.randn(T, 16, generator=g, dtype=torch.float64)
    z = torch.tanh(x @ W.T)  # (16, 3)
    losses = torch.stack([((z @ h - y[i]) ** 2).mean() for i, h in enumerate(heads)])  # (T,)
    return losses, z, W, heads


def _extras(W, z, T: int) -> dict:
    history = torch.tensor([[1.0 + i for i in range(T)], [0.5 + i for i in range(T)]], dtype=torch.float64)
    return {"shared_weight": W, "history": history, "representation": z, "not_read_by_anyone": object()}


# ------------------------------------------------------------------------------------------ weightings


@pytest.mark.parametrize("T", TASKS)
@pytest.mark.parametrize("name", list(WEIGHTINGS))
def test_every_weighting_keeps_the_protocol(name, T):
    w = make_weighting(name, T, **_options(T))
    assert isinstance(w, Weighting) and w.n_tasks == T
    L, z, W, heads = _problem(T)
    loss = w.combine(L, **_extras(W, z, T))
    assert isinstance(loss, torch.Tensor) and loss.shape == () and loss.dtype == torch.float64
    assert torch.isfinite(loss)
    weights = w.weights()
    assert weights.shape == (T,) and torch.isfinite(weights).all()
    assert all(isinstance(p, torch.Tensor) and p.requires_grad for p in w.parameters())
    # the model's gradient of combine() is the gradient of Σ weights()_i L_i with the weights it reports
    got = torch.autograd.grad(loss, [W, *heads], retain_graph=True)
    ref = torch.autograd.grad((weights.to(L) * L).sum(), [W, *heads])
    for a, b in zip(got, ref):
        assert torch.isfinite(a).all()
        assert_close(a, b, rtol=1e-6, atol=1e-12)  # several rules keep their weights in float32


@pytest.mark.parametrize("T", TASKS)
@pytest.mark.parametrize("name", list(WEIGHTINGS))
def test_every_weighting_resumes_from_its_state_dict(name, T):
    first = make_weighting(name, T, **_options(T))
    for seed in range(3):
        L, z, W, _ = _problem(T, seed)
        first.combine(L, **_extras(W, z, T))
    state = first.state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)  # the checkpoint path: the state must load with weights_only=True
    buffer.seek(0)
    second = make_weighting(name, T, **_options(T))
    second.load_state_dict(torch.load(buffer, weights_only=True))
    L, z, W, _ = _problem(T, seed=7)
    a = first.combine(L, **_extras(W, z, T))
    b = second.combine(L, **_extras(W, z, T))
    assert_close(a, b)
    assert_close(first.weights(), second.weights())


@pytest.mark.parametrize("T", TASKS)
def test_equal_weighting_equals_summed_loss(T):
    L, z, W, _ = _problem(T)
    assert_close(make_weighting("equal", T).combine(L, **_extras(W, z, T)), L.sum())
    ones = make_weighting("fixed", T, weights=[1.0] * T)
    assert_close(ones.combine(L), L.sum())


def test_weightings_that_need_an_extra_say_which():
    L, _, _, _ = _problem(2)
    for name, extra in (("gradnorm", "shared_weight"), ("mgda-ub", "representation")):
        with pytest.raises(ValueError, match=extra):
            make_weighting(name, 2).combine(L)


# ----------------------------------------------------------------------------------------- aggregators


def _task_gradients(T: int, seed: int = 0):
    L, _, W, heads = _problem(T, seed)
    return task_gradients(list(L), [W]), L.detach()  # (T, 12), (T,)


@pytest.mark.parametrize("T", TASKS)
@pytest.mark.parametrize("name", list(AGGREGATORS))
def test_every_aggregator_keeps_the_protocol(name, T):
    agg = make_aggregator(name, T, **_options(T))
    assert isinstance(agg, Aggregator)
    G, lv = _task_gradients(T)
    out = agg(G, losses=lv, not_read_by_anyone=object())
    assert isinstance(out, tuple) and len(out) == 2
    d, info = out
    assert d.shape == (G.shape[1],) and d.dtype == torch.float64 and torch.isfinite(d).all()
    assert isinstance(info, dict) and "weights" in info
    if info["weights"] is not None:
        assert info["weights"].shape == (T,) and torch.isfinite(info["weights"]).all()
    # through mtl_backward: the same (G, info) shape, every gradient written and finite
    L, _, W, heads = _problem(T)
    G2, info2 = mtl_backward(list(L), [W], make_aggregator(name, T, **_options(T)), other_params=heads)
    assert_close(G2, G)
    assert set(info2) == set(info)
    assert W.grad.shape == W.shape and torch.isfinite(W.grad).all()
    assert all(h.grad is not None and torch.isfinite(h.grad).all() for h in heads)


@pytest.mark.parametrize("T", TASKS)
@pytest.mark.parametrize("name", list(AGGREGATORS))
def test_every_aggregator_is_positively_homogeneous(name, T):
    """d(s G) = s d(G) for s > 0 (no rule here depends on the gradients' overall scale)."""
    G, lv = _task_gradients(T, seed=1)
    d1, _ = make_aggregator(name, T, **_options(T))(G, losses=lv)
    d3, _ = make_aggregator(name, T, **_options(T))(3.0 * G, losses=lv)
    assert_close(d3, 3.0 * d1, rtol=1e-8, atol=1e-10)  # iterative solvers: tiny relative differences


@pytest.mark.parametrize("T", TASKS)
@pytest.mark.parametrize("name", list(AGGREGATORS))
def test_every_aggregator_follows_agreeing_tasks(name, T):
    """When every task has the same gradient g, the direction is a positive multiple of g."""
    g = torch.randn(12, dtype=torch.float64)
    d, _ = make_aggregator(name, T, **_options(T))(g.expand(T, 12).clone(), losses=torch.ones(T))
    k = (d @ g) / (g @ g)
    assert k > 0
    assert_close(d, k * g, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("T", TASKS)
def test_mgda_weights_lie_on_the_simplex_and_descend_every_task(T):
    for seed in range(4):
        G, lv = _task_gradients(T, seed)
        d, info = make_aggregator("mgda", T)(G, losses=lv)
        w = info["weights"]
        assert (w >= 0).all()
        assert_close(w.sum(), torch.tensor(1.0, dtype=torch.float64))
        assert_close(d, w @ G)
        assert (G @ d >= (d @ d) * (1 - 1e-3) - 1e-12).all()  # ⟨d, g_i⟩ ≥ ||d||² at the min-norm point


@pytest.mark.parametrize("T", TASKS)
def test_pcgrad_on_non_conflicting_gradients_is_the_sum(T):
    G = torch.rand(T, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(T))  # all g_i·g_j > 0
    d, info = make_aggregator("pcgrad", T, **_options(T))(G)
    assert_close(d, G.sum(0))
    assert_close(info["projected"], G)


@pytest.mark.parametrize("T", TASKS)
def test_cagrad_with_c0_is_the_mean_and_mean_sum_are_what_they_say(T):
    G, lv = _task_gradients(T)
    assert_close(make_aggregator("cagrad", T, c=0.0)(G)[0], G.mean(0))
    d, info = make_aggregator("mean", T)(G)
    assert_close(d, G.mean(0))
    assert_close(d, info["weights"] @ G)
    d, info = make_aggregator("sum", T)(G)
    assert_close(d, G.sum(0))
    assert_close(d, info["weights"] @ G)


def test_unknown_names_and_bad_options_are_refused():
    with pytest.raises(ValueError, match="'bogus'.*equal"):
        make_weighting("bogus", 2)
    with pytest.raises(ValueError, match="'bogus'.*pcgrad"):
        make_aggregator("bogus", 2)
    with pytest.raises(ValueError, match="weights=.*2 numbers"):
        make_weighting("fixed", 2, weights=[1.0])
    with pytest.raises(ValueError, match="c=-1"):
        make_aggregator("cagrad", 2, c=-1)


# ----------------------------------------------------------------------------------- the training step


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_one_step(method):
    torch.manual_seed(0)
    tasks = ["a", "b", "c"]
    net = HardSharing([nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 5)],
                      {t: nn.Linear(5, 1) for t in tasks}).double()
    step = MethodStep.from_name(method, net, tasks, lambda out, y: ((out.squeeze(-1) - y) ** 2).mean(),
                                lambda ps: torch.optim.SGD(ps, lr=0.1), fixed_weights=[0.2, 0.3, 0.5],
                                mgda_normalize="none", generator=torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in net.parameters()]
    x = torch.randn(8, 4, dtype=torch.float64)
    ys = {t: torch.randn(8, dtype=torch.float64) for t in tasks}
    for _ in range(3):
        L = step(x, ys)
        step.end_epoch(L)
    assert L.shape == (3,) and torch.isfinite(L).all()
    assert step.last_weights is None or step.last_weights.shape == (3,)
    for p, p0 in zip(net.parameters(), before):
        assert torch.isfinite(p).all() and not torch.equal(p, p0)  # every parameter moved
    with pytest.raises(ValueError, match="'bogus'"):
        MethodStep.from_name("bogus", net, tasks, None, None)
