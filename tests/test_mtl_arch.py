"""Hard sharing, cross-stitch and diagnostics (cosine matrix, Δm, linear CKA, CKA checkpoint choice)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adaptlab.models.mtl_lenet import lenet_blocks, lenet_head
from adaptlab.mtl.architectures import CrossStitch, HardSharing
from adaptlab.mtl.diagnostics import cosine_matrix, delta_m, linear_cka, negative_transfer, select_by_cka

from conftest import assert_close


def _blocks():
    return [nn.Sequential(nn.Linear(4, 6), nn.Tanh()), nn.Sequential(nn.Linear(6, 6), nn.Tanh()),
            nn.Sequential(nn.Linear(6, 5), nn.Tanh())]


def test_hard_sharing_depth_and_lower_attachment():
    torch.manual_seed(0)
    net = HardSharing(_blocks(), {"pos": nn.Linear(6, 3), "chunk": nn.Linear(5, 2)}, shared_depth=2,
                      attach={"pos": 1})
    x = torch.randn(7, 4)
    out, z = net(x)
    assert out["pos"].shape == (7, 3) and out["chunk"].shape == (7, 2) and z.shape == (7, 6)
    # pos reads block 0's output directly; chunk goes through both shared blocks and its private block 2
    h0 = net.shared[0](x)
    assert_close(out["pos"], net.heads["pos"](h0))
    assert_close(out["chunk"], net.heads["chunk"](net.private["chunk"][0](net.shared[1](h0))))
    assert len(net.private["pos"]) == 0 and len(net.private["chunk"]) == 1
    with pytest.raises(ValueError, match="shared_depth"):
        HardSharing(_blocks(), {"a": nn.Linear(5, 1)}, shared_depth=4)


def test_head_parameters_receive_only_their_own_task_gradient():
    torch.manual_seed(0)
    net = HardSharing(lenet_blocks(), {"left": lenet_head(), "right": lenet_head()})
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([1, 2, 3, 4])
    out, _ = net(x)
    loss_left = nn.functional.cross_entropy(out["left"], y)
    loss_left.backward()
    assert all(p.grad is None for p in net.task_parameters("right"))
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.task_parameters("left"))
    assert all(p.grad is not None for p in net.shared_parameters())


def test_cross_stitch_identity_mixing_equals_independent_networks():
    torch.manual_seed(0)
    net = CrossStitch(_blocks(), {"a": nn.Linear(5, 2), "b": nn.Linear(5, 1)}, stitch_after=[0, 1], self_weight=1.0)
    x = torch.randn(3, 4)
    out, _ = net(x)
    h = x
    for blk in net.nets[1]:
        h = blk(h)
    assert_close(out["b"], net.heads["b"](h), rtol=1e-6, atol=1e-7)  # float32
    # with mixing, the stitch units get gradients and the streams interact
    net2 = CrossStitch(_blocks(), {"a": nn.Linear(5, 2), "b": nn.Linear(5, 1)}, stitch_after=[1], self_weight=0.7)
    out2, _ = net2(x)
    out2["a"].sum().backward()
    assert net2.alpha["1"].grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net2.nets[1].parameters())


def test_cross_stitch_per_channel_shape():
    blocks = [nn.Conv2d(1, 3, 3, padding=1), nn.Conv2d(3, 2, 3, padding=1)]
    net = CrossStitch(blocks, {"a": nn.Flatten(), "b": nn.Flatten()}, stitch_after=[0], per_channel=True,
                      channels={0: 3})
    out, feats = net(torch.randn(2, 1, 5, 5))
    assert out["a"].shape == (2, 50) and feats.shape == (2, 2, 2, 5, 5)


def test_cosine_matrix_and_delta_m():
    G = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]], dtype=torch.float64)
    C = cosine_matrix(G)
    assert_close(C, torch.tensor([[1.0, 0, -1], [0, 1, 0], [-1, 0, 1]], dtype=torch.float64))
    # Δm: accuracy +1% relative on task 1, error (lower is better) 10% worse on task 2 -> (1 - 10) / 2
    assert abs(delta_m([101.0, 1.1], [100.0, 1.0], [True, False]) - (-4.5)) < 1e-9
    nt = negative_transfer({"a": 90.0, "b": 99.0}, {"a": 95.0, "b": 98.0})
    assert nt["a"]["negative"] and not nt["b"]["negative"]


def test_linear_cka_invariances():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(200, 10, generator=g, dtype=torch.float64)
    Y = torch.randn(200, 7, generator=g, dtype=torch.float64)
    Q, _ = torch.linalg.qr(torch.randn(10, 10, generator=g, dtype=torch.float64))
    assert_close(linear_cka(X, X), torch.tensor(1.0, dtype=torch.float64))
    assert_close(linear_cka(X @ Q * 4.2, Y), linear_cka(X, Y))  # orthogonal transform + isotropic scaling
    assert_close(linear_cka(X + 3.0, Y), linear_cka(X, Y))  # centring removes offsets
    assert 0 <= float(linear_cka(X, Y)) < 0.2
    A = torch.diag(torch.linspace(0.1, 10, 10, dtype=torch.float64))
    assert float(linear_cka(X @ A, X)) < 0.99  # not invariant to anisotropic scaling
    # oracle: the kernel form ⟨K_X, K_Y⟩ / (||K_X|| ||K_Y||) with centred Gram matrices
    H = torch.eye(200, dtype=torch.float64) - 1 / 200
    KX, KY = H @ X @ X.T @ H, H @ Y @ Y.T @ H
    assert_close(linear_cka(X, Y), (KX * KY).sum() / (KX.norm() * KY.norm()))


def test_select_by_cka_picks_related_features():
    g = torch.Generator().manual_seed(1)
    base = torch.randn(300, 6, generator=g, dtype=torch.float64)
    probe = base @ torch.randn(6, 6, generator=g, dtype=torch.float64) + 0.1 * torch.randn(300, 6, generator=g,
                                                                                            dtype=torch.float64)
    cands = {"unrelated": torch.randn(300, 6, generator=g, dtype=torch.float64), "related": base * 2}
    best, scores = select_by_cka(probe, cands)
    assert best == "related" and scores["related"] > scores["unrelated"]


def test_cross_stitch_splits_its_parameters_into_shared_and_heads():
    torch.manual_seed(0)
    net = CrossStitch(_blocks(), {"a": nn.Linear(5, 2), "b": nn.Linear(5, 1)}, stitch_after=[0, 1], self_weight=0.8)
    shared, heads = net.shared_parameters(), net.task_parameters()
    ids = [id(p) for p in shared] + [id(p) for p in heads]
    assert sorted(ids) == sorted(id(p) for p in net.parameters()) and len(set(ids)) == len(ids)
    out, _ = net(torch.randn(4, 4))
    ga = torch.autograd.grad(out["a"].sum(), net.task_parameters("b") + shared, allow_unused=True)
    assert all(g is None for g in ga[:len(net.task_parameters("b"))])  # task a never reaches b's head
    # through the stitch units task a's loss reaches task b's encoder too (soft sharing)
    names = [n for n, _ in net.named_parameters() if not n.startswith("heads.")]
    assert any(n.startswith("nets.1.") and g is not None and g.abs().sum() > 0 for n, g in zip(names, ga[2:]))
