"""Fast path of the integer model: PyTorch's quantized CPU kernels (x86 = fbgemm + oneDNN) fed with our integers.

The reference kernels of :mod:`adaptlab.compress.linear` define the semantics; this module runs the *same*
converted :class:`~adaptlab.compress.integer.IntegerCNN` (same int8 weights, int32 biases, zero points and
fixed-point multipliers) through ``torch.ops.quantized.conv2d(_relu)`` / ``linear(_relu)`` and the quantized
max-pool, which use vectorised int8 GEMMs with fused requantization. The mapping:

* our int8 activation q with zero point Z is the quint8 value q + 128 with zero point Z + 128 (same real
  value); the kernels pad a conv with the input zero point, as the reference does;
* weights stay int8, symmetric per output channel (zero point 0);
* instead of the real scales the kernels get unit activation scales and weight scales M_c = M0_c 2^(-shift_c),
  so the multiplier they requantize with, S_x S_w,c / S_y, *is* our M_c (22 significant bits: exact in
  float32); the bias goes in as the float q_b,c M_c.

The int32 accumulators sum_k q_w (q_x - Z_x) are then the same integers (:func:`probe` checks it on inputs
that would saturate a 16-bit pairwise sum, and the path is only chosen where it passes). Requantization
differs: the kernels compute round(M (acc + q_b)) in float32 (ties to even) where the reference uses the exact
fixed-point floor(M (acc + q_b) + 1/2), so an output can differ by one step when M (acc + q_b) lies within
float32 rounding of a half-integer. tests/test_compress_qops.py bounds and counts those differences.

>>> import torch
>>> from adaptlab.compress import linear as lq, qops
>>> qx = torch.randint(-128, 128, (2, 5, 5, 3), dtype=torch.int8)           # (N, H, W, C)
>>> qw = torch.randint(-127, 128, (4, 3, 3, 3), dtype=torch.int8)
>>> M0, shift = lq.requant_multiplier(torch.full((4,), 1e-3, dtype=torch.float64))
>>> bias = torch.zeros(4, dtype=torch.int32)
>>> ref = lq.int_conv2d(qx, 3, qw, bias, M0, shift, -5, padding=(1, 1), channels_last=True)
>>> if qops.fast_engine() is not None:
...     op = qops.pack_op(dict(kind="conv", qw=qw, q_bias=bias, M0=M0, shift=shift, Z_y=-5, relu=False,
...                            stride=(1, 1), padding=(1, 1)), qops.fast_engine())
...     fast = qops.run_packed([op], qx.permute(0, 3, 1, 2), 3, qops.fast_engine()).permute(0, 2, 3, 1)
...     assert int((fast.int() - ref.int()).abs().max()) <= 1
"""

from __future__ import annotations

import contextlib
import functools
import warnings

import torch
import torch.nn.functional as F

ENGINES = ("x86", "fbgemm", "onednn")   # preference order; x86 picks fbgemm or oneDNN per op (the fastest here)


@contextlib.contextmanager
def _quantized_kernels(engine: str):
    """Select ``engine`` and allow the quantized kernels to run under deterministic mode.

    They resize their outputs with an op that has no deterministic variant (an error when a caller asked for
    deterministic algorithms, as the tests do); the integer results themselves are the same on every call.
    The deprecation notices of the quantized-tensor constructors are silenced.
    """
    prev_engine = torch.backends.quantized.engine
    det, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.backends.quantized.engine = engine
    if det:
        torch.use_deterministic_algorithms(False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        if det:
            torch.use_deterministic_algorithms(True, warn_only=warn_only)
        torch.backends.quantized.engine = prev_engine


def _to_quint8(q: torch.Tensor, Z: int) -> torch.Tensor:
    """int8 q (zero point Z) -> quint8 q + 128 (zero point Z + 128), unit scale: the same real value."""
    return torch._make_per_tensor_quantized_tensor(q.contiguous().view(torch.uint8) ^ 128, 1.0, Z + 128)


def quantize_quint8(r: torch.Tensor, S: float, Z: int) -> torch.Tensor:
    """:func:`~adaptlab.compress.linear.quantize` (8 bits) straight into the quint8 tensor :func:`run_packed` takes.

    clamp(round(r / S) + Z, -128, 127) + 128 = clamp(round(r / S) + Z + 128, 0, 255): the same integers in
    fewer passes (``torch.quantize_per_tensor`` is not used: it rounds r (1/S), which differs near ties).
    """
    u = torch.div(r, S).round_().add_(Z + 128).clamp_(0, 255).to(torch.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")           # deprecation notice of the quantized-tensor constructors
        return torch._make_per_tensor_quantized_tensor(u, 1.0, Z + 128)


def _from_quint8(u: torch.Tensor) -> torch.Tensor:
    return (u.int_repr() ^ 128).view(torch.int8)


def pack_op(op: dict, engine: str) -> tuple:
    """One op of an IntegerCNN (its dict) -> (kind, packed params or pool kernel, relu, quint8 output zero point)."""
    kind = op["kind"]
    if kind == "pool":
        return ("pool", (1, op["k1d"]) if op.get("pool1d") else op["kernel"][0], False, None)
    if kind == "flatten":
        return ("flatten", None, False, None)
    M = op["M0"].double() * torch.pow(2.0, -op["shift"].double())                # (C_out,) exact in float32
    with _quantized_kernels(engine):
        w = torch._make_per_channel_quantized_tensor(op["qw"].contiguous(), M, torch.zeros_like(op["M0"]), 0)
        bias = (op["q_bias"].double() * M).float()
        if kind == "conv":
            packed = torch.ops.quantized.conv2d_prepack(w, bias, list(op["stride"]), list(op["padding"]), [1, 1], 1)
        else:
            packed = torch.ops.quantized.linear_prepack(w, bias)
    return (kind, packed, bool(op["relu"]), int(op["Z_y"]) + 128)


def run_packed(plan: list[tuple], qx: torch.Tensor, Z_x: int, engine: str) -> torch.Tensor:
    """int8 input (N, C, H, W) with zero point Z_x (or the quint8 tensor of :func:`quantize_quint8`) through
    the packed ops -> int8 output (logits (N, classes))."""
    Q = torch.ops.quantized
    with _quantized_kernels(engine):
        u = qx if qx.is_quantized else _to_quint8(qx, Z_x)
        for kind, p, relu, z in plan:
            if kind == "conv":
                u = (Q.conv2d_relu if relu else Q.conv2d)(u, p, 1.0, z)
            elif kind == "linear":
                u = (Q.linear_relu if relu else Q.linear)(u, p, 1.0, z)
            elif kind == "pool":
                u = F.max_pool2d(u, p)
            else:
                u = u.flatten(1)                 # logical (C, H, W) order, as the reference flattens
        return _from_quint8(u)


@functools.cache
def probe(engine: str) -> bool:
    """Whether ``engine``'s int8 conv and linear give exactly the reference integers where no rounding is involved.

    M = 1 and inputs all at the zero point 255 (quint8): every accumulator is exactly 0, while the raw
    u8 x s8 products (255 x +-127) overflow a 16-bit pairwise sum, the saturation that some AVX2 kernels show
    without ``reduce_range``. Outputs must equal Z_y + q_b exactly.
    """
    from adaptlab.compress.linear import int_conv2d, int_linear, requant_multiplier

    if engine not in torch.backends.quantized.supported_engines:
        return False
    g = torch.Generator().manual_seed(0)
    qw = torch.randint(100, 128, (8, 16, 3, 3), generator=g, dtype=torch.int8)       # same-sign, large
    q_bias = torch.randint(-60, 60, (8,), generator=g, dtype=torch.int32)
    M0, shift = requant_multiplier(torch.ones(8, dtype=torch.float64))
    qx = torch.full((2, 16, 6, 6), 127, dtype=torch.int8)                             # quint8 255 = zero point
    qv = torch.full((2, 16 * 3 * 3), 127, dtype=torch.int8)                           # the linear's input
    try:
        conv = dict(kind="conv", qw=qw, q_bias=q_bias, M0=M0, shift=shift, Z_y=3, relu=False, stride=(1, 1),
                    padding=(1, 1))
        lin = dict(kind="linear", qw=qw.flatten(1), q_bias=q_bias, M0=M0, shift=shift, Z_y=3, relu=False)
        got_c = run_packed([pack_op(conv, engine)], qx, 127, engine)
        got_l = run_packed([pack_op(lin, engine)], qv, 127, engine)
    except RuntimeError:
        return False
    ref_c = int_conv2d(qx, 127, qw, q_bias, M0, shift, 3, padding=(1, 1))
    ref_l = int_linear(qv, 127, qw.flatten(1), q_bias, M0, shift, 3)
    return torch.equal(got_c, ref_c) and torch.equal(got_l, ref_l)


@functools.cache
def fast_engine() -> str | None:
    """The first of :data:`ENGINES` this PyTorch build has and whose kernels pass :func:`probe`, else None."""
    return next((e for e in ENGINES if probe(e)), None)
