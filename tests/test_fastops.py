"""fastops: the closed-form batch-norm double backward and the channels_last max-pool equal torch's own."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adaptlab.models.fastops import batch_norm_train, max_pool2

from conftest import assert_close


def _bn_inputs(shape=(3, 4, 5, 5), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64).mul_(2).add_(0.5)
    w = (torch.rand(shape[1], generator=g, dtype=torch.float64) + 0.5) * torch.tensor([1.0, -1.0]).repeat(
        shape[1] // 2).double()                                                # both signs of the scale
    b = torch.randn(shape[1], generator=g, dtype=torch.float64)
    return x, w, b, g


def test_batch_norm_train_gradcheck_and_gradgradcheck():
    x, w, b, _ = _bn_inputs()
    inputs = tuple(t.clone().requires_grad_() for t in (x, w, b))
    assert torch.autograd.gradcheck(batch_norm_train, inputs)
    assert torch.autograd.gradgradcheck(batch_norm_train, inputs)


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_batch_norm_train_second_derivatives_equal_torchs(fmt):
    """Values, first derivatives and the derivatives of those (the MAML pattern: a gradient taken with
    create_graph, then differentiated) equal F.batch_norm's; the upstream terms reach every input."""
    x0, w0, b0, g = _bn_inputs((4, 6, 5, 3))
    v, u = torch.randn(2, *x0.shape, generator=g, dtype=torch.float64)
    s = torch.randn(x0.shape[1], generator=g, dtype=torch.float64)
    got = []
    for bn in (batch_norm_train, lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True)):
        x = x0.contiguous(memory_format=fmt).requires_grad_()
        w, b = w0.clone().requires_grad_(), b0.clone().requires_grad_()
        y = bn(x, w, b)
        gx, gw, gb = torch.autograd.grad((y * y * v).sum(), (x, w, b), create_graph=True)
        second = torch.autograd.grad((gx * u).sum() + (gw * s).sum() + (gb * gb).sum() + (gx * gx).sum(), (x, w, b))
        got.append([y, gx, gw, gb, *second])
    for name, a, want in zip(["y", "gx", "gw", "gb", "ggx", "ggw", "ggb"], *got):
        assert_close(a.detach(), want.detach(), msg=name)
    assert all(t.abs().max() > 1e-3 for t in got[1][4:])  # the second derivatives are not zeros


def test_batch_norm_train_updates_running_statistics_as_torch():
    x, w, b, _ = _bn_inputs()
    mine = [torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)]
    ref = [t.clone() for t in mine]
    y = batch_norm_train(x, w, b, *mine, momentum=0.3)
    assert_close(y, F.batch_norm(x, *ref, w, b, training=True, momentum=0.3), atol=1e-12)
    assert_close(mine[0], ref[0], atol=1e-14)
    assert_close(mine[1], ref[1], atol=1e-14)
    assert not torch.equal(ref[1], torch.ones(4, dtype=torch.float64))  # the buffers did move


@pytest.mark.parametrize("shape", [(2, 3, 28, 28), (2, 3, 7, 7), (1, 2, 5, 6), (3, 4, 3, 3)])
def test_max_pool2_equals_max_pool2d_with_ties(shape):
    """Values and gradients of F.max_pool2d(x, 2), odd sizes (floor) and ties (first maximum in row-major
    order, as torch's kernel takes) included."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 3, shape, generator=g).double()  # values in {0, 1, 2}: most windows have ties
    gy = torch.randn(*shape[:2], shape[2] // 2, shape[3] // 2, generator=g, dtype=torch.float64)
    x, xr = x0.clone().requires_grad_(), x0.clone().requires_grad_()
    a, want = max_pool2(x), F.max_pool2d(xr, 2)
    assert torch.equal(a, want)
    assert torch.equal(torch.autograd.grad(a, x, gy)[0], torch.autograd.grad(want, xr, gy)[0])


def test_max_pool2_gradgradcheck():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 2, 6, 5, generator=g, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(max_pool2, (x,)) and torch.autograd.gradgradcheck(max_pool2, (x,))
