"""eval/accuracy.py and eval/stats.py against naive references, plus the invariants callers rely on."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from torch import nn

from adaptlab.eval import accuracy, band, mean_ci95
from adaptlab.models import create

from conftest import assert_close


def _naive_accuracy(logits, y):
    return sum(int(max(range(len(row)), key=lambda j: row[j]) == int(t)) for row, t in zip(logits.tolist(), y)) / len(y)


@pytest.mark.parametrize("batch", [1, 7, 1000])
def test_accuracy_equals_a_per_example_count_for_any_batch_size(batch):
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(53, 4, generator=g), torch.randint(0, 4, (53,), generator=g)
    assert accuracy(lambda v: v, logits, y, batch=batch) == _naive_accuracy(logits, y)


def test_scale_is_applied_to_the_count():
    # Exactly scale * correct / N (no rounding from scaling a fraction): 100 * 1 / 3, not (1 / 3) * 100.
    x, y = torch.eye(3), torch.tensor([0, 2, 1])
    assert accuracy(lambda v: v, x, y, scale=100.0) == 100.0 * 1 / 3
    assert accuracy(lambda v: v, x, y) == 1 / 3


def test_multi_output_network_is_scored_per_task_and_keeps_its_mode():
    torch.manual_seed(0)
    net = create("multimnist-lenet", dropout=0.5)
    x = torch.randn(10, 1, 28, 28)
    ys = {"left": torch.randint(0, 10, (10,)), "right": torch.randint(0, 10, (10,))}
    net.train()
    got = accuracy(net, x, ys, batch=4, scale=100.0)
    assert net.training  # given back in train mode
    net.eval()
    with torch.no_grad():
        out, _ = net(x)
    assert got == {t: 100.0 * _naive_accuracy(out[t], ys[t]) for t in ys}  # eval mode: dropout off
    accuracy(net, x, ys)
    assert not net.training  # and in eval mode when it came in eval mode


class _ModeProbe(nn.Module):
    """Identity that records the mode of each forward call."""

    def __init__(self):
        super().__init__()
        self.modes = []

    def forward(self, x):
        self.modes.append(self.training)
        return x


def test_module_is_evaluated_in_eval_mode_and_given_back_in_its_mode():
    probe = _ModeProbe()
    x, y = torch.eye(5), torch.arange(5)
    assert accuracy(probe, x, y, batch=2) == 1.0
    assert probe.modes == [False, False, False] and probe.training
    with pytest.raises(RuntimeError):
        accuracy(lambda v: (_ for _ in ()).throw(RuntimeError("boom")), x, y)
    probe.modes.clear()
    bad = {"a": y}
    with pytest.raises(TypeError, match="y is a dict of labels"):
        accuracy(probe, x, bad)  # the identity returns a tensor, not {"a": logits}: an error, and still...
    assert probe.training  # ...given back in train mode


def test_mean_ci95_against_statistics_module():
    v = [0.3, 0.9, 0.5, 0.7, 0.2]
    mean, half = mean_ci95(torch.tensor(v))
    assert_close(mean, statistics.fmean(v))
    assert_close(half, 1.96 * statistics.stdev(v) / math.sqrt(len(v)))


def test_band_is_mean_and_interpolated_deciles():
    v = torch.arange(21.0)  # deciles of 0..20 fall on 2 and 18 exactly
    assert band(v) == (10.0, 2.0, 18.0)
    mean, lo, hi = band(torch.randn(101, generator=torch.Generator().manual_seed(0)))
    assert lo <= mean <= hi
