"""MAML on Conv4: the folded (grouped-convolution) path against a naive per-task autograd loop, and the chooser."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from adaptlab.meta.maml import MAML, adapt_tasks, choose_path, maml_meta_loss
from adaptlab.models.conv4 import Conv4, fold_chunk
from adaptlab.models.mlp import MLP
from adaptlab.tasks.batch import SupportQuery

from conftest import assert_close


def _conv_tasks(T=3, n_s=3, n_q=4, ways=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(T, n_s, 1, 28, 28, generator=g, dtype=torch.float64)
    xq = torch.randn(T, n_q, 1, 28, 28, generator=g, dtype=torch.float64)
    ys = torch.randint(ways, (T, n_s), generator=g)
    yq = torch.randint(ways, (T, n_q), generator=g)
    return SupportQuery(xs, ys, xq, yq)


def _net(track=False, ways=3, seed=0):
    torch.manual_seed(seed)
    net = Conv4(hidden=4, n_classes=ways, track_running_stats=track).double().train()
    with torch.no_grad():  # non-trivial affine batch-norm parameters, so their gradients are exercised
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net


def _task_bytes(net, x):
    """Bytes of one task's first-layer activations, ``(n, hidden, H, W)``."""
    return x.shape[1] * net.hidden * x.shape[-2] * x.shape[-1] * x.element_size()


def _reference(net, params, buffers, b, steps, lr, first_order, adapt=None):
    """Naive per-task loop (learn2learn's clone/adapt): copy, autograd.grad(create_graph=not first_order)."""
    total, task_buffers = 0.0, []
    for t in range(b.support_y.shape[0]):
        bufs, fast = {k: v.clone() for k, v in buffers.items()}, dict(params)
        keys = [k for k in params if adapt is None or k.startswith(tuple(adapt))]
        for _ in range(steps):
            loss = F.cross_entropy(functional_call(net, (fast, bufs), (b.support_x[t],)), b.support_y[t])
            grads = torch.autograd.grad(loss, [fast[k] for k in keys], create_graph=not first_order)
            for k, g in zip(keys, grads):
                step = lr[k] if isinstance(lr, dict) else lr
                fast[k] = fast[k] - step * (g.detach() if first_order else g)
        total = total + F.cross_entropy(functional_call(net, (fast, bufs), (b.query_x[t],)), b.query_y[t])
        task_buffers.append(bufs)
    leaves = list(params.values()) + (list(lr.values()) if isinstance(lr, dict) else [])
    return torch.autograd.grad(total / b.support_y.shape[0], leaves), task_buffers


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("variant", ["maml", "running-stats", "anil", "meta-sgd", "chunked-running-stats"])
def test_folded_meta_gradient_equals_naive_per_task_loop(first_order, variant):
    """Float64, 2 inner steps: the grouped-convolution path gives the loop's meta-gradient and buffers."""
    net = _net(track="running-stats" in variant)
    params, buffers, b = dict(net.named_parameters()), dict(net.named_buffers()), _conv_tasks()
    if variant.startswith("chunked"):  # 3 tasks folded in chunks of 2 and 1
        net.fold_bytes = 2 * _task_bytes(net, b.query_x)
        assert fold_chunk(4, 4, 28 * 28, net.fold_bytes, 8) == 2
    adapt = ["head."] if variant == "anil" else None
    lr = ({k: torch.full_like(v, 0.3).requires_grad_() for k, v in params.items()} if variant == "meta-sgd"
          else 0.3)
    want, want_bufs = _reference(net, params, buffers, b, 2, lr, first_order, adapt)
    assert choose_path(net, None, b.support_x) == "folded"
    loss, aux = maml_meta_loss(params, buffers, b, model=net, loss_fn=F.cross_entropy, steps=2, lr=lr,
                               first_order=first_order, adapt=adapt)
    leaves = list(params.values()) + (list(lr.values()) if isinstance(lr, dict) else [])
    got = torch.autograd.grad(loss, leaves)
    for name, g, w in zip(list(params) + list(params if isinstance(lr, dict) else []), got, want):
        assert_close(g, w, atol=1e-10, rtol=1e-8, msg=name)  # float64 sums in another order
    assert any(w.abs().max() > 1e-3 for w in want)  # the comparison is not between zeros
    for k in buffers:
        mean = torch.stack([tb[k] for tb in want_bufs]).double().mean(0)
        assert_close(aux["buffers"][k].double(), mean if buffers[k].is_floating_point() else want_bufs[0][k].double())


@pytest.mark.parametrize("chunk", [None, 1, 2])
@pytest.mark.parametrize("train", [True, False])
def test_forward_tasks_equals_stacked_functional_calls(train, chunk):
    """forward_tasks with different weights per task equals T separate calls, running statistics included,
    with all 3 tasks in one fold and in chunks of 1 and of 2 (uneven: 2 + 1)."""
    net = _net(track=True).train(train)
    if chunk is not None:
        net.fold_bytes = chunk * 5 * net.hidden * 28 * 28 * 8  # float64 activations (5, hidden, 28, 28) per task
    T, g = 3, torch.Generator().manual_seed(1)
    params = {k: v + 0.1 * torch.randn(T, *v.shape, generator=g, dtype=v.dtype) for k, v in net.named_parameters()}
    bufs = {k: (v + 0.5 * torch.rand(T, *v.shape, generator=g, dtype=v.dtype) if v.is_floating_point()
                else v.expand(T).clone()) for k, v in net.named_buffers()}
    x = torch.randn(T, 5, 1, 28, 28, generator=g, dtype=torch.float64)
    ref_bufs = [{k: v[t].clone() for k, v in bufs.items()} for t in range(T)]
    want = torch.stack([functional_call(net, ({k: v[t] for k, v in params.items()}, ref_bufs[t]), (x[t],))
                        for t in range(T)])
    assert_close(net.forward_tasks(params, bufs, x), want, atol=1e-12)
    for k in bufs:
        assert_close(bufs[k], torch.stack([rb[k] for rb in ref_bufs]), atol=1e-14)


def test_folded_adapt_tasks_equals_the_per_task_loop():
    net, b = _net(), _conv_tasks(T=2)
    kw = dict(model=net, loss_fn=F.cross_entropy, steps=3, lr=0.2, x_eval=b.support_x, y_eval=b.support_y)
    got = adapt_tasks(dict(net.named_parameters()), {}, b.support_x, b.support_y, **kw)
    want = adapt_tasks(dict(net.named_parameters()), {}, b.support_x, b.support_y, vectorize=False, **kw)
    assert_close(got["pred"], want["pred"], atol=1e-10)
    assert_close(got["loss"], want["loss"], atol=1e-10)
    assert (got["loss"][:, -1] < got["loss"][:, 0]).all()  # adaptation lowers the support loss


def test_fold_chunk_rule():
    """The most tasks whose activations at a layer fit the budget, never fewer than one."""
    per_task = 5 * 64 * 28 * 28 * 4  # 5 images, 64 channels, 28x28, float32: 1 MB
    assert fold_chunk(5, 64, 28 * 28, 8 * per_task) == 8
    assert fold_chunk(5, 64, 28 * 28, 8 * per_task - 1) == 7
    assert fold_chunk(5, 64, 28 * 28, 1) == 1
    # the default, layer by layer (28, 14, 7, 3 px) of 5-way 1-shot Omniglot: 1, 4, 16, 91 tasks per chunk
    assert [fold_chunk(5, 64, s * s, Conv4.fold_bytes) for s in (28, 14, 7, 3)] == [1, 4, 16, 91]


def test_relu_after_pool_equals_pool_after_relu_with_gradients():
    """The folded forward pools before its ReLU: values, gradients and second derivatives are the module's."""
    g = torch.Generator().manual_seed(0)
    h = torch.randn(2, 3, 6, 6, generator=g, dtype=torch.float64).requires_grad_()
    h.data[0, 0, :2, :2] = -1.0  # a window with no positive entry
    v = torch.randn(2, 3, 3, 3, generator=g, dtype=torch.float64)
    for f in (lambda x: F.relu(F.max_pool2d(x, 2)), lambda x: F.max_pool2d(F.relu(x), 2)):
        assert torch.autograd.gradcheck(f, (h,)) and torch.autograd.gradgradcheck(f, (h,))
    a, b = F.relu(F.max_pool2d(h, 2)), F.max_pool2d(F.relu(h), 2)
    assert torch.equal(a, b)
    assert torch.equal(*(torch.autograd.grad((y * v).sum(), h)[0] for y in (a, b)))


def test_chooser_rule_and_its_errors():
    x_img, x_vec = torch.zeros(2, 3, 1, 28, 28), torch.zeros(2, 3, 1)
    conv, mlp = Conv4(n_classes=3), MLP((1, 8, 1))
    plain_conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten())  # convolutions without forward_tasks
    assert choose_path(conv, None, x_img) == "folded"
    assert choose_path(conv, lambda p, b, x: x, x_img) == "loop"  # a user forward: forward_tasks cannot apply
    assert choose_path(plain_conv, None, x_img) == "loop"
    assert choose_path(mlp, None, x_vec) == "vmap"
    assert choose_path(conv, None, x_img, True) == "vmap" and choose_path(mlp, None, x_vec, False) == "loop"
    assert MAML(conv, F.cross_entropy).path(x_img) == "folded"
    with pytest.raises(ValueError, match="vectorize='fast' is invalid"):
        choose_path(conv, None, x_img, "fast")
    with pytest.raises(ValueError, match="needs a model with forward_tasks"):
        choose_path(mlp, None, x_vec, "folded")


def test_chunk_budget_is_per_thread_and_the_result_does_not_depend_on_it(monkeypatch):
    """forward_tasks sizes chunks with fold_bytes per intra-op thread (one task per chunk at 1 thread, two at 2
    threads here) and equals the stacked per-task calls either way."""
    import adaptlab.models.conv4 as conv4

    net = _net()
    net.fold_bytes = 5 * net.hidden * 28 * 28 * 8  # one float64 task of 5 images at the 28 px layer
    T, g = 4, torch.Generator().manual_seed(2)
    params = {k: v + 0.1 * torch.randn(T, *v.shape, generator=g, dtype=v.dtype) for k, v in net.named_parameters()}
    x = torch.randn(T, 5, 1, 28, 28, generator=g, dtype=torch.float64)
    want = torch.stack([functional_call(net, {k: v[t] for k, v in params.items()}, (x[t],)) for t in range(T)])
    chunks = []
    monkeypatch.setattr(conv4, "fold_chunk", lambda *a: chunks.append(fold_chunk(*a)) or chunks[-1])
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            chunks.clear()
            assert_close(net.forward_tasks(params, {}, x), want)
            assert chunks[0] == n  # the 28 px layer: n tasks per chunk
    finally:
        torch.set_num_threads(threads)
