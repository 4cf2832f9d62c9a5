"""Deterministic, strict test runs: seeds, deterministic algorithms, local data only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# Tests read local data only: ../shared/data next to the checkout unless ADAPTLAB_DATA says otherwise.
os.environ.setdefault("ADAPTLAB_DATA", str(ROOT.parent / "shared" / "data"))
os.environ.setdefault("ADAPTLAB_PROGRESS", "0")
os.environ.setdefault("MPLBACKEND", "Agg")

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)  # one intra-op thread per xdist worker: the workers already fill the cores
torch.use_deterministic_algorithms(True)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def fake_digits():
    """200 random 28 x 28 "digit" images with labels 0..9 in turn (the caption tests' stand-in for MNIST)."""
    g = torch.Generator().manual_seed(0)
    return torch.rand(200, 28, 28, generator=g), torch.arange(200) % 10


def assert_close(actual, expected, rtol: float = 1e-10, atol: float = 1e-12, msg: str = ""):
    """The one tolerance helper (float64 defaults). Pass looser values with a comment saying why."""
    torch.testing.assert_close(torch.as_tensor(actual), torch.as_tensor(expected).to(torch.as_tensor(actual)),
                               rtol=rtol, atol=atol, msg=msg or None)
