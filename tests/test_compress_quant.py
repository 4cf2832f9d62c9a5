"""k-means and linear quantization, BN folding, integer-only kernels and the int8 model."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from adaptlab.compress import kmeans as km
from adaptlab.compress import linear as lq
from adaptlab.compress import size as sz
from adaptlab.compress.integer import convert_integer, fold_bn_model
from adaptlab.compress.torch_ref import torch_int8
from adaptlab.compress.train import train_steps
from adaptlab.errors import ConfigError
from adaptlab.eval.metrics import accuracy
from adaptlab.models.cnn import MNIST1DCNN, LeNet5, VGGNet
from test_compress_prune import with_bn_stats

from conftest import assert_close

# ------------------------------------------------------------------------------------------ k-means


def test_2bit_kmeans_leaves_4_distinct_values_at_a_lloyd_fixed_point():
    w = torch.randn(40, 30)
    code = km.kmeans_quantize(w, bits=2)
    q = code.decode()
    assert q.shape == w.shape and q.unique().numel() == 4
    # fixed point: each weight is at its nearest centroid, each centroid is the mean of its weights
    nearest = (w.flatten()[:, None] - code.codebook[None]).abs().argmin(1)
    assert torch.equal(nearest, code.labels)
    for k in range(4):
        assert_close(code.codebook[k], w.flatten()[code.labels == k].mean(), rtol=1e-5, atol=1e-6)  # float32
    with pytest.raises(ConfigError, match="bits"):
        km.kmeans_quantize(w, bits=0)


def test_centroid_gradient_is_the_sum_of_weight_gradients_per_cluster():
    w = torch.randn(6, 5, dtype=torch.float64)
    code = km.kmeans_quantize(w, bits=3)
    book = code.codebook.clone().requires_grad_(True)
    x = torch.randn(5, 4, dtype=torch.float64)
    loss = (code.decode(book) @ x).sin().sum()
    (g_book,) = torch.autograd.grad(loss, book)
    w_leaf = code.decode().detach().requires_grad_(True)
    (g_w,) = torch.autograd.grad((w_leaf @ x).sin().sum(), w_leaf)
    assert_close(g_book, km.centroid_gradient(g_w, code))
    assert torch.autograd.gradcheck(lambda b: (code.decode(b) @ x).sin(), (book,))


def test_qat_keeps_labels_fixed_and_lowers_the_loss():
    torch.manual_seed(0)
    model = LeNet5().eval()
    x, y = torch.randn(64, 28, 28), torch.randint(0, 10, (64,))
    params = {n: p.detach() for n, p in model.named_parameters()}
    names = ["features.0.weight", "features.3.weight", "classifier.1.weight"]
    codes = km.quantize_model_kmeans(params, names, bits=2)
    books = {n: c.codebook.clone().requires_grad_(True) for n, c in codes.items()}

    def loss_fn(xb, yb):
        return F.cross_entropy(torch.func.functional_call(model, km.kmeans_params(params, codes, books), (xb,)), yb)

    before = float(loss_fn(x, y).detach())
    train_steps(model, books.values(), x, y, steps=30, batch_size=64, lr=1e-2,
                generator=torch.Generator().manual_seed(0), loss_fn=loss_fn)
    assert float(loss_fn(x, y).detach()) < before
    for n in names:
        decoded = codes[n].decode(books[n].detach())
        assert decoded.unique().numel() <= 4
        assert torch.equal(decoded.flatten(), books[n].detach()[codes[n].labels])


def test_kmeans_size_accounting_in_bits():
    params = {"w": torch.zeros(10, 10), "b": torch.zeros(10)}
    assert sz.kmeans_bits(params, {"w": 4}) == 100 * 4 + 16 * 32 + 10 * 32
    assert sz.dense_bits(params) == 110 * 32
    assert sz.sparse_bits({"w": torch.eye(4)}) == 4 * 32


# ------------------------------------------------------------------------------------------- linear


def test_two_bit_range_gives_the_textbook_scale_and_zero_point():
    S, Z = lq.linear_qparams(-0.25, 0.75, bits=2)
    assert S == pytest.approx(1 / 3) and Z == -1
    q = lq.quantize(torch.tensor([-0.25, 0.0, 0.75]), S, Z, bits=2)
    assert q.tolist() == [-2, -1, 1]                           # r_min -> q_min, 0 -> Z exactly, r_max -> q_max
    with pytest.raises(ConfigError, match="bits"):
        lq.linear_qparams(0, 1, bits=0)


def test_quantize_dequantize_error_is_at_most_half_a_step():
    r = torch.rand(1000, dtype=torch.float64) * 3 - 1
    S, Z = lq.linear_qparams(-1, 2, bits=8)
    err = (lq.dequantize(lq.quantize(r, S, Z), S, Z) - r).abs()
    assert float(err.max()) <= S / 2 + 1e-12


def test_symmetric_per_channel_weights_and_fixed_point_multiplier():
    w = torch.randn(5, 3, 3, 3)
    q, S = lq.quantize_weight_per_channel(w)
    assert q.dtype == torch.int8 and q.abs().flatten(1).amax(1).tolist() == [127] * 5
    assert_close(S.float(), w.flatten(1).abs().amax(1) / 127, rtol=1e-6, atol=0)  # float32 weights
    M = torch.tensor([1e-4, 0.0123, 0.5, 0.999, 3.7], dtype=torch.float64)
    M0, shift = lq.requant_multiplier(M)
    assert torch.all(M0 < 2 ** 22) and torch.all(M0 >= 2 ** 21)
    assert_close(M0.double() * torch.pow(2.0, -shift.double()), M, rtol=2.0 ** -22, atol=0)


def test_bn_folding_preserves_outputs():
    torch.manual_seed(0)
    x = torch.randn(8, 1, 28, 28, dtype=torch.float64)
    model = with_bn_stats(VGGNet((4, 6, 5, 3)).double(), x)
    folded = fold_bn_model(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert_close(folded(x), model(x))


@pytest.mark.parametrize("stride,padding,relu", [((1, 1), (1, 1), True), ((2, 1), (0, 2), False)])
def test_integer_conv_equals_the_float_simulation_exactly(stride, padding, relu):
    g = torch.Generator().manual_seed(0)
    qx = torch.randint(-128, 128, (3, 4, 9, 8), generator=g, dtype=torch.int8)
    qw = torch.randint(-127, 128, (5, 4, 3, 3), generator=g, dtype=torch.int8)
    q_bias = torch.randint(-5000, 5000, (5,), generator=g, dtype=torch.int32)
    M0, shift = lq.requant_multiplier(torch.rand(5, generator=g, dtype=torch.float64) * 1e-3 + 1e-4)
    args = (qx, 7, qw, q_bias, M0, shift, -20, stride, padding, relu)
    got = lq.int_conv2d(*args)
    assert got.dtype == torch.int8
    assert torch.equal(got, lq.simulate_quantized_op(*args))
    if relu:
        assert int(got.min()) >= -20                           # ReLU absorbed: clamped at the output zero point


def test_integer_linear_equals_the_float_simulation_exactly():
    g = torch.Generator().manual_seed(1)
    qx = torch.randint(-128, 128, (6, 50), generator=g, dtype=torch.int8)
    qw = torch.randint(-127, 128, (7, 50), generator=g, dtype=torch.int8)
    q_bias = torch.randint(-5000, 5000, (7,), generator=g, dtype=torch.int32)
    M0, shift = lq.requant_multiplier(torch.full((7,), 3e-4, dtype=torch.float64))
    for relu in (False, True):
        args = (qx, -3, qw, q_bias, M0, shift, 11)
        assert torch.equal(lq.int_linear(*args, relu=relu), lq.simulate_quantized_op(*args, relu=relu))


def test_integer_conv_tracks_the_real_valued_conv():
    """Dequantized output of the integer conv is within ~1 step of the float conv of the same tensors."""
    torch.manual_seed(0)
    x, w, b = torch.rand(2, 3, 8, 8) * 2 - 0.5, torch.randn(4, 3, 3, 3) * 0.3, torch.randn(4) * 0.1
    y = F.relu(F.conv2d(x, w, b, padding=1))
    S_x, Z_x = lq.linear_qparams(float(x.min()), float(x.max()))
    S_y, Z_y = lq.linear_qparams(0.0, float(y.max()))
    qw, S_w = lq.quantize_weight_per_channel(w)
    q_bias = torch.round(b.double() / (S_w * S_x)).to(torch.int32)
    M0, shift = lq.requant_multiplier(S_w * S_x / S_y)
    q = lq.int_conv2d(lq.quantize(x, S_x, Z_x), Z_x, qw, q_bias, M0, shift, Z_y, padding=(1, 1), relu=True)
    assert float((lq.dequantize(q, S_y, Z_y) - y).abs().max()) < 3 * S_y


@pytest.mark.parametrize("make,shape", [(lambda: VGGNet((4, 6)), (5, 28, 28)), (MNIST1DCNN, (5, 40))])
def test_integer_model_matches_float_on_random_nets(make, shape):
    torch.manual_seed(0)
    model = make().eval()
    x = torch.randn(*shape)
    qm = convert_integer(model, [x])
    with torch.no_grad():
        ref = model(x)
    assert float((qm(x) - ref).abs().max()) < 0.1 * float(ref.abs().max())


# ------------------------------------------------------------------- trained model: int8 vs float


@functools.lru_cache(maxsize=1)
def _trained_lenet():
    """A LeNet trained for 300 steps on 6000 MNIST images (cached for the test session)."""
    from adaptlab.data.mnist import load_mnist

    ds = load_mnist()
    torch.manual_seed(0)
    model = LeNet5()
    train_steps(model, model.parameters(), ds.train_x[:6000], ds.train_y[:6000], steps=300, batch_size=64,
                lr=3e-3, generator=torch.Generator().manual_seed(0))
    return model.eval(), ds.train_x[6000:6512], ds.test_x[:2000], ds.test_y[:2000]


def test_int8_model_is_within_one_point_of_float_on_a_trained_model():
    model, calib, tx, ty = _trained_lenet()
    acc = accuracy(model, tx, ty)
    assert acc > 0.9                                           # the test model really is trained
    qm = convert_integer(model, calib.split(128))
    assert abs(accuracy(qm.forward_int, tx, ty) - acc) <= 0.01
    tq = torch_int8(copy.deepcopy(model), [c.unsqueeze(1) for c in calib.split(128)])
    assert abs(accuracy(lambda x: tq(x.unsqueeze(1)), tx, ty) - acc) <= 0.02
    assert qm.size_bits() < sz.dense_bits(dict(model.named_parameters())) / 3.5   # ~4x smaller


def test_channels_last_kernels_equal_the_nchw_ones_and_maxpool_equals_torch():
    g = torch.Generator().manual_seed(2)
    qx = torch.randint(-128, 128, (2, 3, 10, 7), generator=g, dtype=torch.int8)
    qw = torch.randint(-127, 128, (4, 3, 3, 3), generator=g, dtype=torch.int8)
    q_bias = torch.randint(-500, 500, (4,), generator=g, dtype=torch.int32)
    M0, shift = lq.requant_multiplier(torch.full((4,), 2e-3, dtype=torch.float64))
    args = (5, qw, q_bias, M0, shift, -9, (1, 2), (1, 1), True)
    nchw = lq.int_conv2d(qx, *args)
    nhwc = lq.int_conv2d(qx.permute(0, 2, 3, 1), *args, channels_last=True)
    assert torch.equal(nhwc.permute(0, 3, 1, 2), nchw)
    for k, s in ((2, 2), (3, 2)):
        ref = F.max_pool2d(qx.float(), k, s).to(torch.int8)
        assert torch.equal(lq.int_maxpool2d(qx, k, s), ref)
        assert torch.equal(lq.int_maxpool2d(qx.permute(0, 2, 3, 1), k, s, channels_last=True).permute(0, 3, 1, 2),
                           ref)


def test_the_exact_float64_matmul_fallback_equals_int_mm(monkeypatch):
    g = torch.Generator().manual_seed(3)
    a = torch.randint(-128, 128, (33, 72), generator=g, dtype=torch.int8)
    b = torch.randint(-128, 128, (72, 16), generator=g, dtype=torch.int8)
    fast = lq._int_matmul(a, b)
    monkeypatch.delattr(torch, "_int_mm")
    assert torch.equal(lq._int_matmul(a, b), fast)
    assert torch.equal(fast, a.long() @ b.long())
