"""Compression benchmark: time of a full sensitivity scan, and CPU latency of float, pruned and int8 models.

Models: the VGG-style CNN (widths 16-32-32-64) and the LeNet-style CNN, trained briefly on MNIST (the
latency does not depend on how well they are trained; the accuracies are printed so the int8 paths can be
seen to work). Variants timed at batch 1 and 64, with one intra-op thread:

* float32 dense;
* fine-grained pruned to 75% sparsity (still dense kernels: zeros are multiplied like any other weight);
* channel pruned, 50% of every conv's output channels removed (L2 ranking);
* int8 integer-only, reference kernels (ours: int8 im2col, int8 x int8 -> int32 ``torch._int_mm``, exact
  fixed-point requantization; the oracle);
* int8 integer-only, fast path (the same converted model through PyTorch's quantized CPU kernels fed with our
  integers, scales and zero points, :mod:`adaptlab.compress.qops`); how many of its test logits and
  predictions differ from the reference path's is reported;
* int8 ``torch.ao.quantization`` (eager-mode static quantization, x86/fbgemm kernels).

The variants are interleaved (round r: every variant once, then round r + 1, ...) so machine load affects them
alike; each round takes the median of ``--calls`` calls, and the median over rounds is reported, with the load
average at every round. The scan is 5 layers x 9 sparsities evaluated on 2000 held-out training images, timed
``--scan-repeats`` times (0 skips it).

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
from adaptlab.compress import qops
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


REF, FAST, AO = "int8 integer-only, reference kernels", "int8 integer-only, fast path", "int8 torch.ao"


def variants(model, calib):
    m = copy.deepcopy(model)
    FineGrainedPruner(m, dict.fromkeys(prunable_names(model), 0.75)).apply()
    ours = convert_integer(model, calib)
    theirs = torch_int8(model, [c.unsqueeze(1) for c in calib])
    return {"float32 dense": model, "fine-grained 75% (dense kernels)": m,
            "channel-pruned 50%": ch.prune_channels(model, 0.5, "l2").eval(),
            REF: lambda x: ours.forward_int(x, path="reference"),
            FAST: lambda x: ours.forward_int(x, path="fast"),
            AO: lambda x: theirs(x.unsqueeze(1))}


@torch.no_grad()
def fast_vs_reference(fns: dict, x: torch.Tensor) -> dict:
    ref, fast = fns[REF](x), fns[FAST](x)
    step = (fast.int() - ref.int()).abs()
    return {"kernels": qops.fast_engine(), "logits": step.numel(), "logits_differing": int((step > 0).sum()),
            "max_step": int(step.max()), "predictions_differing": int((fast.argmax(1) != ref.argmax(1)).sum())}


@torch.no_grad()
def time_interleaved(fns: dict, x: torch.Tensor, rounds: int, calls: int) -> dict:
    per: dict = {k: [] for k in fns}
    loads = []
    for f in fns.values():                                       # warm-up
        f(x)
        f(x)
    for _ in range(rounds):
        loads.append(os.getloadavg()[0])
        for k, f in fns.items():
            ts = []
            for _ in range(calls):
                t0 = time.perf_counter()
                f(x)
                ts.append((time.perf_counter() - t0) * 1e3)
            per[k].append(statistics.median(ts))
    return {k: {"median_ms": statistics.median(v), "rounds_ms": v} for k, v in per.items()} | {"loadavg": loads}


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
        r = {"test_acc": {k: accuracy(f, ds.test_x, ds.test_y) for k, f in fns.items()},
             "fast_vs_reference": fast_vs_reference(fns, ds.test_x)}
        for b in (1, 64):
            r[f"batch{b}"] = time_interleaved(fns, ds.test_x[:b], args.rounds, args.calls if b == 1 else
                                              max(3, args.calls // 4))
        if name == "VGG" and args.scan_repeats > 0:
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
    if args.scan_repeats == 0:
        carry_scan(res, args.out / "compress.json")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compress.json").write_text(json.dumps(res, indent=1) + "\n")
    (args.out / "compress.md").write_text(report(res))
    print(report(res))


def carry_scan(res: dict, previous: Path) -> None:
    """With the scan skipped, keep the previous results file's scan, marked as carried over (not re-measured)."""
    if not previous.is_file():
        return
    old = json.loads(previous.read_text())
    scan = old.get("models", {}).get("VGG", {}).get("scan")
    if scan and "VGG" in res["models"]:
        res["models"]["VGG"]["scan"] = scan | {"carried_over": True,
                                               "loadavg_before": old["machine"]["loadavg_before"]}


def ratio(timed: dict, a: str, b: str) -> str:
    """a / b of the medians, and of the best rounds (a load spike that hits whole rounds moves the median)."""
    return (f"{timed[a]['median_ms'] / timed[b]['median_ms']:.2f} "
            f"({min(timed[a]['rounds_ms']) / min(timed[b]['rounds_ms']):.2f})")


def report(res: dict) -> str:
    m, c = res["machine"], res["config"]
    defaults = {"train_steps": 300, "rounds": 7, "calls": 20, "scan_repeats": 2}
    flags = "".join(f" --{k.replace('_', '-')} {c[k]}" for k, v in defaults.items() if c.get(k, v) != v)
    lines = ["# Compression benchmark", "",
             f"`python benchmarks/bench_compress.py{flags}` -- {m['nproc']} cores, load average before "
             f"{m['loadavg_before'][0]:.1f} / after {m['loadavg_after'][0]:.1f}, torch {m['torch']}, "
             f"{m['threads']} intra-op thread; {res['config']['rounds']} interleaved rounds, each the median of its "
             "calls; reported: the median and the best of the rounds.", ""]
    for name, r in res["models"].items():
        lines += [f"## {name}", "", "| variant | test acc | batch 1 (ms): median / best round | "
                  "batch 64 (ms): median / best round |", "|---|---|---|---|"]
        for k in r["test_acc"]:
            b1, b64 = r["batch1"][k], r["batch64"][k]
            lines.append(f"| {k} | {100 * r['test_acc'][k]:.2f}% | {b1['median_ms']:.3f} / "
                         f"{min(b1['rounds_ms']):.3f} | {b64['median_ms']:.2f} / {min(b64['rounds_ms']):.2f} |")
        d, b1, b64 = r["fast_vs_reference"], r["batch1"], r["batch64"]
        lines += ["", f"Fast path ({d['kernels']} kernels) vs reference kernels on the 10k test images: "
                      f"{d['logits_differing']} of {d['logits']} int8 logits differ (by at most {d['max_step']} "
                      f"step), {d['predictions_differing']} predictions differ. Ratios, median (best round): "
                      f"fast / torch.ao {ratio(b1, FAST, AO)} at batch 1 and {ratio(b64, FAST, AO)} at batch 64; "
                      f"fast / float32 at batch 64 {ratio(b64, FAST, 'float32 dense')}; reference / fast at batch 64 "
                      f"{ratio(b64, REF, FAST)}. Load average per round, batch 1: "
                      f"{', '.join(f'{v:.1f}' for v in b1['loadavg'])}; batch 64: "
                      f"{', '.join(f'{v:.1f}' for v in b64['loadavg'])}."]
        if "scan" in r:
            s = r["scan"]
            lines += ["", f"Full sensitivity scan ({s['layers']} layers x {s['sparsities']} sparsities, each "
                          f"evaluated on {s['eval_images']} images): median {s['median_s']:.1f} s "
                          f"(runs: {', '.join(f'{x:.1f}' for x in s['seconds'])} s)."
                          + (f" Carried over from the previous results file (load average "
                             f"{s['loadavg_before'][0]:.1f}); not re-measured in this run (--scan-repeats 0)."
                             if s.get("carried_over") else "")]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
