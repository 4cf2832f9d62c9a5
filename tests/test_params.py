"""Parameter selection by prefix or glob: one helper for MAML's adapt=, pruning and fine-tuning."""

import pytest
import torch
from torch import nn

from adaptlab.params import matches, select, split


def _named():
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    return dict(net.named_parameters())


def test_prefix_and_glob_select_the_expected_names():
    p = _named()
    assert list(select(p, "2")) == ["2.weight", "2.bias"]
    assert list(select(p, "*.weight")) == ["0.weight", "2.weight"]
    assert list(select(p, ["0.bias", "2.w*"])) == ["0.bias", "2.weight"]
    assert select(p, None) == p


def test_split_is_a_partition_in_order():
    p = _named()
    chosen, rest = split(p, "0")
    assert list(chosen) + list(rest) == list(p) and not set(chosen) & set(rest)


def test_a_pattern_matching_nothing_names_the_parameters():
    with pytest.raises(ValueError, match=r"'head' matches no parameter; names are 0.weight"):
        select(_named(), ["0", "head"])


def test_glob_matches_the_whole_name():
    assert matches("features.0.weight", "features.*") and not matches("features.0.weight", "*.bias")
    assert matches("head.weight", "head") and not matches("body.head.weight", "head")
    assert torch.is_tensor(select(_named(), "0.weight")["0.weight"])
