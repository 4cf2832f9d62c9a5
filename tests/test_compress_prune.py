"""Fine-grained pruning, sensitivity allocation and channel pruning: exact semantics, oracles, invariants."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from torch import nn

from adaptlab.compress import channel as ch
from adaptlab.compress import prune as pr
from adaptlab.compress import sensitivity as sens
from adaptlab.compress.torch_ref import torch_prune_masks
from adaptlab.errors import ConfigError
from adaptlab.models.cnn import MNIST1DCNN, LeNet5, VGGNet

from conftest import assert_close


def with_bn_stats(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Give batch norms non-trivial running statistics and affine parameters, then switch to eval."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
        model.train()
        model(x)
    return model.eval()


# ------------------------------------------------------------------------------------- fine-grained


def test_5x5_at_sparsity_075_keeps_6_nonzeros():
    w = torch.randn(5, 5)
    pruned = w * pr.fine_grained_mask(w, 0.75)
    assert int((pruned != 0).sum()) == 6                      # round(0.75 * 25) = 19 zeros
    kept = pruned[pruned != 0].abs()
    # the kept elements are exactly the 6 largest magnitudes; the threshold is the 19th smallest
    assert_close(kept.sort().values, w.abs().flatten().sort().values[19:])
    assert pr.magnitude_threshold(w, 0.75) == float(w.abs().flatten().sort().values[18])
    assert pr.sparsity_of(pruned) == 19 / 25


def test_sparsity_zero_keeps_all_one_zeroes_all_and_ties_keep_the_exact_count():
    w = torch.randn(7, 3)
    assert torch.equal(pr.fine_grained_mask(w, 0.0), torch.ones_like(w))
    assert torch.equal(pr.fine_grained_mask(w, 1.0), torch.zeros_like(w))
    ties = torch.ones(10)                                      # every magnitude equal
    assert int(pr.fine_grained_mask(ties, 0.3).sum()) == 7    # exactly 3 zeros, not all or none
    for s in (-0.1, 1.5):
        with pytest.raises(ConfigError, match="sparsity"):
            pr.fine_grained_mask(w, s)


@pytest.mark.parametrize("s", [0.0, 0.33, 0.7, 0.95, 1.0])
def test_masks_equal_torch_nn_utils_prune(s):
    model = VGGNet((4, 8))
    names = pr.prunable_names(model)
    params = dict(model.named_parameters())
    ours = pr.masks_for(params, dict.fromkeys(names, s))
    theirs = torch_prune_masks(model, dict.fromkeys(names, s))
    for n in names:
        assert torch.equal(ours[n], theirs[n]), n


def test_pruner_keeps_masks_applied_through_adam_steps_and_would_fail_without():
    torch.manual_seed(0)
    model = LeNet5()
    x, y = torch.randn(16, 28, 28), torch.randint(0, 10, (16,))
    sparsities = {"features.0.weight": 0.5, "classifier.1.weight": 0.9}

    def train(attach: bool):
        m = copy.deepcopy(model)
        pruner = pr.FineGrainedPruner(m, sparsities)
        pruner.apply()
        opt = torch.optim.Adam(m.parameters(), lr=1e-2)
        if attach:
            pruner.attach(opt)
        for _ in range(3):
            opt.zero_grad()
            nn.functional.cross_entropy(m(x), y).backward()
            opt.step()
        p = dict(m.named_parameters())
        return {n: pr.sparsity_of(p[n]) for n in sparsities}, pruner, p

    got, pruner, p = train(attach=True)
    assert got == {"features.0.weight": pytest.approx(0.5, abs=1 / 150), "classifier.1.weight": pytest.approx(0.9)}
    for n, mask in pruner.masks.items():
        assert torch.all(p[n][mask == 0] == 0)
        assert torch.all(p[n][mask == 1] != 0)
    revived, _, _ = train(attach=False)                        # Adam moves pruned weights without the hook
    assert revived["classifier.1.weight"] < 0.5           # (units with dead ReLU inputs stay zero)


def test_unknown_layer_names_are_refused():
    with pytest.raises(ConfigError, match="unknown layer 'features.9.weight'"):
        pr.FineGrainedPruner(VGGNet((4, 8)), {"features.9.weight": 0.5})


def test_weight_histograms_count_every_element():
    params = {"a": torch.randn(40, 5), "b": torch.zeros(3)}
    h = pr.weight_histograms(params, bins=10)
    assert sum(h["a"]["counts"]) == 200 and len(h["a"]["edges"]) == 11
    assert sum(pr.weight_histograms(params, nonzero_only=True)["b"]["counts"]) == 0


# -------------------------------------------------------------------------------------- sensitivity


def test_sensitivity_scan_restores_the_model_and_prunes_one_layer_at_a_time():
    model = LeNet5()
    before = {n: p.clone() for n, p in model.state_dict().items()}
    seen = []

    def evaluate(m):
        p = dict(m.named_parameters())
        seen.append({n: pr.sparsity_of(p[n]) for n in ("features.0.weight", "features.3.weight")})
        return 1.0 - seen[-1]["features.0.weight"]

    curves = sens.sensitivity_scan(model, evaluate, ["features.0.weight", "features.3.weight"], [0.0, 0.5, 1.0])
    assert curves["features.0.weight"] == pytest.approx([1.0, 1 - 75 / 150, 0.0])
    assert curves["features.3.weight"] == [1.0, 1.0, 1.0]
    assert seen[4]["features.3.weight"] == pytest.approx(0.5) and seen[4]["features.0.weight"] == 0.0
    for n, v in model.state_dict().items():
        assert torch.equal(v, before[n])


def test_allocation_equals_brute_force_and_meets_the_target():
    g = torch.Generator().manual_seed(3)
    grid = [0.0, 0.25, 0.5, 0.75, 0.9]
    names = [f"l{i}" for i in range(4)]
    sizes = {n: int(s) for n, s in zip(names, torch.randint(10, 1000, (4,), generator=g))}
    scan = {n: (0.99 - torch.tensor(grid) ** (1 + 3 * torch.rand(1, generator=g)) * 0.5).tolist() for n in names}
    total = sum(sizes.values())
    for target in (0.2, 0.35, 0.6):
        alloc = sens.allocate_sparsity(scan, sizes, grid, target)
        assert sens.kept_fraction(alloc, sizes) <= target + 1e-12

        def drop(choice):
            return sum(max(scan[n]) - scan[n][j] for n, j in zip(names, choice))

        feasible = [c for c in itertools.product(range(len(grid)), repeat=4)
                    if sum(sizes[n] * (1 - grid[j]) for n, j in zip(names, c)) <= target * total + 1e-9]
        best = min(drop(c) for c in feasible)
        assert drop([grid.index(alloc[n]) for n in names]) == pytest.approx(best, abs=1e-12)
    uni = sens.uniform_allocation(names, 0.35)
    assert sens.kept_fraction(uni, sizes) == pytest.approx(0.35)
    with pytest.raises(ConfigError, match="cannot be met"):
        sens.allocate_sparsity(scan, sizes, [0.0, 0.5], 0.2)


# ------------------------------------------------------------------------------------------ channel


@pytest.mark.parametrize("make", [lambda: VGGNet((6, 10, 8, 12)), LeNet5, MNIST1DCNN])
def test_importance_reordering_leaves_outputs_unchanged(make):
    torch.manual_seed(1)
    model = make()
    x = torch.randn(8, 40) if isinstance(model, MNIST1DCNN) else torch.randn(8, 28, 28)
    model = with_bn_stats(model, x)
    reordered = ch.reorder_channels(model)
    with torch.no_grad():
        assert_close(reordered(x), model(x), rtol=1e-5, atol=1e-5)  # float32: summation order changes
    first = reordered.features[ch.conv_positions(reordered)[0]].weight
    norms = first.flatten(1).norm(dim=1)
    assert torch.all(norms[:-1] >= norms[1:])                  # sorted by decreasing L2 norm


def test_channel_pruning_keeps_shapes_and_cuts_macs_by_the_analytic_amount():
    widths = [6, 10, 8, 12]
    model = VGGNet(widths)
    x = torch.randn(4, 28, 28)
    assert ch.count_macs(model, x) == VGGNet.analytic_macs(widths)
    for ratio in (0.0, 0.25, 0.5, 0.8):
        pruned = ch.prune_channels(model, ratio, "l2")
        kept = [ch.kept_channels(w, ratio) for w in widths]
        assert pruned(x).shape == model(x).shape == (4, 10)
        assert ch.count_macs(pruned, x) == VGGNet.analytic_macs(kept)
        assert [pruned.features[p].out_channels for p in ch.conv_positions(pruned)] == kept
    # by hand for ratio 0.5: 28^2*1*3*9 + 28^2*3*5*9 + 14^2*5*4*9 + 14^2*4*6*9 + 6*7*7*10
    assert ch.count_macs(ch.prune_channels(model, 0.5), x) == 21168 + 105840 + 35280 + 42336 + 2940


def test_conv1d_macs_are_counted_by_the_formula():
    model = MNIST1DCNN()
    # L_out 19, 10, 5; MACs = C_out L_out C_in k
    expected = 25 * 19 * 1 * 5 + 25 * 10 * 25 * 3 + 25 * 5 * 25 * 3 + 125 * 10
    assert ch.count_macs(model, torch.randn(2, 40)) == expected


def test_removing_channels_equals_zeroing_their_next_layer_inputs():
    torch.manual_seed(2)
    x = torch.randn(6, 28, 28)
    model = with_bn_stats(VGGNet((6, 10, 8, 12)), x)
    ratios = {0: 0.5, 3: 0.0, 7: 0.0, 10: 0.0}   # prune only the first conv
    pruned = ch.prune_channels(model, ratios, "l2")
    keep = torch.argsort(ch.l2_importance(model.features[0].weight), descending=True)[:3]
    masked = copy.deepcopy(model)
    with torch.no_grad():
        drop = torch.ones(6, dtype=torch.bool)
        drop[keep] = False
        masked.features[3].weight[:, drop] = 0               # the next conv no longer reads those channels
        assert_close(pruned(x), masked(x), rtol=1e-5, atol=1e-5)  # float32: same sums, different order


def test_l2_keeps_the_largest_norm_channels_and_first_keeps_the_first():
    model = VGGNet((8, 4))
    w = model.features[0].weight
    l2 = ch.prune_channels(model, {0: 0.5, 3: 0.0}, "l2").features[0].weight
    top = torch.topk(w.flatten(1).norm(dim=1), 4).indices
    assert torch.equal(l2, w[top].detach())
    first = ch.prune_channels(model, {0: 0.5, 3: 0.0}, "first").features[0].weight
    assert torch.equal(first, w[:4].detach())
    with pytest.raises(ConfigError, match="importance"):
        ch.prune_channels(model, 0.5, "l3")
    with pytest.raises(ConfigError, match="not a conv index"):
        ch.prune_channels(model, {1: 0.5})
