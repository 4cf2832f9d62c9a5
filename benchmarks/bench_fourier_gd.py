"""fourier-gd meta-training end to end: the batched K-step inner loop against a per-task autograd loop.

Both train the feature weights c of the fourier-gd study (d = 501, 5 tasks per meta-step, 32 uniform inner
points, K = 5 steps of size 1e-2, 64 query points, summed squared error, SGD 1e-2) on the same task batches:

* adaptlab: :func:`adaptlab.inner.gd.gd_weighted` (written-out gradients, all tasks in batched products);
* per-task loop: for each task, K steps of ``torch.autograd.grad(create_graph=True)`` on its own loss.

They are interleaved (ours, loop, ours, ...) and the median time of a block of meta-steps is reported; the
final weights of the two runs are compared. Run: ``python benchmarks/bench_fourier_gd.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from adaptlab.inner.gd import gd_inner
from adaptlab.meta.feature_weights import FeatureWeights, feature_weight_meta_loss
from adaptlab.tasks.fourier import FourierTasks

OUT = Path(__file__).resolve().parent / "results"


def loop_inner(steps: int, lr: float):
    """The naive reference: one task at a time, autograd for every inner gradient."""
    def inner(phi, c, y):
        alphas = []
        for t in range(y.shape[0]):
            A = phi[t] * c  # (n, d)
            beta = A.new_zeros(A.shape[-1], requires_grad=True)
            for _ in range(steps):
                loss = ((A @ beta - y[t]) ** 2).mean()
                (g,) = torch.autograd.grad(loss, beta, create_graph=True)
                beta = beta - lr * g
            alphas.append(c * beta)
        return torch.stack(alphas)
    return inner


def train(inner, batches, tasks) -> tuple[float, torch.Tensor]:
    learner = FeatureWeights(tasks.d, inner=inner, reduction="sum", optimizer="sgd", lr=1e-2)
    opt = learner.make_optimizer()
    t0 = time.perf_counter()
    for b in batches:
        learner.step(b, tasks.features, optimizer=opt)
    return time.perf_counter() - t0, learner.c.detach()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20, help="meta-steps per timed block")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    tasks = FourierTasks(d=501, x="uniform", n_support=32, n_query=64, noise=0.1)
    gen = torch.Generator().manual_seed(0)
    batches = [tasks.sample(5, gen) for _ in range(args.steps)]
    impls = {"adaptlab": gd_inner(5, 1e-2), "per_task_loop": loop_inner(5, 1e-2)}
    c0 = torch.ones(501, dtype=torch.float64, requires_grad=True)
    grads = {}
    for name, inner in impls.items():
        loss, _ = feature_weight_meta_loss({"c": c0}, {}, batches[0], features=tasks.features, inner=inner,
                                           reduction="sum")
        (grads[name],) = torch.autograd.grad(loss, c0)
    times: dict[str, list[float]] = {n: [] for n in impls}
    finals = {}
    for _ in range(args.rounds):
        for name, inner in impls.items():
            seconds, finals[name] = train(inner, batches, tasks)
            times[name].append(seconds / args.steps)
    med = {n: statistics.median(v) for n, v in times.items()}
    res = {"setup": {"d": 501, "tasks_per_step": 5, "inner_points": 32, "inner_steps": 5, "query_points": 64,
                     "threads": args.threads, "nproc": os.cpu_count(), "torch": torch.__version__,
                     "load_before": load_before, "load_after": os.getloadavg(), "rounds": args.rounds,
                     "meta_steps_per_block": args.steps},
           "meta_steps_per_s": {n: 1 / m for n, m in med.items()},
           "speedup": med["per_task_loop"] / med["adaptlab"],
           "max_rel_meta_grad_diff": float((grads["adaptlab"] - grads["per_task_loop"]).norm()
                                           / grads["per_task_loop"].norm()),
           "max_abs_final_weight_diff": float((finals["adaptlab"] - finals["per_task_loop"]).abs().max())}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "maml_fourier_gd.json").write_text(json.dumps(res, indent=1) + "\n")
    s = res["setup"]
    md = ["# fourier-gd meta-training: batched inner loop vs per-task autograd loop", "",
          f"d = 501, 5 tasks per meta-step, K = 5; {s['threads']} thread(s), nproc {s['nproc']}, load average "
          f"before {s['load_before'][0]:.2f}, after {s['load_after'][0]:.2f}; median of {s['rounds']} interleaved "
          f"blocks of {s['meta_steps_per_block']} meta-steps.", "",
          "| implementation | meta-steps/s |", "|---|---|",
          f"| adaptlab (batched, written-out gradients) | {res['meta_steps_per_s']['adaptlab']:.1f} |",
          f"| per-task autograd loop | {res['meta_steps_per_s']['per_task_loop']:.1f} |", "",
          f"Speed-up {res['speedup']:.1f}x; meta-gradient relative difference {res['max_rel_meta_grad_diff']:.1e}; "
          f"largest difference of the final weights {res['max_abs_final_weight_diff']:.1e}.", ""]
    (args.out / "maml_fourier_gd.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
