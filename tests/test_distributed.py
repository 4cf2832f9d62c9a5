"""Two gloo processes sharding a meta-batch produce exactly the meta-update of one process."""

from __future__ import annotations

import os
import socket

import torch
import torch.multiprocessing as mp

from adaptlab import distributed as D
from adaptlab.engine import fit
from adaptlab.meta.protonet import ProtoNet
from adaptlab.models.conv4 import Conv4
from adaptlab.tasks.episodes import EpisodeSampler

from conftest import assert_close


def _setup():
    torch.manual_seed(0)
    net = Conv4(hidden=8, image_size=16, track_running_stats=True).double()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(60, 1, 16, 16, generator=g, dtype=torch.float64)
    y = torch.arange(12).repeat_interleave(5)
    return net, EpisodeSampler(x, y, 3, 2, 2).sample(5, g)        # 5 episodes: shards of 2 and 3


def _step(net, episodes):
    """One meta-step as the experiments do it: engine.fit on this process's shard (weighted by its share of
    the meta-batch) with the gradients summed over processes by the all_reduce hook before the SGD step."""
    pn = ProtoNet(net)
    grads = []

    def shard_loss(eps):
        part = eps.shard(D.rank(), D.world_size())
        return pn.loss(part)[0] * (len(part) / len(eps))

    def all_reduce(params):
        D.all_reduce_gradients(params)
        grads.extend(p.grad.clone() for p in params)

    fit(shard_loss, lambda _: episodes, steps=1, optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
        all_reduce=all_reduce)
    return grads, [p.detach().clone() for p in net.parameters()]


def _worker(r, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(r), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    try:
        D.init_from_env("cpu")
        net, eps = _setup()
        grads, params = _step(net, eps)
        if r == 0:
            torch.save({"grads": grads, "params": params}, out)
    finally:
        torch.distributed.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_match_one_process(tmp_path):
    out = tmp_path / "rank0.pt"
    # fork: the children inherit the imported modules instead of re-importing torch (seconds, not tens)
    mp.start_processes(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True, start_method="fork")
    two = torch.load(out)
    net, eps = _setup()
    grads, params = _step(net, eps)                          # single process: no group, helpers are no-ops
    for a, b in zip(two["grads"], grads):
        assert_close(a, b, rtol=1e-12, atol=1e-14)   # float64; only the summation order differs
    for a, b in zip(two["params"], params):
        assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_shard_bounds_cover_the_batch_and_refuse_tiny_batches():
    bounds = [D.shard_bounds(10, r, 4) for r in range(4)]
    assert bounds[0][0] == 0 and bounds[-1][1] == 10
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    import pytest

    with pytest.raises(ValueError, match="meta_batch"):
        D.shard_bounds(1, 0, 2)
    assert D.world_size() == 1 and D.is_main()
