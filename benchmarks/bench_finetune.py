"""Time and memory of one fine-tuning step: one block vs all layers, frozen by ``requires_grad`` vs by the optimizer.

One step is ``zero_grad; cross_entropy(model(x), y).backward(); Adam.step()`` on a batch of 64 MNIST-sized
(1 x 32 x 32) images, for the CIFAR ResNet-26 and the ResNet-8 (``resnet-small``). ``adapt.freeze`` turns
``requires_grad`` off outside the tuned block, so autograd records nothing before the first tuned tensor;
the "optimizer-only" rows instead leave every tensor trainable and give only the tuned block to the
optimizer (the usual mistake: the whole backward pass is computed and thrown away). Reported per row:

* median seconds per step over interleaved rounds (every row once per round, so load hits all rows alike);
* peak bytes allocated by torch during a step above its starting level (torch profiler memory events);
* bytes saved for backward (``torch.autograd.graph.saved_tensors_hooks``) and autograd nodes in the graph;
* whether the tensors before the first tuned one got a ``.grad`` (they must not, for ``freeze``).

Run: ``python benchmarks/bench_finetune.py`` (writes benchmarks/results/finetune.json and finetune.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from adaptlab import adapt, models

OUT = Path(__file__).resolve().parent / "results"
ROWS = [("block1", "freeze"), ("block2", "freeze"), ("block3", "freeze"), ("head", "freeze"), ("all", "freeze"),
        ("block3", "optimizer-only"), ("head", "optimizer-only")]


def setup(name: str, tune: str, how: str):
    torch.manual_seed(0)
    net = models.create(name, in_channels=1)
    names = adapt.select_blocks(net, [tune])
    if how == "freeze":
        adapt.freeze(net, names)
    adapt.train_mode(net, names)
    named = dict(net.named_parameters())
    opt = torch.optim.Adam([named[n] for n in names], lr=1e-3)
    return net, opt, names


def step(net, opt, x, y):
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(net(x), y).backward()
    opt.step()


def graph_size(net, x, y) -> tuple[int, int]:
    """(bytes saved for backward, autograd nodes) of one forward pass."""
    saved = [0]

    def pack(t):
        saved[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(net(x), y)
    seen, stack = set(), [loss.grad_fn]
    while stack:
        f = stack.pop()
        if f is not None and f not in seen:
            seen.add(f)
            stack.extend(nf for nf, _ in f.next_functions)
    return saved[0], len(seen)


def peak_memory(net, opt, x, y) -> int:
    from torch.profiler import ProfilerActivity, profile

    step(net, opt, x, y)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step(net, opt, x, y)
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage != 0), key=lambda e: e.time_range.start)
    cur = peak = 0
    for e in events:
        cur += e.self_cpu_memory_usage
        peak = max(peak, cur)
    return peak


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="resnet26,resnet-small")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(args.batch, 1, 32, 32, generator=g), torch.randint(10, (args.batch,), generator=g)
    load0 = os.getloadavg()[0]
    out = {"torch": torch.__version__, "nproc": os.cpu_count(), "machine": platform.machine(), "batch": args.batch,
           "rounds": args.rounds, "threads": 1, "models": {}}
    for name in args.models.split(","):
        setups = {f"{t}/{h}": setup(name, t, h) for t, h in ROWS}
        times = {k: [] for k in setups}
        for net, opt, _ in setups.values():
            step(net, opt, x, y)  # warm-up
        for _ in range(args.rounds):
            for k, (net, opt, _) in setups.items():
                t0 = time.perf_counter()
                step(net, opt, x, y)
                times[k].append(time.perf_counter() - t0)
        rows = {}
        for k, (net, opt, names) in setups.items():
            first = next(i for i, n in enumerate(dict(net.named_parameters())) if n in names)
            prefix = list(net.parameters())[:first]
            saved, nodes = graph_size(net, x, y)
            rows[k] = {"seconds": statistics.median(times[k]), "peak_bytes": peak_memory(net, opt, x, y),
                       "saved_bytes": saved, "graph_nodes": nodes,
                       "tuned_params": sum(p.numel() for n, p in net.named_parameters() if n in names),
                       "prefix_got_grad": any(p.grad is not None for p in prefix)}
        out["models"][name] = rows
    out["load_before"], out["load_after"] = load0, os.getloadavg()[0]
    OUT.mkdir(exist_ok=True)
    (OUT / "finetune.json").write_text(json.dumps(out, indent=1) + "\n")
    lines = ["# Fine-tuning one block vs all: time and memory per step", "",
             f"Batch of {args.batch} 1x32x32 images, Adam, one intra-op thread, median of {args.rounds} interleaved "
             f"rounds; torch {out['torch']}, nproc {out['nproc']}, load average before {load0:.2f}, after "
             f"{out['load_after']:.2f}. `python benchmarks/bench_finetune.py`", ""]
    for name, rows in out["models"].items():
        base = rows["all/freeze"]
        lines += [f"## {name}", "", "| tuned | frozen by | tuned params | ms / step | vs all | peak MB | saved for "
                  "backward MB | graph nodes | prefix got .grad |", "|---|---|---|---|---|---|---|---|---|"]
        for k, r in rows.items():
            t, h = k.split("/")
            lines.append(f"| {t} | {h} | {r['tuned_params']} | {1000 * r['seconds']:.1f} | "
                         f"{r['seconds'] / base['seconds']:.2f}x | {r['peak_bytes'] / 2**20:.1f} | "
                         f"{r['saved_bytes'] / 2**20:.1f} | {r['graph_nodes']} | {r['prefix_got_grad']} |")
        lines.append("")
    (OUT / "finetune.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
