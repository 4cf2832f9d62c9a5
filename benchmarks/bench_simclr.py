"""NT-Xent at batch 512: the one-matrix loss (:func:`adaptlab.zeroshot.contrastive.nt_xent`) against the per-anchor
loop (:func:`~adaptlab.zeroshot.contrastive.nt_xent_reference`), forward and backward, and the augmentations.

    python benchmarks/bench_simclr.py                 # writes benchmarks/results/simclr.{json,md}
    python benchmarks/bench_simclr.py --repeats 1     # smoke run

Both losses get the same (512, 64) projections of each view (1024 anchors, 1023 candidates each); the two are
timed interleaved (A, B, A, B, ...) in one process with one torch thread, so machine load hits both alike, and
the median of the repeats is reported with the load average. The values are checked equal first. The view
pipeline (random affine + elastic in one grid_sample, then cutout) is timed for 512 Omniglot-sized images.
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

ROOT = Path(__file__).resolve().parents[1]


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    from adaptlab.zeroshot.contrastive import Augment, nt_xent, nt_xent_reference, two_views

    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(args.batch, args.dim, generator=g, requires_grad=True)
    z2 = torch.randn(args.batch, args.dim, generator=g, requires_grad=True)
    fast, slow = nt_xent(z1, z2), nt_xent_reference(z1, z2)
    diff = abs(float(fast.detach()) - float(slow.detach()))
    assert diff < 1e-4, diff

    def step(loss_fn):
        def go():
            z1.grad = z2.grad = None
            loss_fn(z1, z2).backward()
        return go

    def forward(loss_fn):
        def go():
            with torch.no_grad():
                loss_fn(z1, z2)
        return go

    cases = {"matrix fwd+bwd": step(nt_xent), "loop fwd+bwd": step(nt_xent_reference),
             "matrix fwd": forward(nt_xent), "loop fwd": forward(nt_xent_reference)}
    x = torch.rand(args.batch, 1, 28, 28, generator=g)
    cases["two views of the batch (28x28)"] = lambda: two_views(x, g, Augment())
    load_before = os.getloadavg()[0]
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.repeats):
        for name, fn in cases.items():
            times[name].append(_time(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {"batch": args.batch, "dim": args.dim, "repeats": args.repeats, "threads": 1,
           "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
           "torch": torch.__version__, "max_abs_loss_difference": diff,
           "median_seconds": {k: round(v, 5) for k, v in med.items()},
           "speedup_fwd_bwd": round(med["loop fwd+bwd"] / med["matrix fwd+bwd"], 1),
           "speedup_fwd": round(med["loop fwd"] / med["matrix fwd"], 1)}
    res = ROOT / "benchmarks" / "results"
    res.mkdir(parents=True, exist_ok=True)
    (res / "simclr.json").write_text(json.dumps(out, indent=1) + "\n")
    lines = [f"# NT-Xent, batch {args.batch} (2 x {args.batch} views, {args.dim}-d projections)", "",
             "`python benchmarks/bench_simclr.py` - one torch thread, interleaved, median of "
             f"{args.repeats}; load average {out['load_average'][0]} -> {out['load_average'][1]} on "
             f"{out['machine']}; |loss difference| {diff:.1e}.", "", "| what | median s |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in med.items()]
    lines += ["", f"One-matrix NT-Xent vs the per-anchor loop: {out['speedup_fwd_bwd']}x (forward + backward), "
              f"{out['speedup_fwd']}x (forward)."]
    (res / "simclr.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
