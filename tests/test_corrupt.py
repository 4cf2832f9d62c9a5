"""Corruptions, shifts and the CIFAR-10(-C) reader: each corruption's defining property, determinism under a
generator, bad names and severities refused, and the CIFAR path on a tiny fake folder."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from adaptlab.data import CORRUPTIONS, PARAMS, corrupt, load_cifar10, load_cifar10c, pad32, permute_labels
from adaptlab.data.corruptions import disk_kernel, motion_kernels
from adaptlab.data.shift import subpopulation
from adaptlab.errors import DataError


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _digits(n=16):
    """Smooth blobs with edges: a stand-in for digits with real high-frequency content."""
    g = _gen(1)
    x = (torch.rand(n, 1, 8, 8, generator=g) > 0.6).float()
    return torch.nn.functional.interpolate(x, size=(32, 32), mode="nearest")


def _hf_energy(x):
    """Energy of the top half of the 2-D spectrum (|frequency| > Nyquist / 2 in either axis)."""
    f = torch.fft.fftshift(torch.fft.fft2(x - x.mean(dim=(-2, -1), keepdim=True)), dim=(-2, -1)).abs() ** 2
    h = x.shape[-1]
    mask = torch.ones(h, h, dtype=torch.bool)
    mask[h // 4: 3 * h // 4, h // 4: 3 * h // 4] = False
    return float(f[..., mask].sum())


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_every_corruption_keeps_shape_range_and_is_determined_by_its_generator(name):
    x = _digits(4)
    a, b = corrupt(x, name, 3, _gen(5)), corrupt(x, name, 3, _gen(5))
    assert a.shape == x.shape and a.dtype == x.dtype and float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(a, b)
    assert not torch.equal(a, x)
    assert corrupt(x[:, 0], name, 3, _gen(5)).shape == x[:, 0].shape  # (N, H, W) works too


def test_noise_strength_grows_with_severity():
    x = torch.full((64, 1, 32, 32), 0.5)
    stds = [float((corrupt(x, "gaussian_noise", s, _gen()) - x).std()) for s in range(1, 6)]
    assert stds == sorted(stds) and abs(stds[0] - 0.08) < 0.005  # below clipping: std is the parameter
    shot = [float(corrupt(x, "shot_noise", s, _gen()).var()) for s in range(1, 6)]
    assert shot == sorted(shot)
    assert abs(shot[0] - 0.5 / 60) < 0.001  # Var Poisson(x c) / c = x / c
    for s in range(1, 6):
        out = corrupt(x, "impulse_noise", s, _gen())
        hit = (out != 0.5).float().mean()
        assert abs(float(hit) - PARAMS["impulse_noise"][s - 1]) < 0.01
        assert set(out[out != 0.5].unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("name", ["defocus_blur", "motion_blur", "pixelate"])
def test_blurs_lower_high_frequency_energy_monotonically_and_keep_flat_images(name):
    x = _digits()
    energy = [_hf_energy(corrupt(x, name, s, _gen())) for s in range(1, 6)]
    if name == "pixelate":  # its block grid adds edges of its own: the defining property is the lost resolution
        for s in range(1, 6):
            side = round(32 * PARAMS["pixelate"][s - 1])
            out = corrupt(x, name, s, _gen())
            assert max(len(row.unique()) for row in out[:, 0].flatten(0, 1)) <= side
        noise = torch.rand(4, 1, 32, 32, generator=_gen(2))  # pixel-level detail: averaged away
        assert _hf_energy(corrupt(noise, name, 1, _gen())) < 0.5 * _hf_energy(noise)
    else:
        assert energy[0] < _hf_energy(x) and energy == sorted(energy, reverse=True)
    flat = torch.full((2, 1, 32, 32), 0.3)
    assert torch.allclose(corrupt(flat, name, 5, _gen()), flat, atol=1e-6)  # kernels sum to 1


def test_blur_kernels_are_normalised_disks_and_lines():
    k = disk_kernel(2.0)
    assert k.shape == (5, 5) and abs(float(k.sum()) - 1) < 1e-6 and float(k[0, 0]) == 0 and k[2, 2] == k.max()
    m = motion_kernels(5, torch.tensor([0.0]))[0]
    assert abs(float(m.sum()) - 1) < 1e-6 and bool((m[2] > 0).all()) and torch.allclose(m[2], m[2].flip(0))
    assert float(m[[0, 1, 3, 4]].sum()) < 1e-6  # angle 0: all mass on the middle row


def test_contrast_scales_the_spread_and_brightness_shifts_the_mean():
    x = 0.25 + 0.5 * _digits()
    for s in range(1, 6):
        c = corrupt(x, "contrast", s, _gen())
        ratio = c.std(dim=(1, 2, 3)) / x.std(dim=(1, 2, 3))
        assert torch.allclose(ratio, torch.full_like(ratio, PARAMS["contrast"][s - 1]), atol=1e-5)
        assert torch.allclose(c.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=1e-6)
    dark = torch.full((2, 1, 32, 32), 0.2)
    for s in range(1, 6):
        shift = float(corrupt(dark, "brightness", s, _gen()).mean() - dark.mean())
        assert abs(shift - PARAMS["brightness"][s - 1]) < 1e-6


def test_jpeg_error_grows_as_quality_drops_and_elastic_moves_pixels_more():
    x = _digits()
    jerr = [float((corrupt(x, "jpeg", s, _gen()) - x).abs().mean()) for s in (1, 5)]
    assert 0 < jerr[0] < jerr[1]
    eerr = [float((corrupt(x, "elastic", s, _gen()) - x).abs().mean()) for s in range(1, 6)]
    assert eerr == sorted(eerr)
    flat = torch.full((2, 1, 32, 32), 0.7)
    assert torch.allclose(corrupt(flat, "elastic", 5, _gen()), flat, atol=1e-6)  # a warp of a flat image


@pytest.mark.parametrize("name, sev, match", [("fog", 1, "corruption 'fog' is unknown; expected one of gaussian"),
                                              ("contrast", 0, "severity=0 is invalid; expected an integer in 1..5"),
                                              ("contrast", 6, "severity=6")])
def test_bad_corruption_or_severity_is_one_clear_error(name, sev, match):
    with pytest.raises(ValueError, match=match):
        corrupt(torch.zeros(1, 1, 4, 4), name, sev)


def test_label_and_subpopulation_shifts():
    y = torch.arange(10)
    assert permute_labels(y, 5).tolist() == [1, 2, 3, 4, 0, 5, 6, 7, 8, 9]
    x = torch.arange(10.0).view(10, 1, 1, 1)
    xs, ys = subpopulation(x, y)
    assert ys.tolist() == [0, 1, 2, 3, 4] and xs.flatten().tolist() == [5, 6, 7, 8, 9]
    assert pad32(torch.ones(2, 28, 28)).shape == (2, 1, 32, 32) and float(pad32(torch.ones(1, 28, 28))[0, 0, 0, 0]) == 0


def _fake_cifar(root, n=3):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, f in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        data = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": [(i + j) % 10 for j in range(n)]}
        (d / f).write_bytes(pickle.dumps(data, protocol=2))
    c = root / "CIFAR-10-C"
    c.mkdir()
    imgs = np.stack([np.full((n, 32, 32, 3), 10 * s, np.uint8) for s in range(1, 6)]).reshape(5 * n, 32, 32, 3)
    np.save(c / "gaussian_noise.npy", imgs)
    np.save(c / "jpeg_compression.npy", imgs)
    np.save(c / "labels.npy", np.tile(np.arange(n), 5))
    return d


def test_cifar_reader_on_a_fake_folder(tmp_path):
    d = _fake_cifar(tmp_path)
    for root in (tmp_path, d):
        ds = load_cifar10(root)
        assert ds.train_x.shape == (15, 3, 32, 32) and ds.test_y.tolist() == [5, 6, 7]
    raw = pickle.loads((d / "test_batch").read_bytes())["data"]
    assert torch.equal(ds.test_x[0], torch.from_numpy(raw[0].reshape(3, 32, 32)).float() / 255)
    x, y = load_cifar10c(tmp_path, "jpeg", 4)
    assert x.shape == (3, 3, 32, 32) and abs(float(x.mean()) - 40 / 255) < 1e-6 and y.tolist() == [0, 1, 2]
    with pytest.raises(DataError, match="no contrast.npy.*corruptions there: gaussian_noise, jpeg_compression"):
        load_cifar10c(tmp_path, "contrast", 1)


def test_a_data_root_without_the_files_is_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="holds no CIFAR-10 batches; expected data_batch_1"):
        load_cifar10(tmp_path)
    with pytest.raises(DataError, match="holds no CIFAR-10-C; expected labels.npy"):
        load_cifar10c(tmp_path, "contrast", 1)
    (tmp_path / "cifar-10-batches-py").mkdir()
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (tmp_path / "cifar-10-batches-py" / f).write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(DataError, match="could not be read safely"):
        load_cifar10(tmp_path)
