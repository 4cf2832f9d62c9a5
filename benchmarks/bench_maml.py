"""Sinusoid MAML meta-steps per second and peak memory: adaptlab's vmapped MAML against ``higher``.

Same model (MLP 1-40-40-1, ReLU), same initial weights, same task batches (25 tasks of 10 support and 10 query
points), 5 inner SGD steps of size 0.01, Adam outer step of 1e-3; second order and first order. ``higher`` runs
the usual per-task loop with ``innerloop_ctx``. The two implementations are interleaved (ours, higher, ours,
...) so machine load affects both alike, and the median time per meta-step is reported. Before timing, the
meta-gradients of the two are compared (float64 and float32).

Peak memory is the largest amount of CPU memory allocated by torch during one meta-step above what was
allocated before it, read from the torch profiler's memory events; it is also measured for our second- and
first-order modes as the number of inner steps K grows.

Run: ``python benchmarks/bench_maml.py`` (writes benchmarks/results/maml.json and maml.md).
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

from adaptlab.meta.maml import maml_meta_loss
from adaptlab.models.mlp import MLP
from adaptlab.tasks.batch import SupportQuery
from adaptlab.tasks.sinusoid import SinusoidTasks

OUT = Path(__file__).resolve().parent / "results"


def make(seed: int = 0, dtype=torch.float32):
    torch.manual_seed(seed)
    model = MLP((1, 40, 40, 1)).to(dtype)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def batch(seed: int, tasks: int = 25, k: int = 10, dtype=torch.float32):
    b = SinusoidTasks(dtype=dtype).sample(tasks, torch.Generator().manual_seed(seed), n_support=k, n_query=k)
    return b.support_x, b.support_y, b.query_x, b.query_y


def ours_step(model, opt, data, steps: int, first_order: bool) -> None:
    opt.zero_grad(set_to_none=True)
    loss, _ = maml_meta_loss(dict(model.named_parameters()), {}, SupportQuery(*data), model=model,
                             loss_fn=F.mse_loss, steps=steps, lr=0.01, first_order=first_order)
    loss.backward()
    opt.step()


def higher_step(model, opt, data, steps: int, first_order: bool) -> None:
    """The usual higher loop: one task at a time, innerloop_ctx, differentiable SGD."""
    import higher

    opt.zero_grad(set_to_none=True)
    xs, ys, xq, yq = data
    T = xs.shape[0]
    inner_opt = torch.optim.SGD(model.parameters(), lr=0.01)
    params = list(model.parameters())
    for t in range(T):
        with higher.innerloop_ctx(model, inner_opt, copy_initial_weights=False,
                                  track_higher_grads=not first_order) as (fmodel, diffopt):
            for _ in range(steps):
                diffopt.step(F.mse_loss(fmodel(xs[t]), ys[t]))
            qloss = F.mse_loss(fmodel(xq[t]), yq[t]) / T
            if first_order:  # gradient at the adapted weights, applied to the initial weights
                grads = torch.autograd.grad(qloss, list(fmodel.parameters()))
                for p, g in zip(params, grads):
                    p.grad = g if p.grad is None else p.grad + g
            else:
                qloss.backward()
    opt.step()


def meta_grad(step_fn, dtype, steps, first_order):
    model, _ = make(0, dtype)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: step() leaves the weights, grads remain
    step_fn(model, opt, batch(0, dtype=dtype), steps, first_order)
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def peak_memory(step_fn, steps: int, first_order: bool) -> int:
    """Peak bytes allocated by torch during one meta-step, above the level at its start."""
    from torch.profiler import ProfilerActivity, profile

    model, opt = make(0)
    data = batch(0)
    step_fn(model, opt, data, steps, first_order)  # warm-up: Adam state exists before measuring
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step_fn(model, opt, data, steps, first_order)
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage != 0), key=lambda e: e.time_range.start)
    cur = peak = 0
    for e in events:
        cur += e.self_cpu_memory_usage
        peak = max(peak, cur)
    return peak


def time_interleaved(steps: int, first_order: bool, rounds: int, reps: int) -> dict:
    impls = {"adaptlab": ours_step, "higher": higher_step}
    state = {name: make(0) for name in impls}
    times: dict[str, list[float]] = {name: [] for name in impls}
    seed = 0
    for name, fn in impls.items():  # warm-up
        fn(*state[name], batch(seed), steps, first_order)
    for _ in range(rounds):
        for name, fn in impls.items():
            t0 = time.perf_counter()
            for r in range(reps):
                fn(*state[name], batch(seed + r + 1), steps, first_order)
            times[name].append((time.perf_counter() - t0) / reps)
        seed += reps
    med = {name: statistics.median(v) for name, v in times.items()}
    return {"steps_per_s": {n: 1.0 / m for n, m in med.items()}, "median_s": med,
            "speedup": med["higher"] / med["adaptlab"], "rounds": rounds, "reps": reps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2", help="intra-op thread counts to time, e.g. 1,2")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--inner-steps", type=int, default=5)
    ap.add_argument("--memory-ks", default="1,2,5,10,20")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    K = args.inner_steps
    threads = [int(t) for t in args.threads.split(",")]
    res: dict = {"setup": {"model": "MLP 1-40-40-1 ReLU", "tasks_per_step": 25, "support": 10, "query": 10,
                           "inner_steps": K, "inner_lr": 0.01, "outer": "Adam 1e-3", "torch": torch.__version__,
                           "threads": threads, "nproc": os.cpu_count(), "load_before": os.getloadavg(),
                           "machine": platform.processor() or platform.machine()}}
    torch.set_num_threads(1)
    for mode, fo in (("second_order", False), ("first_order", True)):
        g64 = [meta_grad(fn, torch.float64, K, fo) for fn in (ours_step, higher_step)]
        g32 = [meta_grad(fn, torch.float32, K, fo) for fn in (ours_step, higher_step)]
        entry = {"max_abs_grad_diff_float64": float((g64[0] - g64[1]).abs().max()),
                 "max_rel_grad_diff_float64": float((g64[0] - g64[1]).norm() / g64[1].norm()),
                 "max_rel_grad_diff_float32": float((g32[0] - g32[1]).norm() / g32[1].norm())}
        assert entry["max_rel_grad_diff_float64"] < 1e-10, entry  # same meta-gradient, to rounding
        entry["timing"] = {}
        for n in threads:
            torch.set_num_threads(n)
            entry["timing"][str(n)] = time_interleaved(K, fo, args.rounds, args.reps)
        torch.set_num_threads(1)
        entry["peak_bytes"] = {"adaptlab": peak_memory(ours_step, K, fo), "higher": peak_memory(higher_step, K, fo)}
        res[mode] = entry
    ks = [int(k) for k in args.memory_ks.split(",")]
    res["memory_vs_inner_steps"] = {
        "K": ks, "second_order_bytes": [peak_memory(ours_step, k, False) for k in ks],
        "first_order_bytes": [peak_memory(ours_step, k, True) for k in ks]}
    res["setup"]["load_after"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "maml.json").write_text(json.dumps(res, indent=1) + "\n")
    (args.out / "maml.md").write_text(report(res))
    print(report(res))


def args_rounds(res: dict) -> int:
    return next(iter(res["second_order"]["timing"].values()))["rounds"]


def report(res: dict) -> str:
    s = res["setup"]
    lines = ["# MAML benchmark: adaptlab (vmap) vs higher (per-task loop)", "",
             f"{s['tasks_per_step']} sinusoid tasks per meta-step ({s['support']} support + {s['query']} query "
             f"points), {s['model']}, {s['inner_steps']} inner SGD steps, {s['outer']}; torch {s['torch']}, "
             f"nproc {s['nproc']}, load average before {s['load_before'][0]:.2f}, after {s['load_after'][0]:.2f}. "
             f"Median of {args_rounds(res)} interleaved rounds per thread count.", "",
             "| mode | intra-op threads | adaptlab meta-steps/s | higher meta-steps/s | speed-up | peak MB adaptlab "
             "| peak MB higher | meta-grad rel. diff (float64) |", "|---|---|---|---|---|---|---|---|"]
    for mode in ("second_order", "first_order"):
        e = res[mode]
        for n, t in e["timing"].items():
            lines.append(f"| {mode.replace('_', ' ')} | {n} | {t['steps_per_s']['adaptlab']:.1f} | "
                         f"{t['steps_per_s']['higher']:.2f} | {t['speedup']:.1f}x | "
                         f"{e['peak_bytes']['adaptlab'] / 1e6:.2f} | {e['peak_bytes']['higher'] / 1e6:.2f} | "
                         f"{e['max_rel_grad_diff_float64']:.1e} |")
    m = res["memory_vs_inner_steps"]
    lines += ["", "Peak memory of one adaptlab meta-step (MB) vs inner steps K:", "",
              "| K | " + " | ".join(map(str, m["K"])) + " |", "|---|" + "---|" * len(m["K"]),
              "| second order | " + " | ".join(f"{b / 1e6:.2f}" for b in m["second_order_bytes"]) + " |",
              "| first order | " + " | ".join(f"{b / 1e6:.2f}" for b in m["first_order_bytes"]) + " |", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
