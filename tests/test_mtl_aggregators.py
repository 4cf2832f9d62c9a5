"""MGDA, PCGrad and CAGrad against brute-force solutions and their defining invariants."""

from __future__ import annotations

import itertools

import pytest
import torch

from adaptlab.mtl.aggregators import (
    Sum,
    cagrad,
    cagrad_weights,
    mgda,
    mgda_ub_weights,
    min_norm_weights,
    mtl_backward,
    pcgrad,
    task_gradients,
)

from conftest import assert_close


def _brute_force_min_norm(M: torch.Tensor) -> float:
    """Exact min of αᵀMα on the simplex by enumerating active sets (KKT): for each support S solve
    min αᵀ M_S α s.t. 1ᵀα = 1 in closed form, keep feasible (α ≥ 0) solutions."""
    T = M.shape[0]
    best = float("inf")
    for k in range(1, T + 1):
        for S in itertools.combinations(range(T), k):
            MS = M[list(S)][:, list(S)]
            try:
                a = torch.linalg.solve(MS, torch.ones(k, dtype=M.dtype))
            except RuntimeError:
                continue
            a = a / a.sum()
            if (a >= -1e-12).all():
                best = min(best, float(a @ MS @ a))
    return best


def _grid_min_norm_3(M: torch.Tensor, n: int = 400) -> float:
    """Grid search over the 3-simplex (a second, independent oracle)."""
    t = torch.linspace(0, 1, n + 1, dtype=M.dtype)
    a, b = torch.meshgrid(t, t, indexing="ij")
    mask = a + b <= 1
    W = torch.stack([a[mask], b[mask], 1 - a[mask] - b[mask]], 1)  # (K, 3)
    return float(((W @ M) * W).sum(1).min())


@pytest.mark.parametrize("T", [2, 3, 5])
def test_mgda_weights_on_simplex_and_min_norm(T):
    g = torch.Generator().manual_seed(T)
    for trial in range(5):
        G = torch.randn(T, 11, generator=g, dtype=torch.float64)
        if trial % 2:
            G[1] = -0.7 * G[0] + 0.1 * torch.randn(11, generator=g, dtype=torch.float64)  # strong conflict
        d, info = mgda(G, iters=3000)
        w = info["weights"]
        assert (w >= 0).all()
        assert_close(w.sum(), torch.tensor(1.0, dtype=torch.float64))
        M = G @ G.T
        exact = _brute_force_min_norm(M)
        # Frank–Wolfe converges as O(1/iters); 3000 iterations reach ~1e-5 relative on these sizes.
        assert_close(d @ d, torch.tensor(exact, dtype=torch.float64), rtol=1e-4, atol=1e-9)
        if T == 3:
            assert float(d @ d) <= _grid_min_norm_3(M) + 1e-9
        # non-negative inner product with every task gradient: ⟨d, g_i⟩ ≥ ||d||² ≥ 0 at the optimum
        assert (G @ d >= (d @ d) * (1 - 1e-3) - 1e-9).all()


def test_mgda_two_task_closed_form_is_exact():
    G = torch.tensor([[1.0, 0.0], [-1.0, 2.0]], dtype=torch.float64)
    d, _ = mgda(G)
    exact = _brute_force_min_norm(G @ G.T)
    assert_close(d @ d, torch.tensor(exact, dtype=torch.float64))
    assert_close(G @ d, torch.full((2,), exact, dtype=torch.float64))  # both constraints active: equal
    # dominated case: g1 = 2 g2 -> all weight on the shorter g2
    _, info = mgda(torch.tensor([[2.0, 2.0], [1.0, 1.0]], dtype=torch.float64))
    assert_close(info["weights"], torch.tensor([0.0, 1.0], dtype=torch.float64))


def test_mgda_is_vmappable_and_matches_loop():
    G = torch.randn(6, 3, 5, dtype=torch.float64)
    batched = torch.vmap(lambda g: min_norm_weights(g @ g.T, iters=50))(G)
    loop = torch.stack([min_norm_weights(g @ g.T, iters=50) for g in G])
    assert_close(batched, loop)


def test_pcgrad_conflicting_pair_becomes_non_conflicting():
    g = torch.Generator().manual_seed(1)
    for _ in range(10):
        G = torch.randn(2, 7, generator=g, dtype=torch.float64)
        G[1] = G[1] - 2 * (G[1] @ G[0]).abs() / (G[0] @ G[0]) * G[0]  # force g1·g2 < 0
        assert G[0] @ G[1] < 0
        d, info = pcgrad(G, generator=torch.Generator().manual_seed(0))
        P = info["projected"]
        assert P[0] @ G[1] >= -1e-12 and P[1] @ G[0] >= -1e-12  # projected onto the normal planes
        assert_close(P[0] @ G[1], torch.tensor(0.0, dtype=torch.float64), atol=1e-10)
        assert P[0] @ P[1] >= -1e-12
        assert_close(d, P.sum(0))


def test_pcgrad_leaves_non_conflicting_gradients_unchanged():
    G = torch.rand(4, 6, dtype=torch.float64)  # positive entries: every pair has g_i·g_j > 0
    d, info = pcgrad(G, generator=torch.Generator().manual_seed(0))
    assert_close(info["projected"], G)
    assert_close(d, G.sum(0))


def test_pcgrad_three_tasks_matches_naive_loop():
    G = torch.randn(3, 5, dtype=torch.float64)
    gen = torch.Generator().manual_seed(3)
    P = pcgrad(G, generator=gen)[1]["projected"]
    gen = torch.Generator().manual_seed(3)
    for i in range(3):  # naive reference with the same random orders
        order = torch.randperm(3, generator=gen).tolist()
        gi = G[i].clone()
        for j in order:
            if j != i and gi @ G[j] < 0:
                gi = gi - (gi @ G[j]) / (G[j] @ G[j]) * G[j]
        assert_close(P[i], gi)


def test_cagrad_c0_equals_average_gradient():
    G = torch.randn(4, 9, dtype=torch.float64)
    d, _ = cagrad(G, c=0.0)
    assert_close(d, G.mean(0))


@pytest.mark.parametrize("T,c", [(2, 0.5), (2, 2.0), (3, 0.4), (5, 0.5)])
def test_cagrad_dual_matches_scipy(T, c):
    from scipy.optimize import minimize

    g = torch.Generator().manual_seed(10 * T)
    G = torch.randn(T, 8, generator=g, dtype=torch.float64)
    M = G @ G.T
    b, sp = (M.mean(1)).numpy(), c * float(G.mean(0).norm())
    Mn = M.numpy()

    def f(w):
        return float(w @ b + sp * (w @ Mn @ w + 1e-12) ** 0.5)

    res = minimize(f, [1.0 / T] * T, method="SLSQP", bounds=[(0, 1)] * T,
                   constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}], options={"ftol": 1e-14})
    w = cagrad_weights(M, c)
    assert (w >= 0).all()
    assert_close(w.sum(), torch.tensor(1.0, dtype=torch.float64))
    # mirror descent (T > 2) stops within ~1e-4 relative of the optimum; T = 2 is a closed form
    assert f(w.numpy()) <= res.fun + 1e-4 * abs(res.fun) + 1e-9


def test_cagrad_improves_worst_task_over_average():
    G = torch.tensor([[4.0, 0.2], [-1.0, 1.0]], dtype=torch.float64)  # conflicting, unequal sizes
    d, _ = cagrad(G, c=0.8)
    g0 = G.mean(0)
    assert (G @ d).min() > (G @ g0).min()


def test_mtl_backward_sum_equals_summed_loss_gradient_and_heads_get_own_gradient():
    torch.manual_seed(0)
    trunk = torch.nn.Linear(4, 3).double()
    heads = [torch.nn.Linear(3, 1).double() for _ in range(2)]
    x = torch.randn(8, 4, dtype=torch.float64)
    shared, other = list(trunk.parameters()), [p for h in heads for p in h.parameters()]

    def losses():
        z = trunk(x).tanh()
        return [(heads[0](z) ** 2).mean(), (heads[1](z) - 1).abs().mean()]

    mtl_backward(losses(), shared, Sum(), other)
    got = [p.grad.clone() for p in shared + other]
    ref = torch.autograd.grad(sum(losses()), shared + other)
    for a, b in zip(got, ref):
        assert_close(a, b)
    # head 0 receives exactly the gradient of L_0 (L_1 does not reach it)
    L = losses()
    for p, g in zip(heads[0].parameters(), torch.autograd.grad(L[0], list(heads[0].parameters()))):
        assert_close(p.grad, g)


def test_mgda_ub_weights_use_representation_gradients():
    z = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    L = [(z[:, 0] ** 2).sum(), (-(z[:, 0]) + z[:, 1]).sum()]
    alpha = mgda_ub_weights(L, z)
    Gz = task_gradients(L, [z])
    assert_close(alpha, mgda(Gz)[1]["weights"])


def test_classic_frank_wolfe_stays_feasible_and_descends():
    g = torch.Generator().manual_seed(7)
    G = torch.randn(4, 9, generator=g, dtype=torch.float64)
    M = G @ G.T
    w = min_norm_weights(M, iters=500, variant="classic")
    assert (w >= 0).all()
    assert_close(w.sum(), torch.tensor(1.0, dtype=torch.float64))
    uniform = torch.full((4,), 0.25, dtype=torch.float64)
    exact = _brute_force_min_norm(M)
    assert exact - 1e-12 <= float(w @ M @ w) <= float(uniform @ M @ uniform)
    # the classic step converges sublinearly: within 5% here, where pairwise is within 1e-4 (tested above)
    assert float(w @ M @ w) <= 1.05 * exact + 1e-9
