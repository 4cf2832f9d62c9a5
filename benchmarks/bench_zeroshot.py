"""The bilinear hinge loss over 45 classes, loss + gradient: batched ``compat_loss`` vs straightforward loops.

One step of learning M (384 x 384, the MiniLM space of ``zsl-wordnet``) on ``--n`` inputs against the 45
supersense labels: the pairwise hinge Σ_{j≠y} max(0, margin − s_y + s_j) and its gradient with respect to M.

- ``batched``: :func:`adaptlab.zeroshot.bilinear.compat_loss`, one (n, 45) score matrix.
- ``per_example``: a Python loop over inputs, each scoring its 45 labels as one vector (x_i M Tᵀ).
- ``per_pair``: a loop over inputs and labels, one scalar xᵢᵀ M tⱼ per pair (the lecture's formula as written).

Losses and gradients are compared first (float64 max abs difference); each path is timed ``--repeats`` times,
interleaved so machine load hits all alike, and the medians and ratios are reported with the load average.

Run: ``python benchmarks/bench_zeroshot.py`` (writes benchmarks/results/zeroshot.json and zeroshot.md).
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

from adaptlab.zeroshot.bilinear import compat_loss

OUT = Path(__file__).resolve().parent / "results"


def per_example(M, x, t, y, margin):
    total = x.new_zeros(())
    for i in range(len(y)):
        s = x[i] @ M @ t.T  # (C,)
        v = (margin - s[y[i]] + s).clamp_min(0)
        total = total + v.sum() - v[y[i]]
    return total / len(y)


def per_pair(M, x, t, y, margin):
    total = x.new_zeros(())
    for i in range(len(y)):
        xm = x[i] @ M
        s_true = xm @ t[y[i]]
        for j in range(t.shape[0]):
            if j != int(y[i]):
                total = total + torch.clamp(margin - s_true + xm @ t[j], min=0)
    return total / len(y)


def loss_and_grad(fn, M, x, t, y):
    M = M.detach().clone().requires_grad_()
    loss = fn(M, x, t, y)
    (g,) = torch.autograd.grad(loss, M)
    return loss.detach(), g


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--classes", type=int, default=45)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(args.n, args.dim, generator=g), dim=-1)
    t = torch.nn.functional.normalize(torch.randn(args.classes, args.dim, generator=g), dim=-1)
    y = torch.randint(args.classes, (args.n,), generator=g)
    M = torch.eye(args.dim) + 0.05 * torch.randn(args.dim, args.dim, generator=g)
    margin = 0.1
    paths = {"batched": lambda M, x, t, y: compat_loss({"M": M}, x, t, y, margin=margin, reg=0.0),
             "per_example": lambda M, x, t, y: per_example(M, x, t, y, margin),
             "per_pair": lambda M, x, t, y: per_pair(M, x, t, y, margin)}
    ref = {k: loss_and_grad(f, M.double(), x.double(), t.double(), y) for k, f in paths.items()}
    diff = {k: {"loss": float((ref[k][0] - ref["batched"][0]).abs()),
                "grad": float((ref[k][1] - ref["batched"][1]).abs().max())} for k in paths}
    times: dict[str, list[float]] = {k: [] for k in paths}
    for _ in range(args.repeats):
        for k, f in paths.items():
            t0 = time.perf_counter()
            loss_and_grad(f, M, x, t, y)
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratios = {k: med[k] / med["batched"] for k in paths}
    res = {"n": args.n, "dim": args.dim, "classes": args.classes, "threads": args.threads, "repeats": args.repeats,
           "max_abs_diff_float64": diff, "seconds": times, "median_s": med, "ratio_over_batched": ratios,
           "loadavg": os.getloadavg(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
           "torch": torch.__version__}
    OUT.mkdir(exist_ok=True)
    (OUT / "zeroshot.json").write_text(json.dumps(res, indent=1) + "\n")
    md = (f"# Pairwise hinge loss + gradient over {args.classes} classes, M {args.dim} x {args.dim}, {args.n} inputs, "
          f"{args.threads} thread(s)\n\n`python benchmarks/bench_zeroshot.py`\n\n"
          "| path | median ms | ratio to batched | max abs diff loss / grad (float64) |\n|---|---|---|---|\n"
          + "".join(f"| {k} | {1e3 * med[k]:.2f} | {ratios[k]:.1f}x | {diff[k]['loss']:.1e} / {diff[k]['grad']:.1e} |\n"
                    for k in paths)
          + f"\nload average {', '.join(f'{v:.1f}' for v in res['loadavg'])} on {os.cpu_count()} cores; medians of "
          f"{args.repeats} interleaved runs.\n")
    (OUT / "zeroshot.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
