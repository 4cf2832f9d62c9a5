"""Benchmark: the closed-form Fourier study, batched vs a straightforward per-task loop.

1. End-to-end wall time of `fourier-closed-form` (100 meta-steps, 11 evaluations of every size x 10 tasks):
   adaptlab's batched implementation vs a per-task-loop implementation of the same math that solves each task
   of a meta-step with a generic pseudo-inverse and fits every (evaluation, size, task, method) with
   ``numpy.linalg.lstsq``, the way course code usually does it.
2. Meta-gradient throughput (tasks/s) for 1 to 1024 tasks per meta-step, batched vs per-task loop.

Runs alternate between the implementations so machine load affects both alike; medians are reported.

    python benchmarks/bench_fourier.py                 # writes benchmarks/results/fourier.{json,md}
    python benchmarks/bench_fourier.py --naive-runs 0  # skip the slow per-task end-to-end run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from adaptlab.eval.shots import make_shots_data
from adaptlab.experiments import get
from adaptlab.experiments.fourier import build_tasks, study_sizes
from adaptlab.meta.feature_weights import feature_weight_meta_loss
from adaptlab.runner import run_experiment

OUT = Path(__file__).resolve().parent / "results"


def ours_end_to_end(cfg) -> float:
    exp = get("fourier-closed-form")
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        exp.run(cfg, Path(d), resume=False)
        return time.perf_counter() - t0


def ours_with_figures(cfg) -> float:
    exp = get("fourier-closed-form")
    with tempfile.TemporaryDirectory() as d:
        return run_experiment(exp, cfg, Path(d) / "run").seconds


def naive_end_to_end(cfg) -> dict:
    """The same study written as loops over tasks with generic solvers.

    Every one of the 1 + steps / eval.every evaluations does identical work (the same sizes, tasks and
    methods), so the training loop is timed in full and one evaluation is timed and counted that many times.
    """
    tasks = build_tasks(cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    data = make_shots_data(tasks, study_sizes(cfg), cfg.eval.num_tasks, cfg.eval.n_test,
                           torch.Generator().manual_seed(cfg.seed + 1))
    c = torch.ones(cfg.task.d, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([c], lr=cfg.train.lr)
    support = cfg.task.support
    phi_test = data.phi_test.numpy()

    def evaluate(cw: np.ndarray) -> None:
        for phi, y in zip(data.phi_train, data.y_train):
            phi = phi.numpy()
            for t in range(y.shape[0]):
                for method in ("meta", "init", "oracle"):
                    if method == "oracle":
                        cols = phi[:, support]
                        coef = np.zeros(cfg.task.d)
                        coef[support] = np.linalg.lstsq(cols, y[t].numpy(), rcond=None)[0]
                    else:
                        w = cw if method == "meta" else np.ones_like(cw)
                        coef = w * np.linalg.lstsq(phi * w, y[t].numpy(), rcond=None)[0]
                    np.mean((phi_test @ coef - data.y_test[t].numpy()) ** 2)

    t0 = time.perf_counter()
    evaluate(c.detach().numpy())
    eval_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(cfg.train.steps):
        batch = tasks.sample(cfg.train.tasks_per_step, gen)
        opt.zero_grad()
        loss = 0.0
        for t in range(batch.num_tasks):
            A = tasks.features(batch.support_x[t]) * c
            alpha = c * (torch.linalg.pinv(A) @ batch.support_y[t])
            loss = loss + ((tasks.features(batch.query_x[t]) @ alpha - batch.query_y[t]) ** 2).sum()
        loss.backward()
        opt.step()
    train_s = time.perf_counter() - t0
    n_evals = 1 + cfg.train.steps // cfg.eval.every
    return {"train_s": train_s, "one_eval_s": eval_s, "n_evals": n_evals, "total_s": train_s + n_evals * eval_s}


def throughput(num_tasks: int, cfg, batched: bool, reps: int, x: str) -> float:
    tasks = build_tasks(get("fourier-closed-form").config([f"task.x={x}"]))
    batch = tasks.sample(num_tasks, torch.Generator().manual_seed(0))
    c = torch.ones(cfg.task.d, dtype=torch.float64, requires_grad=True)

    def once():
        if batched:
            loss, _ = feature_weight_meta_loss({"c": c}, {}, batch, features=tasks.features, reduction="sum")
        else:
            loss = 0.0
            for t in range(num_tasks):
                A = tasks.features(batch.support_x[t]) * c
                alpha = c * (torch.linalg.pinv(A) @ batch.support_y[t])
                loss = loss + ((tasks.features(batch.query_x[t]) @ alpha - batch.query_y[t]) ** 2).sum()
        torch.autograd.grad(loss, c)

    once()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    return num_tasks / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ours-runs", type=int, default=5)
    ap.add_argument("--naive-runs", type=int, default=1)
    ap.add_argument("--tasks", default="1,4,16,64,256,1024")
    args = ap.parse_args()
    cfg = get("fourier-closed-form").config()
    ours, naive = [], []
    for i in range(max(args.ours_runs, args.naive_runs)):
        if i < args.ours_runs:
            ours.append(ours_end_to_end(cfg))
        if i < args.naive_runs:
            naive.append(naive_end_to_end(cfg))
    with_figs = ours_with_figures(cfg)
    rows = []
    for x in ("grid", "uniform"):
        for T in [int(t) for t in args.tasks.split(",")]:
            reps = max(2, min(20, 2048 // T))
            b, loop = [], []
            for _ in range(3):  # alternate
                b.append(throughput(T, cfg, True, reps, x))
                loop.append(throughput(T, cfg, False, max(1, reps // 4), x))
            rows.append({"x": x, "tasks": T, "batched_tasks_per_s": statistics.median(b),
                         "loop_tasks_per_s": statistics.median(loop)})
    res = {"machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                       "loadavg_1m": os.getloadavg()[0], "torch": torch.__version__},
           "end_to_end_s": {"ours_median": statistics.median(ours), "ours_all": ours,
                            "ours_with_figures": with_figs,
                            "naive_median": statistics.median([r["total_s"] for r in naive]) if naive else None,
                            "naive_all": naive},
           "throughput": rows}
    OUT.mkdir(exist_ok=True)
    (OUT / "fourier.json").write_text(json.dumps(res, indent=1) + "\n")
    e = res["end_to_end_s"]
    md = ["| implementation | wall time of fourier-closed-form (s) |", "|---|---|",
          f"| adaptlab (batched QR solves, run() only) | {e['ours_median']:.2f} |",
          f"| adaptlab incl. figures and run folder | {e['ours_with_figures']:.2f} |"]
    if naive:
        r0 = naive[0]
        md.append(f"| per-task loop, generic solvers | {e['naive_median']:.1f} "
                  f"({e['naive_median'] / e['ours_median']:.0f}x slower; training {r0['train_s']:.1f} s + "
                  f"{r0['n_evals']} evaluations x {r0['one_eval_s']:.1f} s, one of them timed) |")
    md += ["", "Meta-gradient throughput (d = 501, 32 inner and 64 meta points per task; on a grid all tasks share one "
           "design matrix, which the batched solver factors once):", "",
           "| inner points | tasks per meta-step | batched (tasks/s) | per-task loop (tasks/s) | ratio |",
           "|---|---|---|---|---|"]
    md += [f"| {r['x']} | {r['tasks']} | {r['batched_tasks_per_s']:.0f} | {r['loop_tasks_per_s']:.0f} | "
           f"{r['batched_tasks_per_s'] / r['loop_tasks_per_s']:.1f}x |" for r in rows]
    md.append(f"\n{os.cpu_count()} CPU cores, torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads, 1-min load average at the end {os.getloadavg()[0]:.1f}.")
    (OUT / "fourier.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
