"""Linear (affine) quantization, batch-norm folding and integer-only conv / linear kernels.

A real value r is represented by an integer q with scale S and zero point Z::

    r = S (q - Z),   S = (r_max - r_min) / (q_max - q_min),
    Z = clamp(round(q_min - r_min / S), q_min, q_max)

Weights use symmetric per-output-channel scales (Z = 0, S_c = max|W_c| / (2^(n-1) - 1)); activations use
asymmetric per-tensor scales calibrated on a few batches. A conv/linear layer y = W x + b then runs with
integers only (Jacob et al. 2018)::

    acc_c = sum_k q_w[c,k] (q_x[k] - Z_x) + q_b[c]            int8 x int8 products, int32 accumulation
    q_b[c] = round(b_c / (S_w[c] S_x))                         int32 bias, scale S_w S_x, zero point 0
    q_y[c] = clamp(Z_y + round(M_c acc_c), lo, q_max)          M_c = S_w[c] S_x / S_y = M0_c 2^(-shift_c)

``round(M acc)`` is a fixed-point multiply and rounding right shift ((acc M0 + 2^(shift-1)) >> shift),
M0 holding 22 significant bits (relative error of M below 2^-22, and acc * M0 < 2^53 so the float64
reference below is exact). Padding is done with Z_x (the integer that means 0.0), and a following ReLU is
absorbed by clamping at lo = Z_y instead of q_min. The input zero point is handled as
sum q_w q_x - Z_x sum q_w, so the matmul itself is int8 x int8 -> int32 (``torch._int_mm``).

Batch norm after a conv is folded into it first: W' = W gamma / sigma, b' = (b - mu) gamma / sigma + beta with
sigma = sqrt(var + eps).

References:
    B. Jacob et al. Quantization and training of neural networks for efficient integer-arithmetic-only
    inference. CVPR 2018.
    R. Krishnamoorthi. Quantizing deep convolutional networks for efficient inference: a whitepaper. 2018.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from adaptlab.compress.kmeans import check_bits

_M0_BITS = 22


def qrange(bits: int, signed: bool = True) -> tuple[int, int]:
    """(q_min, q_max): [-2^(n-1), 2^(n-1) - 1] signed, [0, 2^n - 1] unsigned."""
    check_bits(bits)
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)


def linear_qparams(r_min: float, r_max: float, bits: int = 8, signed: bool = True) -> tuple[float, int]:
    """Scale and zero point of the asymmetric quantizer covering [r_min, r_max] (0 always representable).

    Example: [-0.25, 0.75] at 2 bits (q in [-2, 1]) gives S = 1/3, Z = round(-2 + 0.75) = -1.
    """
    q_min, q_max = qrange(bits, signed)
    r_min, r_max = min(float(r_min), 0.0), max(float(r_max), 0.0)
    S = (r_max - r_min) / (q_max - q_min) if r_max > r_min else 1.0
    Z = int(min(max(round(q_min - r_min / S), q_min), q_max))
    return S, Z


def quantize(r: torch.Tensor, S, Z, bits: int = 8, signed: bool = True) -> torch.Tensor:
    """q = clamp(round(r / S) + Z, q_min, q_max) as int32 (int8 storage when bits <= 8 and signed)."""
    q_min, q_max = qrange(bits, signed)
    q = (torch.round(r / S) + Z).clamp(q_min, q_max)
    return q.to(torch.int8 if bits <= 8 and signed else torch.int32)


def dequantize(q: torch.Tensor, S, Z) -> torch.Tensor:
    """r = S (q - Z)."""
    return S * (q.to(torch.float32 if not torch.is_tensor(S) else S.dtype) - Z)


def quantize_weight_per_channel(w: torch.Tensor, bits: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel quantization: (q (same shape, int8), S (C_out,) float64), Z = 0."""
    q_max = 2 ** (bits - 1) - 1
    S = (w.detach().double().flatten(1).abs().amax(dim=1) / q_max).clamp_min(1e-12)   # (C_out,)
    shape = (-1,) + (1,) * (w.dim() - 1)
    q = torch.round(w.detach().double() / S.view(shape)).clamp(-q_max, q_max)
    return q.to(torch.int8 if bits <= 8 else torch.int32), S


def fold_bn(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.modules.batchnorm._BatchNorm
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode batch norm into the preceding conv.

    Returns (W', b') with W' = W g / s and b' = (b - mu) g / s + beta, s = sqrt(var + eps).
    """
    sigma = torch.sqrt(bn.running_var + bn.eps)
    g = bn.weight / sigma if bn.affine else 1.0 / sigma                        # (C_out,)
    b = bias if bias is not None else torch.zeros_like(bn.running_mean)
    beta = bn.bias if bn.affine else torch.zeros_like(b)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    return weight * g.view(shape), (b - bn.running_mean) * g + beta


def requant_multiplier(M: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """M = M0 2^(-shift) with M0 in [2^21, 2^22) (int64), shift >= 1 (int64); M > 0, float64 (C,)."""
    m, e = torch.frexp(M.double())                                  # M = m 2^e, m in [0.5, 1)
    M0 = torch.round(m * 2.0 ** _M0_BITS).to(torch.int64)
    shift = (_M0_BITS - e).to(torch.int64)
    over = M0 == 2 ** _M0_BITS                                      # m rounded up to 1.0
    M0, shift = torch.where(over, M0 // 2, M0), torch.where(over, shift - 1, shift)
    if (shift < 1).any():
        raise ValueError("requantization multiplier too large (S_w S_x / S_y >= 2^21)")
    return M0, shift


def requantize(acc: torch.Tensor, M0: torch.Tensor, shift: torch.Tensor, Z_y: int, lo: int, hi: int,
               offset: torch.Tensor | None = None) -> torch.Tensor:
    """Integer-only: clamp(Z_y + (((acc + offset) M0 + 2^(shift-1)) >> shift), lo, hi) -> int8.

    acc (..., C) int32; offset (C,) integer (added in int64, e.g. the bias); M0, shift (C,) int64.
    """
    v = acc.to(torch.int64)
    if offset is not None:
        v.add_(offset.to(torch.int64))
    v.mul_(M0).add_(torch.ones_like(shift) << (shift - 1))
    return v.bitwise_right_shift_(shift).add_(Z_y).clamp_(lo, hi).to(torch.int8)


def _int_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """int8 (m, k) x int8 (k, n) -> int32 (m, n)."""
    if hasattr(torch, "_int_mm") and a.device.type == "cpu":
        return torch._int_mm(a.contiguous(), b.contiguous())
    # Elsewhere (GPU integer matmul has shape constraints; no int32 GEMM): float64 is exact here, since
    # |sum| <= k * 128 * 128 < 2^53 for any realistic k.
    return (a.double() @ b.double()).to(torch.int32)


def _im2col(qx: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
            pad_value: int) -> tuple[torch.Tensor, int, int]:
    """(N, H, W, C) int8 -> (N*OH*OW, kh*kw*C) int8, padding with ``pad_value`` (the input zero point).

    Columns are ordered (kh, kw, C), so every copied run is a contiguous channel vector.
    """
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    if ph or pw:
        qx = F.pad(qx, (0, 0, pw, pw, ph, ph), value=pad_value)
    n, h, w, _ = qx.shape
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    cols = torch.cat([qx[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
                      for i in range(kh) for j in range(kw)], dim=3)   # (N, OH, OW, kh*kw*C)
    return cols.view(n * oh * ow, -1), oh, ow


def int_conv2d(qx, Z_x: int, qw, q_bias, M0, shift, Z_y: int, stride=(1, 1), padding=(0, 0), relu=False,
               bits: int = 8, channels_last: bool = False) -> torch.Tensor:
    """Integer-only conv: int8 (N, C, H, W) -> int8 (N, C_out, OH, OW). See the module docstring.

    Args:
        qx: int8 input; Z_x its zero point. qw: int8 weight (C_out, C, kh, kw), symmetric (Z = 0).
        q_bias: int32 (C_out,). M0, shift: int64 (C_out,) from :func:`requant_multiplier`.
        Z_y: output zero point; relu: clamp at Z_y (absorbs a following ReLU).
        channels_last: input (N, H, W, C) and output (N, OH, OW, C_out) instead (no layout copies; the
            integer model runs in this layout).
    """
    q_min, q_max = qrange(bits)
    x = qx if channels_last else qx.permute(0, 2, 3, 1)
    cols, oh, ow = _im2col(x, tuple(qw.shape[2:]), tuple(stride), tuple(padding), Z_x)
    w2 = qw.permute(0, 2, 3, 1).reshape(qw.shape[0], -1)            # (C_out, kh*kw*C), the column order
    acc = _int_matmul(cols, w2.t())                                 # (N*OH*OW, C_out) int32
    offset = q_bias.to(torch.int64) - Z_x * w2.to(torch.int64).sum(1)   # (C_out,): bias - Z_x sum_k q_w
    y = requantize(acc, M0, shift, Z_y, Z_y if relu else q_min, q_max, offset).view(qx.shape[0], oh, ow, -1)
    return y if channels_last else y.permute(0, 3, 1, 2).contiguous()


def int_linear(qx, Z_x: int, qw, q_bias, M0, shift, Z_y: int, relu=False, bits: int = 8) -> torch.Tensor:
    """Integer-only linear: int8 (N, in) -> int8 (N, out); same arithmetic as :func:`int_conv2d`."""
    q_min, q_max = qrange(bits)
    acc = _int_matmul(qx, qw.t())                                   # (N, out) int32
    offset = q_bias.to(torch.int64) - Z_x * qw.to(torch.int64).sum(1)
    return requantize(acc, M0, shift, Z_y, Z_y if relu else q_min, q_max, offset)


def simulate_quantized_op(qx, Z_x: int, qw, q_bias, M0, shift, Z_y: int, stride=(1, 1), padding=(0, 0),
                          relu=False, bits: int = 8) -> torch.Tensor:
    """Float64 reference of the same quantized conv (4-D qw) or linear (2-D qw): exact, hence equal."""
    q_min, q_max = qrange(bits)
    x = qx.double() - Z_x                                           # zero padding of (q - Z) = Z padding of q
    if qw.dim() == 4:
        acc = F.conv2d(x, qw.double(), q_bias.double(), stride=stride, padding=padding)
        M = (M0.double() * torch.pow(2.0, -shift.double())).view(1, -1, 1, 1)
    else:
        acc = F.linear(x, qw.double(), q_bias.double())
        M = M0.double() * torch.pow(2.0, -shift.double())
    y = torch.floor(acc * M + 0.5) + Z_y
    return y.clamp(Z_y if relu else q_min, q_max).to(torch.int8)


def int_maxpool2d(qx: torch.Tensor, kernel: int, stride: int | None = None, channels_last: bool = False
                  ) -> torch.Tensor:
    """Max-pool on int8 (quantization is monotone, so it commutes with max): (N, C, H, W) -> (N, C, H', W').

    With ``channels_last``: (N, H, W, C) -> (N, H', W', C).
    """
    stride = stride or kernel
    x = qx if channels_last else qx.permute(0, 2, 3, 1)
    h, w = x.shape[1:3]
    oh, ow = (h - kernel) // stride + 1, (w - kernel) // stride + 1
    y = None
    for i in range(kernel):                                         # elementwise max of kernel^2 strided views
        for j in range(kernel):
            v = x[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride]
            y = v.clone() if y is None else torch.maximum(y, v, out=y)
    return y if channels_last else y.permute(0, 3, 1, 2)


def calibration_qparams(r_min: float, r_max: float, bits: int = 8) -> tuple[float, int]:
    """Activation (S, Z) from a calibrated range; guards a zero-width range."""
    if not (math.isfinite(r_min) and math.isfinite(r_max)):
        raise ValueError(f"calibration range [{r_min}, {r_max}] is not finite")
    return linear_qparams(r_min, r_max, bits)
