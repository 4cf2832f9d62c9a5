"""Batch norm and 2x2 max-pooling for second-order MAML on CPU: the same values and derivatives as torch's.

Second-order MAML differentiates a backward pass once more. Two of torch's CPU kernels are slow there on the
activations of a folded Conv4 meta-step (``benchmarks/results/maml_conv_profile.md``):

* the double backward of batch norm (``NativeBatchNormBackwardBackward0``) is composed of some forty tensor
  operations; :func:`batch_norm_train` keeps the fused kernels for the forward and the first backward and
  gives the backward its own closed-form derivative, about fifteen passes over the activation;
* ``max_pool2d`` over contiguous ``(N, C, H, W)`` tensors runs a scalar loop (5.5 ms for a (5, 256, 28, 28)
  float32 tensor, 0.2 ms on the same data in ``channels_last``); :func:`max_pool2` finds the window maxima in
  ``channels_last`` and gathers them, so values, indices and gradients are those of ``max_pool2d``.

Both are exact re-formulations (tested against torch's own functions in float64, with ``gradcheck`` and
``gradgradcheck``); :meth:`adaptlab.models.conv4.Conv4.forward_tasks` uses them.

Example::

    >>> x = torch.randn(4, 3, 8, 8, requires_grad=True)
    >>> w, b = torch.ones(3, requires_grad=True), torch.zeros(3, requires_grad=True)
    >>> y = max_pool2(batch_norm_train(x, w, b))
    >>> y.shape
    torch.Size([4, 3, 4, 4])
    >>> g = torch.autograd.grad(y.square().sum(), w, create_graph=True)[0]
    >>> torch.autograd.grad(g.sum(), x)[0].shape   # a second derivative through the batch norm
    torch.Size([4, 3, 8, 8])

References:
    S. Ioffe, C. Szegedy. Batch normalization: accelerating deep network training by reducing internal
    covariate shift. ICML 2015.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable


class _BatchNormBackward(torch.autograd.Function):
    """(gx, g_weight, g_bias) of batch norm with batch statistics; differentiable once more in closed form."""

    @staticmethod
    def forward(ctx, gy, x, weight, mean, invstd, eps):
        ctx.save_for_backward(gy, x, weight, mean, invstd)
        return torch.ops.aten.native_batch_norm_backward(gy, x, weight, None, None, mean, invstd, True, eps,
                                                         [True, True, True])

    @staticmethod
    @once_differentiable
    def backward(ctx, ggx, ggw, ggb):
        # per channel, sums over the N other entries: xh = (x - mu) r, gb = sum gy, gw = sum gy xh,
        # gx = w r (gy - gb / N - xh gw / N). Derivatives of S = <ggx, gx> + ggw gw + ggb gb:
        #   dS/dgy = w r (ggx - a1 - xh a2) + ggw xh + ggb,   a1 = mean(ggx), a2 = mean(ggx xh)
        #   dS/dw  = r P,  P = sum(ggx gy) - gb a1 - gw a2
        #   dS/dx  = r (G - mean(G) - xh mean(G xh)) - w P r^2 xh / N,  G = gy (ggw - w r a2) - ggx w r gw / N
        gy, x, weight, mean, invstd = ctx.saved_tensors
        dims = [0, *range(2, x.dim())]
        n = x.numel() // x.shape[1]
        shape = [1, -1] + [1] * (x.dim() - 2)
        r, w = invstd.view(shape), weight.view(shape)                      # (1, C, 1, 1)
        xh = (x - mean.view(shape)).mul_(r)                                # (N, C, H, W)
        wr = w * r
        gb = gy.sum(dims, keepdim=True)
        gw = (gy * xh).sum(dims, keepdim=True)
        zero = torch.zeros_like(r)
        ggw = zero if ggw is None else ggw.view(shape)
        ggb = zero if ggb is None else ggb.view(shape)
        if ggx is None:
            a1 = a2 = s_ggx_gy = zero
        else:
            a1 = ggx.sum(dims, keepdim=True) / n
            a2 = (ggx * xh).sum(dims, keepdim=True) / n
            s_ggx_gy = (ggx * gy).sum(dims, keepdim=True)
        p = s_ggx_gy - gb * a1 - gw * a2
        k1, k2 = ggw - wr * a2, wr * gw / n                               # G = gy k1 - ggx k2
        g_gy = (xh * k1).add_(ggb - wr * a1)
        g_x = (xh * (-r * (k1 * gw / n - k2 * a2 + w * p * r / n))).add_(-r * (k1 * gb / n - k2 * a1))
        g_x.addcmul_(gy, r * k1)
        if ggx is not None:
            g_gy.addcmul_(ggx, wr)
            g_x.addcmul_(ggx, -r * k2)
        return g_gy, g_x, (r * p).view(-1), None, None, None


class _BatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps):
        y, mean, invstd = torch.native_batch_norm(x, weight, bias, running_mean, running_var, True, momentum, eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps
        return y

    @staticmethod
    def backward(ctx, gy):
        x, weight, mean, invstd = ctx.saved_tensors
        gx, gw, gb = _BatchNormBackward.apply(gy, x, weight, mean, invstd, ctx.eps)
        return gx, gw, gb, None, None, None, None


def batch_norm_train(x: Tensor, weight: Tensor, bias: Tensor, running_mean: Tensor | None = None,
                     running_var: Tensor | None = None, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Batch norm with the batch's statistics, ``F.batch_norm(x, running_mean, running_var, weight, bias,
    training=True, momentum=momentum, eps=eps)``, whose backward has a closed-form derivative.

    :math:`y = w \\hat x + b`, :math:`\\hat x = (x - \\mu) / \\sqrt{\\sigma^2 + \\epsilon}` with the mean and
    (biased) variance of each channel over the other dims. The forward and the first backward are torch's fused
    kernels; the derivative of the backward (what second-order MAML evaluates) is written out per channel, so
    it takes about fifteen passes over ``x`` instead of the forty-odd operations of torch's generic double
    backward. It is not differentiable a third time (``once_differentiable``). Running statistics, when given,
    are updated in place as torch does.

    Args:
        x: ``(N, C, *)``.
        weight, bias: ``(C,)`` affine parameters.
        running_mean, running_var: ``(C,)`` buffers updated in place, or ``None``.
        momentum, eps: as in ``torch.nn.BatchNorm2d``.

    Returns:
        ``(N, C, *)``, equal to ``F.batch_norm(..., training=True)`` and with the same first and second
        derivatives (tests/test_maml_conv.py, float64).

    Example::

        >>> x, w, b = torch.randn(6, 2, 3, 3), torch.ones(2), torch.zeros(2)
        >>> torch.allclose(batch_norm_train(x, w, b), F.batch_norm(x, None, None, w, b, training=True), atol=1e-6)
        True
    """
    return _BatchNorm.apply(x, weight, bias, running_mean, running_var, momentum, eps)


def max_pool2(x: Tensor) -> Tensor:
    """``F.max_pool2d(x, 2)`` of ``(N, C, H, W)``: the same values, the same window maxima (the first in
    row-major order on ties) and so the same gradients, differentiable any number of times.

    On CPU the window maxima are found on a ``channels_last`` copy (torch's pooling kernel is vectorized there
    and a scalar loop for contiguous tensors; 5x faster forward and backward together on a (5, 256, 28, 28)
    float32 tensor) and the output gathers them from ``x``, so its backward is a scatter into ``x``'s shape. On
    other devices it is ``F.max_pool2d``.

    Example::

        >>> x = torch.randn(2, 3, 7, 7)
        >>> torch.equal(max_pool2(x), F.max_pool2d(x, 2))
        True
    """
    if x.device.type != "cpu":
        return F.max_pool2d(x, 2)
    with torch.no_grad():
        idx = F.max_pool2d(x.contiguous(memory_format=torch.channels_last), 2,
                           return_indices=True)[1].contiguous()          # (N, C, H/2, W/2), flat H*W index
    return x.flatten(2).gather(2, idx.flatten(2)).view(idx.shape)
