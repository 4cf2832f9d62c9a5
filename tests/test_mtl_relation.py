"""The relation prior (closed-form covariance vs brute force), many-task forwards, and mtl-omniglot's edges."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from adaptlab.experiments import get
from adaptlab.io import Checkpoint
from adaptlab.mtl.architectures import CrossStitch, HardSharing
from adaptlab.mtl.manytask import ManyTaskStep
from adaptlab.mtl.relation import RelationPrior, relation_penalty, task_correlation, task_covariance
from adaptlab.runner import run_experiment

from conftest import assert_close
from helpers import cli


def _objective(W, omega):
    return float(relation_penalty(W, omega))


def test_covariance_update_equals_brute_force_minimiser():
    """Ω* = (W Wᵀ)^{1/2} / tr(·) minimises tr(Wᵀ Ω⁻¹ W) over trace-one SPD Ω: a direct search finds the same Ω."""
    g = torch.Generator().manual_seed(0)
    W = torch.randn(3, 5, generator=g, dtype=torch.float64)
    W[1] += 0.8 * W[0]  # correlated tasks, so Ω* is far from diagonal
    closed = task_covariance(W, eps=0.0)
    # the known minimum value: (tr (W Wᵀ)^{1/2})² = (Σ_i σ_i)², σ the singular values of W
    assert_close(_objective(W, closed), float(torch.linalg.svdvals(W).sum() ** 2), rtol=1e-9)
    # brute force: Ω = L Lᵀ / tr(L Lᵀ) with L lower triangular, minimised by L-BFGS from the identity
    L = torch.eye(3, dtype=torch.float64).requires_grad_(True)
    opt = torch.optim.LBFGS([L], max_iter=500, tolerance_grad=1e-14, tolerance_change=1e-16,
                            line_search_fn="strong_wolfe")

    def loss():
        opt.zero_grad()
        Lt = torch.tril(L)
        om = Lt @ Lt.T
        f = relation_penalty(W, om / torch.trace(om))
        f.backward()
        return f

    for _ in range(5):
        opt.step(loss)
    Lt = torch.tril(L.detach())
    brute = Lt @ Lt.T / torch.trace(Lt @ Lt.T)
    assert_close(brute, closed, rtol=0, atol=1e-6)  # L-BFGS's convergence, far below Ω's entries (~0.1-0.6)
    # and no random trace-one SPD matrix does better
    for _ in range(50):
        A = torch.randn(3, 3, generator=g, dtype=torch.float64)
        om = A @ A.T + 1e-3 * torch.eye(3, dtype=torch.float64)
        assert _objective(W, om / torch.trace(om)) >= _objective(W, closed) - 1e-9


def test_penalty_is_the_double_sum_and_gradchecks():
    g = torch.Generator().manual_seed(1)
    W = torch.randn(4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    A = torch.randn(4, 4, generator=g, dtype=torch.float64)
    om = A @ A.T + torch.eye(4, dtype=torch.float64)
    inv = torch.linalg.inv(om)
    naive = sum(inv[i, j] * W[i] @ W[j] for i in range(4) for j in range(4))
    assert_close(relation_penalty(W, om), naive)
    assert torch.autograd.gradcheck(lambda w: relation_penalty(w, om), (W,))
    C = task_correlation(om)
    assert_close(C.diagonal(), torch.ones(4, dtype=torch.float64))
    assert bool((C.abs() <= 1 + 1e-12).all()) and torch.equal(C, C.T)


def test_identical_tasks_are_perfectly_correlated():
    w = torch.randn(1, 7, dtype=torch.float64)
    W = torch.cat([w, 2 * w, torch.randn(1, 7, dtype=torch.float64)])
    C = task_correlation(task_covariance(W, eps=1e-12))
    assert float(C[0, 1]) > 0.999 and abs(float(C[0, 2])) < 0.999


def _two_task_net():
    torch.manual_seed(0)
    return HardSharing([nn.Linear(4, 8), nn.Linear(8, 8)], {"a": nn.Linear(8, 3), "b": nn.Linear(8, 2)},
                       shared_depth=1)


def _batch():
    g = torch.Generator().manual_seed(2)
    return {"a": (torch.randn(5, 4, generator=g), torch.randint(0, 3, (5,), generator=g)),
            "b": (torch.randn(7, 4, generator=g), torch.randint(0, 2, (7,), generator=g))}


def test_forward_tasks_equals_each_task_on_its_own_inputs():
    batch = _batch()
    net = _two_task_net()
    many = net.forward_tasks({t: x for t, (x, _) in batch.items()})
    for t, (x, _) in batch.items():
        assert_close(many[t], net(x)[0][t], rtol=1e-6, atol=1e-6)  # float32, different batch composition
    blocks = [nn.Linear(4, 8), nn.Linear(8, 8)]
    heads = {"a": nn.Linear(8, 3), "b": nn.Linear(8, 2)}
    indep = CrossStitch(blocks, heads, stitch_after=[])
    stitched = CrossStitch(blocks, heads, stitch_after=[0])
    xa, xb = batch["a"][0], batch["b"][0]
    for net in (indep, stitched):
        many = net.forward_tasks({"a": xa, "b": xb})
        full, _ = net(torch.cat([xa, xb]))
        assert_close(many["a"], full["a"][:5], rtol=1e-6, atol=1e-6)
        assert_close(many["b"], full["b"][5:], rtol=1e-6, atol=1e-6)
    assert indep.shared_parameters() == []
    assert {id(p) for p in stitched.shared_parameters()} == {id(p) for n, p in stitched.named_parameters()
                                                             if not n.startswith("heads.")}


def test_relation_step_alternates_and_the_prior_reaches_only_task_layers():
    net = _two_task_net()
    weights = lambda m: [torch.stack([m.private[t][0].weight.flatten() for t in ("a", "b")])]  # noqa: E731
    prior = RelationPrior(2, 1, strength=0.5)
    step = ManyTaskStep(net, nn.functional.cross_entropy, lambda ps: torch.optim.SGD(ps, lr=0.05), prior=prior,
                        prior_weights=weights, prior_every=3)
    batch = _batch()
    start = [om.clone() for om in prior.omegas]
    for _ in range(2):
        step(batch)
    assert torch.equal(prior.omegas[0], start[0])  # not yet: Ω changes only every 3 steps
    step(batch)
    assert_close(prior.omegas[0], task_covariance(weights(net)[0].double()))
    net.zero_grad()
    prior.penalty(weights(net)).backward()
    assert all(p.grad is None for p in net.shared_parameters())
    assert all(p.grad is None for p in net.heads.parameters())
    assert all(p.grad is not None for t in ("a", "b") for p in net.private[t].parameters() if p.dim() > 1)


def test_prior_refuses_the_wrong_number_of_layers():
    with pytest.raises(ValueError, match="expected 2, one per layer"):
        RelationPrior(3, 2, 0.1).penalty([torch.zeros(3, 4)])


@pytest.mark.parametrize("argv,needle", [
    (["--set", "data.alphabets=Greek,Klingon"], "Klingon, absent from Omniglot set 'small'; expected names from: "
                                                "Balinese"),
    (["--set", "data.alphabets=Greek,Latin"], "data.few_alphabets names Balinese, Korean, Tagalog, not one of"),
    (["--set", "methods=1-fc,routing"], "methods"),
    (["--set", "data.train_drawers=18"], "data.train_drawers"),
    (["--set", "train.aggregate_on=2-fc"], "train.aggregate_on"),
])
def test_bad_inputs_exit_2_with_one_line(tmp_path, argv, needle):
    code, _, err = cli("run", "mtl-omniglot", *argv, "--out", str(tmp_path / "x"))
    assert code == 2 and needle in err and err.count("\n") == 1, err
    assert not (tmp_path / "x").exists()


class _Interrupt(Exception):
    pass


def test_resume_matches_uninterrupted_run(tmp_path, monkeypatch):
    exp = get("mtl-omniglot")
    cfg = exp.config(quick=True, **{"methods": ["relation", "pcgrad"], "train.steps": 8})
    full = run_experiment(exp, cfg, tmp_path / "full").results
    assert set(full["methods"]) == {"relation", "pcgrad"} and full["few_tasks"] == ["Tagalog"]
    assert len(full["relation"]["correlation"][0]) == 2  # fc1 and fc2
    real_save, calls = Checkpoint.save, {"n": 0}

    def save_then_die(self, state):
        real_save(self, state)
        calls["n"] += 1
        if calls["n"] == 3:
            raise _Interrupt

    monkeypatch.setattr(Checkpoint, "save", save_then_die)
    with pytest.raises(_Interrupt):
        run_experiment(exp, cfg, tmp_path / "cut")
    monkeypatch.setattr(Checkpoint, "save", real_save)
    resumed = run_experiment(exp, cfg, tmp_path / "cut", resume=True).results
    strip = lambda r: json.loads(json.dumps({k: v for k, v in r.items() if k != "timings"}))  # noqa: E731
    assert strip(resumed) == strip(full)
