"""Per-step overhead of each multi-task method over equal weighting, for 2, 5 and 10 tasks (time and memory).

Model: the MultiMNIST LeNet encoder (shared, 21.8k parameters) with T classifier heads, batch 256 of 28×28
inputs, Adam. One step = forward, the method's backward, optimizer step. Time: the methods are interleaved
round by round (equal, uncertainty, ..., equal, ...) so machine load hits all alike; we report the median
per-step time over rounds and its ratio to equal weighting. Memory: each (T, method) runs in a fresh process;
we report the growth of peak resident memory (VmHWM, reset after set-up) over 5 steps, and the size of the
per-task gradient matrix G (T × P floats) that the gradient-aggregation methods hold.

    python benchmarks/bench_mtl.py                 # writes benchmarks/results/mtl_overhead.{json,md}
    python benchmarks/bench_mtl.py --rounds 3 --tasks 2 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

METHODS = ("equal", "uncertainty", "gradnorm", "mgda-ub", "mgda", "pcgrad", "cagrad")
OUT = Path(__file__).resolve().parent / "results"


def make_step(method: str, T: int, batch: int = 256, seed: int = 0):
    from adaptlab.models.mtl_lenet import lenet_blocks, lenet_head
    from adaptlab.mtl.architectures import HardSharing
    from adaptlab.mtl.train import MethodStep

    torch.manual_seed(seed)
    tasks = [f"t{i}" for i in range(T)]
    net = HardSharing(lenet_blocks(), {t: lenet_head() for t in tasks})
    step = MethodStep.from_name(method, net, tasks, F.cross_entropy, lambda ps: torch.optim.Adam(ps, lr=1e-3),
                                generator=torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 1, 28, 28, generator=g)
    ys = {t: torch.randint(0, 10, (batch,), generator=g) for t in tasks}
    n_shared = sum(p.numel() for p in net.shared_parameters())
    return (lambda: step(x, ys)), n_shared


def time_all(T: int, rounds: int, steps: int) -> dict:
    runners = {m: make_step(m, T)[0] for m in METHODS}
    for r in runners.values():  # warm-up
        r()
    per = {m: [] for m in METHODS}
    for _ in range(rounds):
        for m, r in runners.items():  # interleaved
            t0 = time.perf_counter()
            for _ in range(steps):
                r()
            per[m].append((time.perf_counter() - t0) / steps)
    return {m: statistics.median(v) for m, v in per.items()}


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


def memory_child(method: str, T: int) -> None:
    """Peak RSS growth during 5 steps: reset the high-water mark (Linux: write 5 to clear_refs) after set-up."""
    run, n_shared = make_step(method, T)
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    for _ in range(5):
        run()
    print(json.dumps({"peak_growth_kib": _status_kib("VmHWM") - before, "n_shared": n_shared}))


def memory(method: str, T: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, __file__, "--child", method, str(T)], capture_output=True, text=True,
                         env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, nargs="+", default=[2, 5, 10])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        memory_child(args.child[0], int(args.child[1]))
        return
    torch.set_num_threads(1)
    env = {"nproc": os.cpu_count(), "loadavg_start": os.getloadavg(), "torch": torch.__version__,
           "python": platform.python_version(), "threads": 1, "rounds": args.rounds, "steps_per_round": args.steps}
    rows = []
    for T in args.tasks:
        times = time_all(T, args.rounds, args.steps)
        for m in METHODS:
            mem = memory(m, T)
            rows.append({"tasks": T, "method": m, "ms_per_step": 1e3 * times[m],
                         "time_vs_equal": times[m] / times["equal"],
                         "peak_rss_growth_mib": mem["peak_growth_kib"] / 1024,
                         "gradient_matrix_mib": (T * mem["n_shared"] * 4 / 2**20
                                                 if m in ("mgda", "pcgrad", "cagrad") else 0.0)})
    env["loadavg_end"] = os.getloadavg()
    OUT.mkdir(exist_ok=True)
    (OUT / "mtl_overhead.json").write_text(json.dumps({"env": env, "rows": rows}, indent=1) + "\n")
    lines = [f"nproc {env['nproc']}, load average at start {env['loadavg_start'][0]:.1f} / end "
             f"{env['loadavg_end'][0]:.1f}, torch {env['torch']}, 1 thread, median of {args.rounds} interleaved "
             f"rounds × {args.steps} steps, batch 256, LeNet encoder (shared) + T heads.", "",
             "| tasks | method | ms / step | × equal | peak RSS growth (MiB) | G matrix (MiB) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['tasks']} | {r['method']} | {r['ms_per_step']:.1f} | {r['time_vs_equal']:.2f} | "
              f"{r['peak_rss_growth_mib']:.1f} | {r['gradient_matrix_mib']:.2f} |" for r in rows]
    (OUT / "mtl_overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
