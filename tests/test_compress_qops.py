"""The fast int8 path (PyTorch's quantized kernels fed with our integers) against the exact reference kernels."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F

from adaptlab.compress import linear as lq
from adaptlab.compress import qops
from adaptlab.compress.integer import convert_integer
from adaptlab.eval.metrics import accuracy
from adaptlab.models.cnn import MNIST1DCNN, LeNet5, VGGNet

ENGINE = qops.fast_engine()
needs_engine = pytest.mark.skipif(ENGINE is None, reason="this PyTorch build has no quantized CPU engine "
                                  f"among {qops.ENGINES} (supported: {torch.backends.quantized.supported_engines})")


def _conv_op(g, c_in, c_out, k, M, stride=(1, 1), padding=(0, 0), relu=False, Z_y=-7, bias=3000):
    qw = torch.randint(-127, 128, (c_out, c_in, k, k), generator=g, dtype=torch.int8)
    q_bias = torch.randint(-bias, bias + 1, (c_out,), generator=g, dtype=torch.int32)
    M0, shift = lq.requant_multiplier(M)
    return dict(kind="conv", qw=qw, q_bias=q_bias, M0=M0, shift=shift, Z_y=Z_y, relu=relu, stride=stride,
                padding=padding)


def _fast(op, qx, Z_x):
    """One op through the fast path; conv input/output (N, C, H, W)."""
    return qops.run_packed([qops.pack_op(op, ENGINE)], qx, Z_x, ENGINE)


def _ref(op, qx, Z_x):
    args = (qx, Z_x, op["qw"], op["q_bias"], op["M0"], op["shift"], op["Z_y"])
    if op["kind"] == "conv":
        return lq.int_conv2d(*args, op["stride"], op["padding"], op["relu"])
    return lq.int_linear(*args, op["relu"])


def _exact_real(op, qx, Z_x):
    """(M (acc + q_b), M (|acc| + |q_b|)) in float64, exact (|acc| M0 < 2^53): the value both paths round, and
    the size of the terms a float32 requantization rounds."""
    M = op["M0"].double() * torch.pow(2.0, -op["shift"].double())
    x, w, b = qx.double() - Z_x, op["qw"].double(), op["q_bias"].double()
    if op["kind"] == "conv":
        acc = F.conv2d(x, w, None, op["stride"], op["padding"])
        M, b = M.view(1, -1, 1, 1), b.view(1, -1, 1, 1)
    else:
        acc = F.linear(x, w)
    return (acc + b) * M, (acc.abs() + b.abs()) * M


@needs_engine
def test_fast_accumulators_are_exact_where_requantization_cannot_round():
    """M = 1: the output is Z_y + acc + q_b, so any accumulator error shows. Inputs sit at the zero point 127
    (quint8 255) except for sparse -1 steps, so the raw u8 x s8 products (up to 255 x 127) would overflow a
    16-bit pair sum while the true accumulators stay small enough to read through the int8 output."""
    g = torch.Generator().manual_seed(0)
    op = _conv_op(g, 8, 6, 3, torch.ones(6, dtype=torch.float64), padding=(1, 1), Z_y=0, bias=20)
    qx = torch.full((3, 8, 9, 9), 127, dtype=torch.int8)
    qx[torch.rand(qx.shape, generator=g) < 0.04] = 126
    ref = _ref(op, qx, 127)
    assert torch.equal(_fast(op, qx, 127), ref)
    unclamped = (ref > -128) & (ref < 127)
    assert unclamped.float().mean() > 0.6 and ref[unclamped].unique().numel() > 50    # really reads acc values
    lin = dict(op, kind="linear", qw=op["qw"].flatten(1))
    qv = qx[:, :, :3, :3].flatten(1)                                                   # (3, 72)
    assert torch.equal(_fast(lin, qv, 127), _ref(lin, qv, 127))


@needs_engine
@pytest.mark.parametrize("stride,padding,relu", [((1, 1), (1, 1), True), ((2, 1), (0, 2), False)])
def test_fast_conv_and_linear_differ_from_the_reference_by_at_most_one_step_and_only_at_half_integers(
        stride, padding, relu):
    g = torch.Generator().manual_seed(1)
    M = torch.rand(16, generator=g, dtype=torch.float64) * 1.5e-3 + 5e-4          # outputs span the int8 range
    op = _conv_op(g, 12, 16, 3, M, stride, padding, relu, bias=30000)
    qx = torch.randint(-128, 128, (32, 12, 14, 14), generator=g, dtype=torch.int8)
    lin = dict(_conv_op(g, 12, 16, 3, M, relu=relu, bias=30000), kind="linear")
    lin["qw"] = lin["qw"].flatten(1)                                                  # (16, 108)
    qv = torch.randint(-128, 128, (4096, 108), generator=g, dtype=torch.int8)
    total = differ = 0
    for o, x, z in ((op, qx, 9), (lin, qv, -4)):
        fast, ref = _fast(o, x, z), _ref(o, x, z)
        diff = (fast.int() - ref.int()).abs()
        assert int(diff.max()) <= 1
        v, size = (t[diff > 0] for t in _exact_real(o, x, z))
        # a difference needs the exact M (acc + q_b) within float32 rounding (2^-24 relative) of a half-integer
        assert torch.all((v - v.floor() - 0.5).abs() <= 2.0 ** -20 * size.clamp_min(1))
        total, differ = total + diff.numel(), differ + int((diff > 0).sum())
    assert differ <= 1e-4 * total      # measured: 0 of these 280k; ~1 in 3M per layer of the int8 VGG / LeNet


@needs_engine
def test_exact_ties_round_to_even_on_the_fast_path_and_up_on_the_reference():
    """M = 2^-8 and inputs at the zero point (acc = 0): the output rounds q_b / 256 with no other error. At an
    exact tie k + 1/2 the reference gives k + 1 and the kernels the even one of k, k + 1; one step below or above
    a tie, both agree."""
    k = torch.arange(-60, 60)
    q_bias = torch.cat([256 * k + 128, 256 * k + 127, 256 * k + 129]).int()          # ties, then neighbours
    M0, shift = lq.requant_multiplier(torch.full((q_bias.numel(),), 2.0 ** -8, dtype=torch.float64))
    qw = torch.randint(-127, 128, (q_bias.numel(), 32), generator=torch.Generator().manual_seed(4),
                       dtype=torch.int8)
    op = dict(kind="linear", qw=qw, q_bias=q_bias, M0=M0, shift=shift, Z_y=0, relu=False)
    qv = torch.full((2, 32), 5, dtype=torch.int8)
    diff = _fast(op, qv, 5).int() - _ref(op, qv, 5).int()                            # (2, 360)
    expected = torch.cat([-(k % 2 == 0).int(), torch.zeros(2 * k.numel(), dtype=torch.int32)])
    assert torch.equal(diff, expected.expand(2, -1))


def test_quantize_quint8_holds_the_reference_input_integers_plus_128():
    S, Z = 0.0123456789, -3
    r = torch.cat([torch.randn(100_000) * 1.5, (torch.arange(-200, 200) + 0.5) * S])    # with ties of r / S
    u = qops.quantize_quint8(r, S, Z)
    assert u.q_zero_point() == Z + 128 and u.q_scale() == 1.0
    assert torch.equal(u.int_repr().int() - 128, lq.quantize(r, S, Z).int())


@needs_engine
@pytest.mark.parametrize("make,shape", [(lambda: VGGNet((8, 16, 16, 32)), (28, 28)), (LeNet5, (28, 28)),
                                        (MNIST1DCNN, (40,))])
def test_fast_model_matches_the_reference_model(make, shape):
    torch.manual_seed(0)
    model = make().eval()
    qm = convert_integer(model, [torch.randn(128, *shape)])
    assert qm.resolve_path() == "fast" and qm.path == "auto"
    x = torch.randn(256, *shape)
    ref, fast = qm.forward_int(x, path="reference"), qm.forward_int(x)
    diff = (fast.int() - ref.int()).abs()
    # a one-step difference inside the net can move later outputs by a step or two; rarely, and never much
    assert int(diff.max()) <= 3 and float((diff > 0).float().mean()) < 0.02
    assert float((fast.argmax(1) != ref.argmax(1)).float().mean()) < 0.01
    assert torch.equal(copy.deepcopy(qm).forward_int(x), fast)                       # packed cache is rebuilt
    assert torch.equal(pickle.loads(pickle.dumps(qm)).forward_int(x), fast)


@needs_engine
def test_fast_accuracy_is_within_a_tenth_of_a_point_of_the_reference_on_a_trained_lenet():
    from test_compress_quant import _trained_lenet

    model, calib, tx, ty = _trained_lenet()
    qm = convert_integer(model, calib.split(128))
    ref, fast = qm.forward_int(tx, path="reference"), qm.forward_int(tx, path="fast")
    assert abs(accuracy(lambda x: qm.forward_int(x, "fast"), tx, ty)
               - accuracy(lambda x: qm.forward_int(x, "reference"), tx, ty)) <= 0.001
    assert int((fast.argmax(1) != ref.argmax(1)).sum()) <= 2                       # of 2000 test images


def test_path_option_forces_either_path_and_auto_falls_back(monkeypatch):
    torch.manual_seed(0)
    model = LeNet5().eval()
    x = torch.randn(16, 28, 28)
    ref_model = convert_integer(model, [x], path="reference")
    assert ref_model.resolve_path() == "reference"
    with pytest.raises(ValueError, match="path='sometimes'.*auto, fast, reference"):
        convert_integer(model, [x], path="sometimes")
    with pytest.raises(ValueError, match="path='gpu'"):
        ref_model.forward_int(x, path="gpu")
    monkeypatch.setattr(qops, "fast_engine", lambda: None)                           # no usable engine
    qm = convert_integer(model, [x])
    assert qm.resolve_path() == "reference"
    assert torch.equal(qm.forward_int(x), ref_model.forward_int(x))
    with pytest.raises(ValueError, match="path='fast' needs"):
        qm.forward_int(x, path="fast")


@needs_engine
@pytest.mark.parametrize("saturate", [False, True])
def test_probe_rejects_a_kernel_that_saturates_16_bit_pair_sums(monkeypatch, saturate):
    """A stand-in kernel that sums adjacent u8 x s8 products in int16, saturating (as AVX2's vpmaddubsw does)
    or not: the probe passes the exact one and rejects the saturating one."""

    def stand_in(plan, qx, Z_x, engine):
        kind, packed, _, z = plan[0]
        w_q, bias = packed.unpack()
        u = (qx.view(torch.uint8) ^ 128).int()
        if kind == "conv":                                                             # im2col, (kh, kw, C) order
            cols, oh, ow = lq._im2col(u.permute(0, 2, 3, 1), tuple(w_q.shape[2:]), (1, 1), (1, 1), Z_x + 128)
            w, rows = w_q.int_repr().permute(0, 2, 3, 1).flatten(1).int(), cols
        else:
            w, rows = w_q.int_repr().int(), u
        pairs = (rows[:, None, :] * w[None]).view(rows.shape[0], w.shape[0], -1, 2).sum(-1)   # (rows, out, K/2)
        if saturate:
            pairs = pairs.clamp(-32768, 32767)
        acc = pairs.sum(-1) - (Z_x + 128) * w.sum(1)
        y = (acc + bias.round().int() + z - 128).clamp(-128, 127).to(torch.int8)
        return y.view(qx.shape[0], oh, ow, -1).permute(0, 3, 1, 2) if kind == "conv" else y

    qops.probe.cache_clear()
    try:
        monkeypatch.setattr(qops, "run_packed", stand_in)
        assert qops.probe(ENGINE) is not saturate
        assert not qops.probe("no-such-engine")
    finally:
        qops.probe.cache_clear()
