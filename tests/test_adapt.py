"""Surgical fine-tuning: block maps, freezing (bit-identical frozen tensors, frozen batch-norm statistics, no
graph through a frozen prefix), Auto-RGN / Auto-SNR weights against hand computations, the block search."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from adaptlab import adapt, models
from adaptlab.eval.metrics import accuracy
from adaptlab.models.resnet import resnet_small

from conftest import assert_close


def _data(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 32, 32, generator=g), torch.randint(10, (n,), generator=g)


@pytest.mark.parametrize("name", models.names())
def test_blocks_partition_every_registered_model(name):
    net = models.create(name)
    b = adapt.blocks(net)
    flat = [n for names in b.values() for n in names]
    assert sorted(flat) == sorted(dict(net.named_parameters())) and len(flat) == len(set(flat))
    assert len(b) >= 2 and list(b)[-1] == "head"


def test_resnet_blocks_are_the_stem_stages_and_head():
    b = adapt.blocks(models.create("resnet26"))
    assert list(b) == ["block1", "block2", "block3", "head"]
    assert b["block1"][0] == "stem.0.weight" and all(n.startswith(("stem.", "stage1.")) for n in b["block1"])
    assert b["head"] == ["head.weight", "head.bias"]
    # 1 stem conv + 3 x 4 x 2 block convs + 1 linear = 26 weight layers (plus the 1x1 shortcut convs)
    convs = [m for m in models.create("resnet26").modules()
             if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) + 1 == 26


def test_frozen_tensors_and_batch_norm_statistics_stay_bit_identical():
    torch.manual_seed(0)
    src = resnet_small()
    x, y = _data()
    tuned, hist = adapt.finetune(src, x, y, tune=["block2"], steps=5, lr=0.05, batch_size=16)
    b2 = set(adapt.blocks(src)["block2"])
    assert hist["tuned"] == adapt.blocks(src)["block2"]
    s_params, t_params = dict(src.named_parameters()), dict(tuned.named_parameters())
    for n, p in s_params.items():
        same = torch.equal(p, t_params[n])
        assert same != (n in b2), f"{n}: {'changed though frozen' if not same else 'tuned but unchanged'}"
    s_buf, t_buf = dict(src.named_buffers()), dict(tuned.named_buffers())
    for n, v in s_buf.items():
        if n.startswith("stage2."):
            assert not torch.equal(v, t_buf[n]), f"{n}: a tuned block's BN tracks the target statistics"
        else:
            assert torch.equal(v, t_buf[n]), f"{n}: a frozen block's BN statistics moved"


def _leaves(grad_fn):
    """The leaf tensors (AccumulateGrad nodes) reachable from ``grad_fn``, and the number of nodes seen."""
    seen, stack, leaves = set(), [grad_fn], []
    while stack:
        f = stack.pop()
        if f is None or f in seen:
            continue
        seen.add(f)
        if hasattr(f, "variable"):
            leaves.append(f.variable)
        stack.extend(nf for nf, _ in f.next_functions)
    return leaves, len(seen)


def test_no_graph_and_no_grad_before_the_first_tuned_block():
    net = resnet_small()
    x, y = _data(8)
    tuned = adapt.freeze(net, adapt.select_blocks(net, ["block3"]))
    seen = {}
    net.stage3.register_forward_pre_hook(lambda m, args: seen.update(inp=args[0]))
    loss = F.cross_entropy(net(x), y)
    assert not seen["inp"].requires_grad and seen["inp"].grad_fn is None  # the prefix built no graph
    leaves, nodes = _leaves(loss.grad_fn)
    named = dict(net.named_parameters())
    assert {id(t) for t in leaves} == {id(named[n]) for n in tuned}
    _, nodes_all = _leaves(F.cross_entropy(adapt.freeze(net, list(named)) and net(x), y).grad_fn)
    assert nodes < nodes_all / 2
    adapt.freeze(net, tuned)
    F.cross_entropy(net(x), y).backward()
    assert all((p.grad is None) == (n not in tuned) for n, p in named.items())


def test_rgn_weights_match_a_hand_computation_on_real_gradients():
    torch.manual_seed(1)
    net = resnet_small().double()
    with torch.no_grad():  # a trained net has no zero tensor; fresh BN biases are 0 (tested below)
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x, y = _data(8)
    params = dict(net.named_parameters())
    grads = dict(zip(params, torch.autograd.grad(F.cross_entropy(net(x.double()), y), list(params.values()))))
    w = adapt.rgn_weights(params, grads)
    ratios = {n: (grads[n] ** 2).sum().sqrt() / (p.detach() ** 2).sum().sqrt() for n, p in params.items()}
    top = max(float(r) for r in ratios.values())
    for n in params:
        assert_close(w[n], ratios[n] / top)
    assert max(float(v) for v in w.values()) == 1.0
    zero = adapt.rgn_weights({"w": torch.ones(2), "b": torch.zeros(2)}, {"w": torch.ones(2), "b": torch.ones(2)})
    assert float(zero["b"]) == 1.0 and float(zero["w"]) == 1.0  # a zero tensor is out of the max, weight 1


def test_snr_weights_match_a_hand_computation():
    g = torch.Generator().manual_seed(0)
    samples = {"a": torch.randn(5, 3, generator=g, dtype=torch.float64) + 2.0,
               "b": torch.randn(5, 2, 2, generator=g, dtype=torch.float64)}
    scores = adapt.snr_scores(samples)
    for n, s in samples.items():
        m = s.mean(0)
        var = ((s - m) ** 2).sum(0) / (s.shape[0] - 1)
        assert_close(scores[n], (m ** 2 / var).mean())
    w = adapt.snr_weights(samples, threshold=0.5)
    assert float(w["a"]) == 1.0 and float(w["b"]) == float(scores["b"] / scores["a"] >= 0.5)


@pytest.mark.parametrize("norms", ["weigh", "freeze"])
def test_auto_rgn_step_is_sgd_with_per_tensor_lr_scaled_by_the_rgn_weights(norms):
    torch.manual_seed(2)
    src = resnet_small().double()
    x, y = _data(16)
    x = x.double()
    tuned, hist = adapt.finetune(src, x, y, tune="all", auto="rgn", steps=1, lr=0.1, batch_size=16,
                                 optimizer="sgd", rgn_norms=norms)
    ref = resnet_small().double()
    ref.load_state_dict(src.state_dict())
    adapt.train_mode(ref, [n for n, _ in ref.named_parameters()])  # every BN in training mode, either way
    g = torch.Generator().manual_seed(0)  # finetune's default generator: the same batch
    idx = torch.randint(16, (16,), generator=g)
    params = dict(ref.named_parameters())
    grads = dict(zip(params, torch.autograd.grad(F.cross_entropy(ref(x[idx]), y[idx]), list(params.values()))))
    norm_names = set(adapt.norm_params(ref))
    weighed = {n: p for n, p in params.items() if norms == "weigh" or n not in norm_names}
    w = adapt.rgn_weights(weighed, {n: grads[n] for n in weighed})
    for n, p in tuned.named_parameters():
        want = params[n] - 0.1 * w[n] * grads[n] if n in weighed else params[n]  # "freeze": BN affine untouched
        assert_close(p, want, rtol=1e-9, atol=1e-12)
    for n, b in tuned.named_buffers():  # BN running statistics follow the target batch in both modes
        if n.endswith("running_mean"):
            assert not torch.equal(b, dict(src.named_buffers())[n]), n
    assert set(hist["block_weight"]) == {"block1", "block2", "block3", "head"}
    assert len(hist["tuned"]) == len(weighed)


def test_auto_rgn_per_block_weights_held_between_recomputations_match_two_hand_sgd_steps():
    """rgn_unit="block", rgn_every=2: one weight per block, sqrt(sum ||g_t||^2) / sqrt(sum ||theta_t||^2) over
    its tensors / the largest block's, measured at step 0 and still used at step 1 (float64, by hand)."""
    torch.manual_seed(3)
    src = resnet_small().double()
    with torch.no_grad():  # no zero tensor (fresh BN biases), so every block has a relative norm
        for p in src.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x, y = _data(16)
    x = x.double()
    tuned, hist = adapt.finetune(src, x, y, tune="all", auto="rgn", steps=2, lr=0.1, batch_size=16,
                                 optimizer="sgd", rgn_norms="weigh", rgn_unit="block", rgn_every=2,
                                 recalibrate=False)
    ref = copy.deepcopy(src)
    adapt.train_mode(ref, [n for n, _ in ref.named_parameters()])
    params = dict(ref.named_parameters())
    where = {n: b for b, names in adapt.blocks(ref).items() for n in names}
    g = torch.Generator().manual_seed(0)
    w = None
    for _ in range(2):
        idx = torch.randint(16, (16,), generator=g)
        grads = dict(zip(params, torch.autograd.grad(F.cross_entropy(ref(x[idx]), y[idx]), list(params.values()))))
        if w is None:  # step 0 only
            ratio = {b: torch.sqrt(sum((grads[n] ** 2).sum() for n in names))
                     / torch.sqrt(sum((params[n].detach() ** 2).sum() for n in names))
                     for b, names in adapt.blocks(ref).items()}
            top = max(ratio.values())
            w = {n: ratio[where[n]] / top for n in params}
        with torch.no_grad():
            for n, p in params.items():
                p.sub_(0.1 * w[n] * grads[n])
    for n, p in tuned.named_parameters():
        assert_close(p, params[n], rtol=1e-9, atol=1e-12)
    assert len({round(float(w[n]), 12) for n in adapt.blocks(ref)["block2"]}) == 1
    assert_close(torch.tensor(hist["block_weight"]["head"], dtype=torch.float64), w["head.weight"])


def test_auto_rgn_from_several_batches_is_the_mean_gradient_over_fresh_batches():
    """rgn_batches=3, SGD, one step: weights from the mean gradient of 3 batches drawn after the step's own."""
    torch.manual_seed(4)
    src = resnet_small().double()
    x, y = _data(16)
    x = x.double()
    tuned, _ = adapt.finetune(src, x, y, tune="all", auto="rgn", steps=1, lr=0.1, batch_size=8, optimizer="sgd",
                              rgn_norms="weigh", rgn_batches=3, recalibrate=False)
    ref = copy.deepcopy(src)
    adapt.train_mode(ref, [n for n, _ in ref.named_parameters()])
    params = dict(ref.named_parameters())
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(16, (8,), generator=g) for _ in range(4)]  # the step's batch, then 3 for RGN

    def grad(idx):
        return dict(zip(params, torch.autograd.grad(F.cross_entropy(ref(x[idx]), y[idx]), list(params.values()))))

    step = grad(batches[0])
    extra = [grad(b) for b in batches[1:]]
    mean = {n: sum(e[n] for e in extra) / 3 for n in params}
    w = adapt.rgn_weights(params, mean)
    for n, p in tuned.named_parameters():
        assert_close(p, params[n] - 0.1 * w[n] * step[n], rtol=1e-9, atol=1e-12)


def test_norm_params_are_exactly_the_batch_norm_affine_tensors():
    net = resnet_small()
    want = [f"{m}.{p}" for m, mod in net.named_modules() if isinstance(mod, torch.nn.BatchNorm2d)
            for p in ("weight", "bias")]
    assert adapt.norm_params(net) == want and len(want) == 2 * 9  # stem + 3 blocks x 2 + 2 shortcut BNs
    with pytest.raises(ValueError, match="rgn_norms='all' is invalid; expected 'freeze' or 'weigh'"):
        adapt.finetune(net, *_data(8), steps=1, lr=0.1, auto="rgn", rgn_norms="all")


def test_auto_snr_trains_and_freezes_low_snr_tensors():
    torch.manual_seed(3)
    src = resnet_small()
    x, y = _data(32)
    tuned, hist = adapt.finetune(src, x, y, auto="snr", steps=3, lr=0.01, batch_size=32, snr_threshold=1.0)
    changed = [n for (n, p), q in zip(src.named_parameters(), tuned.parameters()) if not torch.equal(p, q)]
    assert 1 <= len(changed) <= 3  # threshold 1: only the top-SNR tensor of each step moves
    assert all(0.0 <= v <= 1.0 for v in hist["block_weight"].values())


def test_search_blocks_returns_the_best_held_out_block():
    torch.manual_seed(4)
    src = resnet_small()
    x, y = _data(32)
    xv, yv = _data(32, seed=1)
    out = adapt.search_blocks(src, x, y, xv, yv, lrs=(1e-3, 1e-2), steps=3, batch_size=16)
    assert set(out["val"]) == {"block1", "block2", "block3", "head"}
    assert out["best_val"] == max(v for d in out["val"].values() for v in d.values())
    assert out["val"][out["best_block"]][out["best_lr"]] == out["best_val"]


@pytest.mark.parametrize("tune, match", [(["block9"], "block 'block9' matches no parameter.*block1"),
                                         ([], "empty block set")])
def test_bad_block_choices_are_one_clear_error(tune, match):
    with pytest.raises(ValueError, match=match):
        adapt.select_blocks(resnet_small(), tune)


def test_recalibrate_bn_sets_the_mean_of_the_data():
    net = resnet_small()
    x, _ = _data(40)
    adapt.recalibrate_bn(net, x, batch=8)  # 5 equal chunks: the average of their means is the mean
    with torch.no_grad():
        h = net.stem[0](x)  # (40, 8, 32, 32): the first BN's input
    bn = net.stem[1]
    assert_close(bn.running_mean, h.mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-6)  # float32 sums over chunks
    assert not net.training and bn.momentum == 0.1


@pytest.mark.parametrize("tune", [["block2"], "all"])
def test_finetune_recomputes_the_trained_batch_norms_statistics_on_x_with_the_final_weights(tune):
    torch.manual_seed(5)
    src = resnet_small()
    x, y = _data(40)
    tuned, _ = adapt.finetune(src, x, y, tune=tune, steps=4, lr=0.05, batch_size=16)
    stale, _ = adapt.finetune(src, x, y, tune=tune, steps=4, lr=0.05, batch_size=16, recalibrate=False)
    for (n, p), q in zip(tuned.named_parameters(), stale.parameters()):
        assert torch.equal(p, q), f"{n}: recalibration must not touch the weights"
    assert not tuned.training
    inputs = {}
    trained = set(adapt.select_blocks(src, tune))
    oracle = adapt.train_mode(copy.deepcopy(tuned), trained)  # the trained BNs see x as one batch: exact stats
    for n, m in oracle.named_modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.register_forward_pre_hook(lambda m, a, n=n: inputs.update({n: a[0]}))
    with torch.no_grad():
        oracle(x)
    bns = {n: m for n, m in tuned.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    src_buf, stale_buf = dict(src.named_buffers()), dict(stale.named_buffers())
    for n, m in bns.items():
        if f"{n}.weight" in trained:  # a trained BN: the exact mean / unbiased variance of its input over x
            h = inputs[n]
            assert_close(m.running_mean, h.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)  # float32 chunk sums
            assert_close(m.running_var, h.var(dim=(0, 2, 3), unbiased=True), rtol=1e-4, atol=1e-5)
            assert not torch.allclose(stale_buf[f"{n}.running_mean"], m.running_mean, rtol=1e-3, atol=1e-4)
        else:  # a frozen block's BN keeps the source statistics bit for bit
            assert torch.equal(m.running_mean, src_buf[f"{n}.running_mean"]), n
            assert torch.equal(m.running_var, src_buf[f"{n}.running_var"]), n


def _state(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


@pytest.mark.parametrize("auto", [None, "rgn"])
def test_held_out_stopping_step_is_a_naive_loops_argmax_and_its_weights(auto):
    """Oracle: fine-tuning for 4, 8, 12 steps separately (no evaluation), each recalibrated and scored on the
    held-out set; the eval_every=4 run records those accuracies, keeps the first argmax and returns that run's
    weights and BN statistics bit for bit; its training (the losses) is the plain run's."""
    torch.manual_seed(3)
    src = resnet_small()
    x, y = _data(48)
    xv, yv = _data(40, seed=1)
    kw = dict(tune="all", auto=auto, lr=0.05, batch_size=16)
    naive = {k: adapt.finetune(src, x, y, steps=k, generator=torch.Generator().manual_seed(7), **kw)
             for k in (4, 8, 12)}
    accs = [accuracy(naive[k][0], xv, yv) for k in (4, 8, 12)]
    tuned, hist = adapt.finetune(src, x, y, steps=12, generator=torch.Generator().manual_seed(7), x_val=xv, y_val=yv,
                                 eval_every=4, **kw)
    assert hist["eval"] == {"step": [4, 8, 12], "acc": accs}
    best = (4, 8, 12)[accs.index(max(accs))]
    assert hist["best_step"] == best and hist["loss"] == naive[12][1]["loss"]
    want = _state(naive[best][0])
    for k, v in tuned.state_dict().items():
        assert torch.equal(v, want[k]), k
    assert not tuned.training and "best_state" not in hist


def test_a_held_out_set_that_gets_worse_after_step_m_returns_the_step_m_weights():
    """Held-out labels are the step-6 network's own predictions, so held-out accuracy is 1 there and falls as
    training moves on: the 15-step run (evaluated every 3 steps) must return the step-6 network, not the last."""
    torch.manual_seed(4)
    src = resnet_small()
    x, y = _data(48)
    xv, _ = _data(64, seed=2)
    kw = dict(tune=["block2", "head"], lr=0.1, batch_size=16)
    at6, _ = adapt.finetune(src, x, y, steps=6, generator=torch.Generator().manual_seed(1), **kw)
    last, _ = adapt.finetune(src, x, y, steps=15, generator=torch.Generator().manual_seed(1), **kw)
    with torch.no_grad():
        yv = at6(xv).argmax(1)
    assert accuracy(last, xv, yv) < 1.0  # the held-out set really gets worse after step 6
    tuned, hist = adapt.finetune(src, x, y, steps=15, generator=torch.Generator().manual_seed(1), x_val=xv,
                                 y_val=yv, eval_every=3, **kw)
    assert hist["eval"]["step"] == [3, 6, 9, 12, 15] and hist["eval"]["acc"][1] == 1.0
    assert hist["best_step"] == 6 and accuracy(tuned, xv, yv) == 1.0
    for k, v in at6.state_dict().items():
        assert torch.equal(v, tuned.state_dict()[k]), k


@pytest.mark.parametrize("kw, match", [
    (dict(eval_every=3), "eval_every=3 with x_val missing, y_val missing"),
    (dict(eval_every=-1, x_val=torch.zeros(2, 1, 32, 32), y_val=torch.zeros(2, dtype=torch.long)), "eval_every=-1"),
    (dict(x_val=torch.zeros(2, 1, 32, 32), y_val=torch.zeros(2, dtype=torch.long)), "eval_every=0 with x_val given"),
])
def test_bad_held_out_selection_arguments_are_one_clear_error(kw, match):
    x, y = _data(8)
    with pytest.raises(ValueError, match=match):
        adapt.finetune(resnet_small(), x, y, steps=2, lr=1e-3, **kw)
