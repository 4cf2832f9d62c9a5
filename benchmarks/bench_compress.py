"""Compression benchmark: time of a full sensitivity scan, and CPU latency of float, pruned and int8 models.

Models: the VGG-style CNN (widths 16-32-32-64) and the LeNet-style CNN, trained briefly on MNIST (the
latency does not depend on how well they are trained; the accuracies are printed so the int8 paths can be
seen to work). Variants timed at batch 1 and 64, with one intra-op thread:

* float32 dense;
* fine-grained pruned to 75% sparsity (still dense kernels: zeros are multiplied like any other weight);
* channel pruned, 50% of every conv's output channels removed (L2 ranking);
* int8 integer-only (ours: int8 x int8 -> int32 ``torch._int_mm`` + fixed-point requantization);
* int8 ``torch.ao.quantization`` (eager-mode static quantization, x86/fbgemm kernels).

The variants are interleaved (round r: every variant once, then round r + 1, ...) so machine load affects them
alike; each round takes the median of ``--calls`` calls, and the median over rounds is reported. The scan is
5 layers x 9 sparsities evaluated on 2000 held-out training images, timed ``--scan-repeats`` times.

Run: ``python benchmarks/bench_compress.py`` (writes benchmarks/results/compress.json and compress.md).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from adaptlab.compress import channel as ch
from adaptlab.compress import sensitivity as sens
from adaptlab.compress.integer import convert_integer
from adaptlab.compress.prune import FineGrainedPruner, prunable_names
from adaptlab.compress.torch_ref import torch_int8
from adaptlab.compress.train import train_steps
from adaptlab.data.mnist import load_mnist
from adaptlab.eval.metrics import accuracy
from adaptlab.models.cnn import LeNet5, VGGNet

OUT = Path(__file__).resolve().parent / "results"
GRID = [0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95]


def trained(make, ds, steps: int):
    torch.manual_seed(0)
    model = make()
    train_steps(model, model.parameters(), ds.train_x[:58000], ds.train_y[:58000], steps=steps, batch_size=128,
                lr=2e-3, generator=torch.Generator().manual_seed(0))
    return model.eval()


def variants(model, calib):
    m = copy.deepcopy(model)
    FineGrainedPruner(m, dict.fromkeys(prunable_names(model), 0.75)).apply()
    ours = convert_integer(model, calib)
    theirs = torch_int8(model, [c.unsqueeze(1) for c in calib])
    return {"float32 dense": model, "fine-grained 75% (dense kernels)": m,
            "channel-pruned 50%": ch.prune_channels(model, 0.5, "l2").eval(),
            "int8 integer-only (ours)": ours.forward_int,
            "int8 torch.ao": lambda x: theirs(x.unsqueeze(1))}


@torch.no_grad()
def time_interleaved(fns: dict, x: torch.Tensor, rounds: int, calls: int) -> dict:
    per = {k: [] for k in fns}
    for f in fns.values():                                       # warm-up
        f(x)
        f(x)
    for _ in range(rounds):
        for k, f in fns.items():
            ts = []
            for _ in range(calls):
                t0 = time.perf_counter()
                f(x)
                ts.append((time.perf_counter() - t0) * 1e3)
            per[k].append(statistics.median(ts))
    return {k: {"median_ms": statistics.median(v), "rounds_ms": v} for k, v in per.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-steps", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--scan-repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ds = load_mnist()
    val_x, val_y = ds.train_x[58000:], ds.train_y[58000:]
    calib = list(ds.train_x[:512].split(128))
    load_before = os.getloadavg()
    res = {"machine": {"nproc": os.cpu_count(), "loadavg_before": load_before, "torch": torch.__version__,
                       "threads": 1, "python": platform.python_version(), "processor": platform.processor()},
           "config": vars(args) | {"out": str(args.out.name)}, "models": {}}
    for name, make in (("VGG", VGGNet), ("LeNet", LeNet5)):
        model = trained(make, ds, args.train_steps)
        fns = variants(model, calib)
        r = {"test_acc": {k: accuracy(f, ds.test_x, ds.test_y) for k, f in fns.items()}}
        for b in (1, 64):
            r[f"batch{b}"] = time_interleaved(fns, ds.test_x[:b], args.rounds, args.calls if b == 1 else
                                              max(3, args.calls // 4))
        if name == "VGG":
            names = prunable_names(model)
            secs = []
            for _ in range(args.scan_repeats):
                t0 = time.perf_counter()
                sens.sensitivity_scan(model, lambda m: accuracy(m, val_x, val_y), names, GRID)
                secs.append(time.perf_counter() - t0)
            r["scan"] = {"layers": len(names), "sparsities": len(GRID), "eval_images": len(val_y),
                         "seconds": secs, "median_s": statistics.median(secs)}
        res["models"][name] = r
    res["machine"]["loadavg_after"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compress.json").write_text(json.dumps(res, indent=1) + "\n")
    (args.out / "compress.md").write_text(report(res))
    print(report(res))


def report(res: dict) -> str:
    m = res["machine"]
    lines = ["# Compression benchmark", "",
             f"`python benchmarks/bench_compress.py` -- {m['nproc']} cores, load average before "
             f"{m['loadavg_before'][0]:.1f} / after {m['loadavg_after'][0]:.1f}, torch {m['torch']}, "
             f"{m['threads']} intra-op thread; median over {res['config']['rounds']} interleaved rounds.", ""]
    for name, r in res["models"].items():
        lines += [f"## {name}", "", "| variant | test acc | batch 1 (ms) | batch 64 (ms) |", "|---|---|---|---|"]
        for k in r["batch1"]:
            lines.append(f"| {k} | {100 * r['test_acc'][k]:.2f}% | {r['batch1'][k]['median_ms']:.3f} | "
                         f"{r['batch64'][k]['median_ms']:.2f} |")
        if "scan" in r:
            s = r["scan"]
            lines += ["", f"Full sensitivity scan ({s['layers']} layers x {s['sparsities']} sparsities, each "
                          f"evaluated on {s['eval_images']} images): median {s['median_s']:.1f} s "
                          f"(runs: {', '.join(f'{x:.1f}' for x in s['seconds'])} s)."]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
