"""torch.profiler tables of one whole Conv4 MAML meta-step at one thread: the per-task loop against the folded path.

    python benchmarks/profile_maml_conv.py                       # T = 32, K = 1, second and first order
    python benchmarks/profile_maml_conv.py --orders 2 --shapes   # + the same table grouped by input shape

5-way 1-shot Omniglot, 1 query per class, Conv4 with 64 channels and batch norm, inner lr 0.4 (the batch of
``bench_omniglot.py --part maml-paths``). For each order and method (``loop``: learn2learn's clone()/adapt()
per-task loop, ``bench_omniglot._l2l_loop``; ``auto``: ``maml_meta_loss`` with the default path) it times
``REP`` unprofiled calls (CPU seconds, ``time.process_time``; the minimum is printed), then profiles one call
and prints the operators with the largest self CPU time, each with its share of the profiled total. The
output is quoted in ``benchmarks/results/maml_conv_profile.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_omniglot import _episodes, _l2l_loop  # noqa: E402


def main() -> None:
    from torch.profiler import profile

    from adaptlab.meta.maml import maml_meta_loss
    from adaptlab.models.conv4 import Conv4

    p = argparse.ArgumentParser()
    p.add_argument("--T", type=int, default=32)
    p.add_argument("--K", type=int, default=1)
    p.add_argument("--orders", default="2,1")
    p.add_argument("--methods", default="loop,auto")
    p.add_argument("--rows", type=int, default=18)
    p.add_argument("--shapes", action="store_true", help="also group the table by input shape")
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = Conv4(n_classes=5)
    params = dict(model.named_parameters())
    leaves = list(params.values())
    sampler, g = _episodes(5, 1, 1, 1)
    b = {T: sampler.sample(T, g) for T in (8, 32)}[a.T]  # the grid's batch at this meta-batch
    calls = {"loop": lambda fo: _l2l_loop(model, params, b, a.K, 0.4, fo),
             "auto": lambda fo: maml_meta_loss(params, {}, b, model=model, loss_fn=F.cross_entropy, steps=a.K,
                                               lr=0.4, first_order=fo)[0]}
    for order in (int(o) for o in a.orders.split(",")):
        fo = order == 1
        for m in a.methods.split(","):
            torch.autograd.grad(calls[m](fo), leaves)  # warm-up
            cpu = []
            for _ in range(int(os.environ.get("REP", 2))):
                c0 = time.process_time()
                torch.autograd.grad(calls[m](fo), leaves)
                cpu.append(time.process_time() - c0)
            with profile(record_shapes=a.shapes) as prof:
                torch.autograd.grad(calls[m](fo), leaves)
            ev = prof.key_averages(group_by_input_shape=a.shapes)
            total = sum(e.self_cpu_time_total for e in ev)
            print(f"\n## order {order}, {m}, T = {a.T}, K = {a.K}: CPU s min {min(cpu):.3f} of {len(cpu)} "
                  f"unprofiled; profiled self total {total / 1e6:.3f} s; load {os.getloadavg()[0]:.1f}\n")
            print("| op | calls | self CPU s | share |" + (" input shapes |" if a.shapes else ""))
            print("|---|---|---|---|" + ("---|" if a.shapes else ""))
            for e in sorted(ev, key=lambda e: -e.self_cpu_time_total)[:a.rows]:
                shp = f" {str(e.input_shapes)[:90]} |" if a.shapes else ""
                print(f"| {e.key} | {e.count} | {e.self_cpu_time_total / 1e6:.3f} | "
                      f"{e.self_cpu_time_total / total:.1%} |" + shp, flush=True)


if __name__ == "__main__":
    main()
