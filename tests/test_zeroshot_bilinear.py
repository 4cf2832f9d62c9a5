"""Bilinear compatibility: losses and gradients vs per-example loops, float64 gradchecks, M = I is cosine, ESZSL's
closed form is the optimum of its objective, a planted map is learned, and bad shapes are refused."""

from __future__ import annotations

import pytest
import torch

from adaptlab.zeroshot import bilinear as B

from conftest import assert_close


def _data(n=12, C=45, dx=6, dy=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dx, generator=g, dtype=torch.float64)
    t = torch.randn(C, dy, generator=g, dtype=torch.float64)
    y = torch.randint(C, (n,), generator=g)
    return x, t, y


def _loop_hinge(M, x, t, y, margin):
    total = 0.0
    for i in range(len(y)):
        s_true = x[i] @ M @ t[y[i]]
        for j in range(t.shape[0]):
            if j != int(y[i]):
                total = total + torch.clamp(margin - s_true + x[i] @ M @ t[j], min=0)
    return total / len(y)


def _loop_structured(M, x, t, y, margin):
    total = 0.0
    for i in range(len(y)):
        s = torch.stack([x[i] @ M @ t[j] + (0.0 if j == int(y[i]) else margin) for j in range(t.shape[0])])
        total = total + s.max() - x[i] @ M @ t[y[i]]
    return total / len(y)


@pytest.mark.parametrize("kind", ["full", "lowrank"])
@pytest.mark.parametrize("loss,loop", [("hinge", _loop_hinge), ("structured", _loop_structured)])
def test_hinge_losses_and_gradients_equal_a_per_example_loop(kind, loss, loop):
    x, t, y = _data(dx=5)
    g = torch.Generator().manual_seed(1)
    params = ({"M": torch.randn(5, 5, generator=g, dtype=torch.float64)} if kind == "full" else
              {"U": torch.randn(5, 2, generator=g, dtype=torch.float64),
               "V": torch.randn(5, 2, generator=g, dtype=torch.float64)})
    params = {k: v.requires_grad_() for k, v in params.items()}
    fast = B.compat_loss(params, x, t, y, loss=loss, margin=0.5, reg=0.0)
    slow = loop(B.compat_matrix(params, 5, 5), x, t, y, 0.5)
    assert float(fast.detach()) > 0  # some margins are violated: the comparison is not 0 == 0
    assert_close(fast, slow)
    for gf, gs in zip(torch.autograd.grad(fast, list(params.values())),
                      torch.autograd.grad(slow, list(params.values()))):
        assert_close(gf, gs)


def test_softmax_loss_is_cross_entropy_of_scaled_scores():
    x, t, y = _data(C=7)
    M = torch.randn(6, 5, dtype=torch.float64)
    want = sum(-torch.log_softmax(3.0 * (x[i] @ M @ t.T), 0)[y[i]] for i in range(len(y))) / len(y)
    assert_close(B.compat_loss({"M": M}, x, t, y, loss="softmax", scale=3.0, reg=0.0), want)


@pytest.mark.parametrize("loss", B.LOSSES)
@pytest.mark.parametrize("toward", ["identity", "zero"])
def test_gradcheck_float64(loss, toward):
    x, t, y = _data(n=5, C=4, dx=3, dy=3)
    g = torch.Generator().manual_seed(2)
    M = torch.randn(3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    U = torch.randn(3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    V = torch.randn(3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda M: B.compat_loss({"M": M}, x, t, y, loss=loss, reg=0.3, toward=toward),
                                    (M,))
    assert torch.autograd.gradcheck(lambda U, V: B.compat_loss({"U": U, "V": V}, x, t, y, loss=loss, reg=0.3,
                                                               toward=toward), (U, V))


def test_regulariser_is_the_frobenius_distance():
    M = torch.randn(4, 4, dtype=torch.float64)
    assert_close(B.regulariser({"M": M}, 4, 4, "identity"), ((M - torch.eye(4, dtype=M.dtype)) ** 2).sum())
    assert_close(B.regulariser({"M": M}, 4, 4, "zero"), (M ** 2).sum())
    U, V = torch.randn(4, 2, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    assert_close(B.regulariser({"U": U, "V": V}, 4, 4, "identity"), ((U @ V.T) ** 2).sum())


def test_identity_m_reproduces_cosine_retrieval():
    g = torch.Generator().manual_seed(3)
    x = torch.nn.functional.normalize(torch.randn(200, 16, generator=g), dim=-1)
    t = torch.nn.functional.normalize(torch.randn(45, 16, generator=g), dim=-1)
    cos = torch.nn.functional.cosine_similarity(x[:, None, :], t[None, :, :], dim=-1).argmax(1)  # (200,)
    for params in ({}, B.init_params("full", 16, 16), B.init_params("lowrank", 16, 16, rank=4, generator=g)):
        assert torch.equal(B.predict(params, x, t), cos)
    assert len(cos.unique()) > 20  # the retrieval is not one constant label


def test_eszsl_is_the_stationary_point_of_its_objective():
    """ESZSL minimises ||X V Sᵀ − Y||² + γ||V Sᵀ||² + λ||X V||² + γλ||V||²: zero gradient at the closed form."""
    x, s, y = _data(n=40, C=6, dx=5, dy=4)
    gamma, lam = 0.7, 2.0
    V = B.eszsl(x, y, s, gamma=gamma, lam=lam)["M"].clone().requires_grad_()
    Y = 2.0 * torch.nn.functional.one_hot(y, 6).double() - 1.0
    obj = (((x @ V @ s.T - Y) ** 2).sum() + gamma * ((V @ s.T) ** 2).sum() + lam * ((x @ V) ** 2).sum()
           + gamma * lam * (V ** 2).sum())
    (grad,) = torch.autograd.grad(obj, V)
    assert float(grad.abs().max()) < 1e-9
    naive = (torch.inverse(x.T @ x + gamma * torch.eye(5, dtype=x.dtype)) @ x.T @ Y @ s
             @ torch.inverse(s.T @ s + lam * torch.eye(4, dtype=x.dtype)))
    assert_close(V.detach(), naive, rtol=1e-8, atol=1e-10)  # explicit inverses lose a few digits


def test_a_planted_map_between_two_spaces_is_learned_and_transfers_to_unseen_labels():
    """x = R t + noise with R random (dx != dy): no cosine exists; M learned on 20 labels ranks 20 unseen ones."""
    g = torch.Generator().manual_seed(4)
    R = torch.randn(12, 8, generator=g)
    t = torch.nn.functional.normalize(torch.randn(40, 8, generator=g), dim=-1)
    y = torch.arange(40).repeat(15)
    x = t[y] @ R.T + 0.05 * torch.randn(len(y), 12, generator=g)
    seen = y < 20
    p = B.fit_bilinear(x[seen], y[seen], t[:20], kind="full", reg=1e-4, steps=300, lr=1e-2)
    acc = float((B.predict(p, x[~seen], t[20:]) == y[~seen] - 20).float().mean())
    chance_fit = B.fit_bilinear(x[seen], y[seen][torch.randperm(int(seen.sum()), generator=g)], t[:20],
                                kind="full", reg=1e-4, steps=300, lr=1e-2)
    shuffled = float((B.predict(chance_fit, x[~seen], t[20:]) == y[~seen] - 20).float().mean())
    assert acc > 0.9 and shuffled < 0.3, (acc, shuffled)  # chance is 0.05


def test_training_lowers_the_loss_from_identity():
    x, t, y = _data(n=60, C=10, dx=6, dy=6)
    p = B.fit_bilinear(x.float(), y, t.float(), kind="lowrank", rank=3, reg=0.0, steps=50, lr=1e-2)
    assert float(B.compat_loss(p, x.float(), t.float(), y, reg=0.0)) < float(
        B.compat_loss({}, x.float(), t.float(), y, reg=0.0))


@pytest.mark.parametrize("call,words", [
    (lambda: B.scores({}, torch.zeros(3, 4), torch.zeros(5, 6)), "dx=4, dy=6"),
    (lambda: B.scores({"M": torch.zeros(4, 4)}, torch.zeros(3, 4), torch.zeros(5, 6)), "(4, 6)"),
    (lambda: B.compat_loss({}, torch.zeros(3, 4), torch.zeros(5, 4), torch.tensor([0, 1, 7])), "0..4"),
    (lambda: B.compat_loss({}, torch.zeros(3, 4), torch.zeros(5, 4), torch.tensor([0, 1])), "(3,)"),
    (lambda: B.compat_loss({}, torch.zeros(3, 4), torch.zeros(5, 4), torch.tensor([0, 1, 2]), loss="l2"), "hinge"),
    (lambda: B.init_params("diag", 4, 4), "lowrank"),
    (lambda: B.init_params("lowrank", 4, 3, rank=9), "1..3"),
    (lambda: B.eszsl(torch.zeros(3, 4), torch.tensor([0, 1, 2]), torch.zeros(3, 2), gamma=0.0), "positive"),
    (lambda: B.regulariser({"M": torch.zeros(4, 3)}, 4, 3, "identity"), "toward='zero'"),
])
def test_bad_shapes_and_names_are_refused_with_what_is_accepted(call, words):
    with pytest.raises(ValueError) as e:
        call()
    assert words in str(e.value)


def test_fitting_twice_with_one_seed_gives_the_same_matrix():
    x, t, y = _data(n=60, C=10, dx=6, dy=6)
    a = B.fit_bilinear(x.float(), y, t.float(), kind="lowrank", rank=3, steps=20, batch=16, seed=5)
    b = B.fit_bilinear(x.float(), y, t.float(), kind="lowrank", rank=3, steps=20, batch=16, seed=5)
    c = B.fit_bilinear(x.float(), y, t.float(), kind="lowrank", rank=3, steps=20, batch=16, seed=6)
    assert all(torch.equal(a[k], b[k]) for k in a) and not torch.equal(a["U"], c["U"])
