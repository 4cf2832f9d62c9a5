"""MAML core: vmapped meta-gradients vs a naive per-task autograd loop, analytic gradients, invariants."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from adaptlab.meta.maml import MAML, adapt_tasks, inner_adapt, maml_meta_loss
from adaptlab.models.mlp import MLP
from adaptlab.tasks.batch import SupportQuery

from conftest import assert_close


def _tasks(T=4, n_s=6, n_q=7, d=1, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(T, n_s, d, generator=g, dtype=dtype)
    xq = torch.randn(T, n_q, d, generator=g, dtype=dtype)
    amp = torch.rand(T, 1, 1, generator=g, dtype=dtype) + 0.5
    return xs, amp * xs.sum(-1, keepdim=True).sin(), xq, amp * xq.sum(-1, keepdim=True).sin()


def _reference_meta_grad(model, params, buffers, xs, ys, xq, yq, steps, lr, first_order, adapt=None):
    """Naive per-task loop: torch.autograd.grad(create_graph=True) on each task, one task at a time."""
    names = list(params)
    lrs = lr if isinstance(lr, dict) else None
    total, task_buffers = 0.0, []
    for t in range(xs.shape[0]):
        b = {k: v.clone() for k, v in buffers.items()}
        fast = dict(params)
        for _ in range(steps):
            keys = [k for k in names if adapt is None or k.startswith(tuple(adapt))]
            loss = F.mse_loss(functional_call(model, (fast, b), (xs[t],)), ys[t])
            grads = torch.autograd.grad(loss, [fast[k] for k in keys], create_graph=not first_order)
            for k, g in zip(keys, grads):
                step = lrs[k] if lrs is not None else lr
                fast[k] = fast[k] - step * (g.detach() if first_order else g)
        total = total + F.mse_loss(functional_call(model, (fast, b), (xq[t],)), yq[t])
        task_buffers.append(b)
    leaves = [params[k] for k in names] + (list(lrs.values()) if lrs is not None else [])
    return torch.autograd.grad(total / xs.shape[0], leaves), task_buffers


def _meta_grad(model, params, buffers, xs, ys, xq, yq, steps, lr, first_order, adapt=None, vectorize=True):
    loss, aux = maml_meta_loss(params, buffers, SupportQuery(xs, ys, xq, yq), model=model, loss_fn=F.mse_loss,
                               steps=steps, lr=lr, first_order=first_order, adapt=adapt, vectorize=vectorize)
    leaves = list(params.values()) + (list(lr.values()) if isinstance(lr, dict) else [])
    return torch.autograd.grad(loss, leaves), aux


@pytest.mark.parametrize("vectorize", [True, False])
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("variant", ["maml", "meta-sgd", "anil", "batchnorm"])
def test_meta_gradient_of_both_paths_matches_naive_per_task_loop(first_order, variant, vectorize):
    """Float64: the vmapped path and the per-task path each equal a hand-written per-task reference."""
    model = MLP((1, 16, 16, 1), activation=nn.Tanh, batch_norm=variant == "batchnorm").double().train()
    params, buffers = dict(model.named_parameters()), dict(model.named_buffers())
    xs, ys, xq, yq = _tasks()
    lr = 0.05
    if variant == "meta-sgd":
        g = torch.Generator().manual_seed(1)
        lr = {k: (0.01 + 0.1 * torch.rand(v.shape, generator=g, dtype=v.dtype)).requires_grad_()
              for k, v in params.items()}
    adapt = ["head."] if variant == "anil" else None
    got, aux = _meta_grad(model, params, buffers, xs, ys, xq, yq, 3, lr, first_order, adapt, vectorize)
    want, task_buffers = _reference_meta_grad(model, params, buffers, xs, ys, xq, yq, 3, lr, first_order,
                                              adapt)
    for a, b in zip(got, want):
        assert_close(a, b)
    for name in buffers:  # per-task batch statistics, then their task mean
        if buffers[name].is_floating_point():
            assert_close(aux["buffers"][name], torch.stack([tb[name] for tb in task_buffers]).mean(0))


def test_first_and_second_order_equal_the_analytic_gradients_of_linear_regression():
    """Linear model, L(w) = |Xw - y|^2 / n: grad = 2/n X^T (Xw - y), Hessian H = 2/n X^T X.

    One inner step phi = w - a grad_s(w). Second order: (I - a H_s) grad_q(phi); first order: grad_q(phi).
    """
    xs, ys, xq, yq = _tasks(T=3, n_s=5, n_q=9, d=4)
    model = nn.Linear(4, 1, bias=False).double()
    w = model.weight
    a = 0.1
    fo_want, so_want = 0, 0
    for t in range(3):
        Xs, Xq = xs[t], xq[t]
        g_s = 2 / 5 * Xs.T @ (Xs @ w.T - ys[t])  # (4, 1)
        phi = w.T - a * g_s
        g_q = 2 / 9 * Xq.T @ (Xq @ phi - yq[t])
        H_s = 2 / 5 * Xs.T @ Xs
        fo_want = fo_want + g_q.T / 3
        so_want = so_want + ((torch.eye(4, dtype=w.dtype) - a * H_s) @ g_q).T / 3
    for first_order, want in [(True, fo_want), (False, so_want)]:
        loss, _ = maml_meta_loss({"weight": w}, {}, SupportQuery(xs, ys, xq, yq), model=model, loss_fn=F.mse_loss,
                                 steps=1, lr=a, first_order=first_order)
        (got,) = torch.autograd.grad(loss, [w])
        assert_close(got, want.detach())
    assert not torch.allclose(fo_want, so_want)  # the test distinguishes the two modes


def test_gradgradcheck_through_an_inner_step():
    model = MLP((2, 5, 1), activation=nn.Tanh).double()
    names = [k for k, _ in model.named_parameters()]
    xs, ys, xq, yq = _tasks(T=2, n_s=4, n_q=3, d=2)

    def meta_loss(*flat):
        loss, _ = maml_meta_loss(dict(zip(names, flat)), {}, SupportQuery(xs, ys, xq, yq), model=model,
                                 loss_fn=F.mse_loss, steps=1, lr=0.3)
        return loss

    inputs = tuple(p.detach().clone().requires_grad_() for p in model.parameters())
    assert torch.autograd.gradcheck(meta_loss, inputs)
    assert torch.autograd.gradgradcheck(meta_loss, inputs)


def test_one_inner_step_lowers_support_loss_and_zero_steps_is_identity():
    model = MLP((1, 32, 32, 1)).double()
    params = dict(model.named_parameters())
    xs, ys, _, _ = _tasks(T=1)
    before = F.mse_loss(functional_call(model, params, (xs[0],)), ys[0])
    fast = inner_adapt(params, {}, xs[0], ys[0], model=model, loss_fn=F.mse_loss, steps=1, lr=0.01)
    after = F.mse_loss(functional_call(model, fast, (xs[0],)), ys[0])
    assert after < before
    same = inner_adapt(params, {}, xs[0], ys[0], model=model, loss_fn=F.mse_loss, steps=0, lr=0.01)
    for k in params:
        assert torch.equal(same[k], params[k])


def test_anil_adapts_only_the_head_and_body_still_gets_meta_gradient():
    model = MLP((1, 8, 1)).double()
    params = dict(model.named_parameters())
    xs, ys, xq, yq = _tasks(T=2)
    fast = inner_adapt(params, {}, xs[0], ys[0], model=model, loss_fn=F.mse_loss, steps=2, lr=0.1, adapt=["head."])
    assert torch.equal(fast["layers.0.weight"], params["layers.0.weight"])
    assert not torch.equal(fast["head.weight"], params["head.weight"])
    for first_order in (False, True):
        loss, _ = maml_meta_loss(params, {}, SupportQuery(xs, ys, xq, yq), model=model, loss_fn=F.mse_loss,
                                 steps=2, lr=0.1, first_order=first_order, adapt=["head."])
        g = torch.autograd.grad(loss, [params["layers.0.weight"]])[0]
        assert g.abs().sum() > 0
    with pytest.raises(ValueError, match="matches no parameter"):
        inner_adapt(params, {}, xs[0], ys[0], model=model, loss_fn=F.mse_loss, steps=1, lr=0.1, adapt=["nope."])


@pytest.mark.parametrize("vectorize", [True, False])
def test_adapt_tasks_curve_matches_inner_adapt(vectorize):
    model = MLP((1, 16, 1)).double()
    params = dict(model.named_parameters())
    xs, ys, xq, yq = _tasks(T=3)
    out = adapt_tasks(params, {}, xs, ys, model=model, loss_fn=F.mse_loss, steps=4, lr=0.05, x_eval=xq, y_eval=yq,
                      vectorize=vectorize)
    assert out["pred"].shape == (3, 5, 7, 1) and out["loss"].shape == (3, 5)
    for t in range(3):
        fast = inner_adapt(params, {}, xs[t], ys[t], model=model, loss_fn=F.mse_loss, steps=4, lr=0.05)
        assert_close(out["loss"][t, -1], F.mse_loss(functional_call(model, fast, (xq[t],)), yq[t]))
        assert_close(out["loss"][t, 0], F.mse_loss(model(xq[t]), yq[t]))


def test_maml_class_meta_sgd_learns_step_sizes_and_writes_back_batchnorm_stats():
    torch.manual_seed(0)
    model = MLP((1, 8, 1), batch_norm=True).double()
    maml = MAML(model, F.mse_loss, inner_lr=0.05, steps=2, learn_lr=True)
    assert len(maml.parameters()) == 2 * len(list(model.parameters()))
    xs, ys, xq, yq = _tasks(T=3)
    before = model.layers[1].running_mean.clone()
    maml.meta_loss(xs, ys, xq, yq).backward()
    assert all(v.grad is not None and v.grad.abs().sum() > 0 for v in maml.lr.values())
    assert not torch.equal(model.layers[1].running_mean, before)
    state = maml.state_dict()
    other = MAML(MLP((1, 8, 1), batch_norm=True).double(), F.mse_loss, inner_lr=0.5, steps=2, learn_lr=True)
    other.load_state_dict(state)
    for k in maml.lr:
        assert torch.equal(other.lr[k], maml.lr[k])


def test_gradcheck_second_order_with_batchnorm_under_vmap():
    """Finite differences through vmap, an inner step and per-task batch statistics."""
    model = MLP((1, 4, 1), activation=nn.Tanh, batch_norm=True).double().train()
    names = [k for k, _ in model.named_parameters()]
    buffers = dict(model.named_buffers())
    xs, ys, xq, yq = _tasks(T=2, n_s=5, n_q=4)

    def meta_loss(*flat):
        loss, _ = maml_meta_loss(dict(zip(names, flat)), buffers, SupportQuery(xs, ys, xq, yq), model=model,
                                 loss_fn=F.mse_loss, steps=1, lr=0.05)
        return loss

    inputs = tuple(p.detach().clone().requires_grad_() for p in model.parameters())
    assert torch.autograd.gradcheck(meta_loss, inputs)


def test_adapt_tasks_works_under_no_grad_and_leaves_no_graph():
    model = MLP((1, 8, 1)).double()
    params = dict(model.named_parameters())
    xs, ys, xq, yq = _tasks(T=2)
    kw = dict(model=model, loss_fn=F.mse_loss, steps=3, lr=0.1, x_eval=xq, y_eval=yq)
    want = adapt_tasks(params, {}, xs, ys, **kw)
    with torch.no_grad():
        got = adapt_tasks(params, {}, xs, ys, **kw)
    assert_close(got["loss"], want["loss"])
    assert not got["pred"].requires_grad and not want["loss"].requires_grad
    assert (want["loss"][:, -1] < want["loss"][:, 0]).all()


class _Keyword(nn.Module):
    """A model called with keyword tensors, f(x, mask) = MLP(x) * mask, with batch norm."""

    def __init__(self):
        super().__init__()
        self.net = MLP((1, 8, 8, 1), activation=nn.Tanh, batch_norm=True)

    def forward(self, x, mask):
        return self.net(x) * mask


@pytest.mark.parametrize("first_order", [False, True])
def test_keyword_inputs_and_a_user_forward_give_one_meta_gradient_on_both_paths(first_order):
    model = _Keyword().double().train()
    params, buffers = dict(model.named_parameters()), dict(model.named_buffers())
    xs, ys, xq, yq = _tasks()
    g = torch.Generator().manual_seed(2)
    ms, mq = ((torch.rand(x.shape, generator=g) > 0.3).double() for x in (xs, xq))
    batch = SupportQuery({"x": xs, "mask": ms}, ys * ms, {"x": xq, "mask": mq}, yq * mq)

    def user(p, b, inputs):  # the same model through a user forward: positional x, keyword mask
        return functional_call(model, (p, b), (inputs["x"],), {"mask": inputs["mask"]})

    runs = []
    for vectorize in (True, False):
        for forward in (None, user):
            loss, aux = maml_meta_loss(params, buffers, batch, model=model, forward=forward, loss_fn=F.mse_loss,
                                       steps=2, lr=0.1, first_order=first_order, vectorize=vectorize)
            runs.append((loss, torch.autograd.grad(loss, list(params.values())), aux["buffers"]))
    want_loss, want_grads, want_buffers = runs[0]
    assert want_buffers["net.layers.1.num_batches_tracked"] == 3  # two inner steps and the query pass
    for loss, grads, bufs in runs[1:]:
        assert_close(loss, want_loss)
        for a, b in zip(grads, want_grads):
            assert_close(a, b)
        for k in bufs:
            assert_close(bufs[k], want_buffers[k])
    assert not torch.allclose(want_buffers["net.layers.1.running_mean"], buffers["net.layers.1.running_mean"])


def test_maml_wrapper_per_task_path_equals_vectorized_and_functional_is_the_bound_core():
    xs, ys, xq, yq = _tasks(T=3)
    batch = SupportQuery(xs, ys, xq, yq)
    out = []
    for vectorize in (True, False):
        torch.manual_seed(0)
        maml = MAML(MLP((1, 8, 1), batch_norm=True).double(), F.mse_loss, inner_lr=0.05, steps=2, learn_lr=True,
                    vectorize=vectorize)
        loss, aux = maml.functional()(maml.params(), maml.buffers(), batch)  # pure: the module is not touched
        assert torch.equal(maml.model.layers[1].running_mean, torch.zeros(8, dtype=torch.float64))
        same, _ = maml.loss(batch)                                               # writes the buffers back
        assert_close(same, loss)
        grads = torch.autograd.grad(same, maml.parameters())
        out.append((same, grads, maml.model.layers[1].running_mean.clone()))
    (l0, g0, r0), (l1, g1, r1) = out
    assert_close(l1, l0)
    assert_close(r1, r0)
    for a, b in zip(g1, g0):
        assert_close(a, b)
