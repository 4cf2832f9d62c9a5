"""Omniglot meta-training throughput: episodes/s per algorithm, and data-parallel scaling under torchrun.

    python benchmarks/bench_omniglot.py                    # writes benchmarks/results/omniglot.{json,md}
    python benchmarks/bench_omniglot.py --steps 5 --repeats 1   # smoke run
    python benchmarks/bench_omniglot.py --part maml-paths     # writes benchmarks/results/omniglot_maml_paths.*

Part 1 times meta-training steps of ProtoNet, second-order MAML and first-order MAML (conv4, 28x28, one
20-way 1-shot episode per step with 5 queries per class for ProtoNet's 30-way default replaced by the same
20-way episode so the algorithms see the same images), interleaving the algorithms (A, B, C, A, B, C, ...) so
machine load affects all alike, and reports the median episodes/s. Part 2 runs ``torchrun`` with 1, 2 and 4
CPU processes on a fixed meta-batch of 8 ProtoNet episodes (each process takes its shard, gradients are
all-reduced) and reports the median meta-batch time. Part 3 (``--part maml-paths``) times one MAML meta-step
(forward and meta-gradient) of 5-way 1-shot Omniglot (1 query per class, as learn2learn's Omniglot example)
on Conv4 by three implementations: the per-task loop that learn2learn's ``clone()``/``adapt()`` run (copy the
parameters, ``torch.autograd.grad(create_graph=not first_order)`` per task and step, accumulate the query
losses), adaptlab's ``vmap`` path (``vectorize=True``) and adaptlab's default (``vectorize="auto"``, which picks
the folded grouped-convolution path for Conv4), for second and first order, 1 and 2 threads, meta-batch 8
and 32, 1 and 5 inner steps, interleaved, with the meta-gradients compared to the loop's. Accuracy against
wall-clock comes from the run folders
(``docs/results/omniglot-*/results.json``: 20-run error every 100 steps with the training seconds).
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

ROOT = Path(__file__).resolve().parents[1]


def _episodes(n_way, k_shot, q_query, batch, seed=0):
    from adaptlab.data.omniglot import load_characters
    from adaptlab.tasks.episodes import EpisodeSampler

    x, y = load_characters("small1").with_rotations().labelled()
    return EpisodeSampler(x, y, n_way, k_shot, q_query), torch.Generator().manual_seed(seed)


def _algorithms():
    from adaptlab.meta.maml import MAML
    from adaptlab.meta.protonet import ProtoNet
    from adaptlab.models.conv4 import Conv4

    pn = ProtoNet(Conv4(track_running_stats=True))
    maml = MAML(Conv4(n_classes=20), F.cross_entropy, inner_lr=0.1, steps=1)
    fomaml = MAML(Conv4(n_classes=20), F.cross_entropy, inner_lr=0.1, steps=1, first_order=True)
    return {
        "protonet": (pn.model.parameters(), lambda ep: pn.loss(ep)[0]),
        "maml (2nd order, 1 step)": (maml.parameters(), lambda ep: maml.meta_loss(
            ep.support_x, ep.support_y, ep.query_x, ep.query_y)),
        "fomaml (1 step)": (fomaml.parameters(), lambda ep: fomaml.meta_loss(
            ep.support_x, ep.support_y, ep.query_x, ep.query_y)),
    }


def bench_algorithms(steps: int, repeats: int) -> dict:
    sampler, g = _episodes(20, 1, 5, 1)
    algos = {k: (torch.optim.Adam(list(p), 1e-3), f) for k, (p, f) in _algorithms().items()}
    times = {k: [] for k in algos}
    for _ in range(repeats):
        for name, (opt, loss_fn) in algos.items():             # interleaved: A, B, C, A, B, C, ...
            eps = [sampler.sample(1, g) for _ in range(steps + 1)]
            loss_fn(eps[0]).backward()                         # warm-up step
            t0 = time.perf_counter()
            for ep in eps[1:]:
                opt.zero_grad()
                loss_fn(ep).backward()
                opt.step()
            times[name].append(steps / (time.perf_counter() - t0))
    return {k: {"episodes_per_s_median": statistics.median(v), "runs": v} for k, v in times.items()}


def _l2l_loop(model, params, batch, steps, lr, first_order):
    """learn2learn's clone()/adapt() per task: copy, autograd.grad(create_graph=not first_order), accumulate."""
    from torch.func import functional_call

    total = 0.0
    for t in range(batch.support_y.shape[0]):
        fast = dict(params)
        for _ in range(steps):
            loss = F.cross_entropy(functional_call(model, fast, (batch.support_x[t],)), batch.support_y[t])
            grads = torch.autograd.grad(loss, list(fast.values()), create_graph=not first_order)
            fast = {k: v - lr * g for (k, v), g in zip(fast.items(), grads)}
        total = total + F.cross_entropy(functional_call(model, fast, (batch.query_x[t],)), batch.query_y[t])
    return total / batch.support_y.shape[0]


def bench_maml_paths(repeats: int, threads=(1, 2), meta_batches=(8, 32), inner_steps=(1, 5), query: int = 1,
                     methods=("loop", "vmap", "auto"), on_round=None) -> dict:
    """Seconds per MAML meta-step (forward + meta-gradient), Conv4 5-way 1-shot: loop vs vmap vs auto.

    Every call is timed in wall-clock seconds and in CPU seconds of this process (``time.process_time``: all its
    threads; at one thread it is what an idle core would take). The meta-gradients of every method are compared
    with the loop's at every cell, from the first 1-thread repeat's own calls. ``on_round(partial_result)`` is
    called after every setting, so a run stopped early (a loaded machine) still leaves what it measured; within
    a repeat the settings run cheapest first."""
    from adaptlab.meta.maml import maml_meta_loss
    from adaptlab.models.conv4 import Conv4

    torch.manual_seed(0)
    model = Conv4(n_classes=5)
    params = dict(model.named_parameters())
    sampler, g = _episodes(5, 1, query, 1)
    batches = {T: sampler.sample(T, g) for T in meta_batches}
    settings = sorted([(fo, T, k) for fo in (False, True) for T in meta_batches for k in inner_steps],
                      key=lambda st: (st[1] * st[2] * (1 if st[0] else 3), st))  # cheapest first

    def ours(vectorize):
        return lambda b, k, fo: maml_meta_loss(params, {}, b, model=model, loss_fn=F.cross_entropy, steps=k,
                                               lr=0.4, first_order=fo, vectorize=vectorize)[0]
    every = {"loop": lambda b, k, fo: _l2l_loop(model, params, b, k, 0.4, fo), "vmap": ours(True),
             "auto": ours("auto")}
    methods = {m: every[m] for m in ("loop", *methods) if m in every}
    leaves = list(params.values())
    times = {(th, *st): {m: [] for m in methods} for th in threads for st in settings}
    cpu = {key: {m: [] for m in methods} for key in times}
    diffs, loads = {}, []
    torch.set_num_threads(1)
    for f in methods.values():                                     # warm-up: the first calls allocate
        torch.autograd.grad(f(batches[min(meta_batches)], 1, True), leaves)
    for r in range(repeats):
        for th in threads:
            torch.set_num_threads(th)
            loads.append(os.getloadavg()[0])
            for (fo, T, k) in settings:
                grads = {}
                for m, f in methods.items():                      # interleaved: loop, vmap, auto, loop, ...
                    t0, c0 = time.perf_counter(), time.process_time()
                    grads[m] = torch.autograd.grad(f(batches[T], k, fo), leaves)
                    times[(th, fo, T, k)][m].append(time.perf_counter() - t0)
                    cpu[(th, fo, T, k)][m].append(time.process_time() - c0)
                if (fo, T, k) not in diffs:                       # the meta-gradient check, from these calls
                    ref = torch.cat([x.flatten() for x in grads["loop"]])
                    diffs[(fo, T, k)] = {m: float((torch.cat([x.flatten() for x in gr]) - ref).norm() / ref.norm())
                                         for m, gr in grads.items() if m != "loop"}
                print(f"round {r} threads {th} order {1 if fo else 2} T={T} K={k} load {os.getloadavg()[0]:.1f}",
                      {m: (round(v[-1], 3), round(cpu[(th, fo, T, k)][m][-1], 3))
                       for m, v in times[(th, fo, T, k)].items()}, file=sys.stderr, flush=True)
                if on_round is not None:
                    on_round(_maml_paths_rows(times, cpu, diffs, loads, query, model, batches))
        torch.set_num_threads(1)
    return _maml_paths_rows(times, cpu, diffs, loads, query, model, batches)


def _maml_paths_rows(times, cpu, diffs, loads, query, model, batches) -> dict:
    from adaptlab.meta.maml import choose_path

    rows = []
    for (th, fo, T, k), ts in times.items():
        if not ts["loop"]:
            continue  # not reached before the run was stopped
        n = min(len(v) for v in ts.values())
        med = {m: statistics.median(v[:n]) for m, v in ts.items()}
        cmed = {m: statistics.median(v[:n]) for m, v in cpu[(th, fo, T, k)].items()}
        rows.append({"threads": th, "order": 1 if fo else 2, "meta_batch": T, "inner_steps": k,
                     "auto_path": choose_path(model, None, batches[T].support_x),
                     "seconds_median": med, "cpu_seconds_median": cmed, "runs": ts, "cpu_runs": cpu[(th, fo, T, k)],
                     "loop_over": {m: med["loop"] / v for m, v in med.items() if m != "loop"},
                     "loop_over_cpu": {m: cmed["loop"] / v for m, v in cmed.items() if m != "loop"},
                     "meta_grad_rel_diff_vs_loop": diffs.get((fo, T, k), {}),
                     "repeats": n})
    return {"rows": rows, "loadavg_per_round": loads, "query_per_class": query}


def _maml_paths_md(res: dict, meta: dict) -> list[str]:
    ms = [m for m in ("vmap", "auto") if res["rows"] and m in res["rows"][0]["seconds_median"]]
    lines = [f"# MAML on Conv4: per-task loop vs {' vs '.join(ms)} (CPU, {meta['nproc']} cores, load "
             f"average {meta['loadavg_before'][0]:.1f} before / {meta['loadavg_after'][0]:.1f} after, "
             f"{min(res['loadavg_per_round']):.1f}-{max(res['loadavg_per_round']):.1f} during; shared machine; "
             f"repeats per cell in the last column)", "",
             f"Command: `{meta['command']}` with OMP_WAIT_POLICY={meta.get('omp_wait_policy', '(unset)')}; torch "
             f"{meta['torch']}. Omniglot 5-way 1-shot, "
             f"{res['query_per_class']} query per class, Conv4 (64 channels, batch norm), inner lr 0.4; one "
             "meta-step = meta-loss + `torch.autograd.grad` of it; medians of the interleaved repeats, wall-clock "
             "seconds and CPU seconds of the process (all its threads). `loop` is learn2learn's clone()/adapt() "
             "algorithm; `auto` is adaptlab's default (`vectorize=\"auto\"`, path named). Speed-up = loop time / "
             "path time (> 1: faster than the loop), wall (CPU). The meta-gradient difference is from the first "
             "repeat's own calls (float32).", "",
             "| order | threads | meta-batch | inner steps | loop s (CPU s) | "
             + " | ".join(f"{m} s (CPU s)" for m in ms) + " | "
             + " | ".join(f"{m} speed-up wall (CPU)" for m in ms) + " | meta-grad rel. diff vs loop | repeats |",
             "|" + "---|" * (7 + 2 * len(ms))]
    for r in sorted(res["rows"], key=lambda r: (r["order"] == 1, r["threads"], r["meta_batch"], r["inner_steps"])):
        s, c = r["seconds_median"], r["cpu_seconds_median"]
        cells = [f"{s[m]:.3f} ({c[m]:.3f})" + (f" ({r['auto_path']})" if m == "auto" else "") for m in ms]
        ups = [f"{r['loop_over'][m]:.2f}x ({r['loop_over_cpu'][m]:.2f}x)" for m in ms]
        diff = ", ".join(f"{m} {v:.1e}" for m, v in r["meta_grad_rel_diff_vs_loop"].items())
        lines.append(f"| {'second' if r['order'] == 2 else 'first'} | {r['threads']} | {r['meta_batch']} | "
                     f"{r['inner_steps']} | {s['loop']:.3f} ({c['loop']:.3f}) | " + " | ".join(cells) + " | "
                     + " | ".join(ups) + f" | {diff} | {r['repeats']} |")
    return lines


def worker(steps: int, out: str) -> None:
    """One torchrun process: time meta-steps of 8 ProtoNet episodes sharded across the processes."""
    from adaptlab import distributed as D
    from adaptlab.meta.protonet import ProtoNet
    from adaptlab.models.conv4 import Conv4

    torch.set_num_threads(1)
    D.init_from_env("cpu")
    torch.manual_seed(0)
    pn = ProtoNet(Conv4(track_running_stats=True))
    opt = torch.optim.Adam(pn.model.parameters(), 1e-3)
    sampler, g = _episodes(20, 1, 5, 8)
    times = []
    for i in range(steps + 1):
        ep = sampler.sample(8, g)
        D.barrier()
        t0 = time.perf_counter()
        part = ep.shard(D.rank(), D.world_size())
        loss = pn.loss(part)[0] * (len(part) / len(ep))
        opt.zero_grad()
        loss.backward()
        D.all_reduce_gradients(pn.model.parameters())
        opt.step()
        D.barrier()
        if i:
            times.append(time.perf_counter() - t0)
    if D.is_main():
        Path(out).write_text(json.dumps(times))
    torch.distributed.destroy_process_group() if D.world_size() > 1 else None


def bench_torchrun(steps: int, repeats: int, tmp: Path) -> dict:
    res = {}
    for n in (1, 2, 4):
        meds = []
        for r in range(repeats):
            out = tmp / f"torchrun_{n}_{r}.json"
            cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}", "--master_port",
                   str(29500 + 10 * n + r), __file__, "--worker", "--steps", str(steps), "--out", str(out)]
            subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True)
            meds.append(statistics.median(json.loads(out.read_text())))
        med = statistics.median(meds)
        res[str(n)] = {"seconds_per_meta_batch_median": med, "episodes_per_s": 8 / med, "runs": meds}
    return res


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--worker", action="store_true")
    p.add_argument("--out", default="")
    p.add_argument("--part", choices=("algorithms", "maml-paths"), default="algorithms",
                   help="algorithms: parts 1-2 (omniglot.*); maml-paths: part 3 (omniglot_maml_paths.*)")
    p.add_argument("--query", type=int, default=1, help="maml-paths: query images per class")
    p.add_argument("--threads", default="1,2", help="maml-paths: intra-op thread counts, comma-separated")
    p.add_argument("--methods", default="loop,vmap,auto", help="maml-paths: implementations to time (loop always)")
    p.add_argument("--redraw", action="store_true", help="maml-paths: rewrite the .md from the committed .json")
    a = p.parse_args()
    if a.worker:
        return worker(a.steps, a.out)
    os.environ.setdefault("ADAPTLAB_DATA", str(ROOT.parent / "shared" / "data"))
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    if a.part == "maml-paths":
        def write(res: dict) -> list[str]:
            meta = {"nproc": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
                    "torch": torch.__version__, "python": platform.python_version(),
                    "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
                    "command": "python benchmarks/bench_omniglot.py " + " ".join(sys.argv[1:])}
            out = ROOT / "benchmarks" / "results"
            (out / "omniglot_maml_paths.json").write_text(json.dumps({"meta": meta, **res}, indent=1) + "\n")
            lines = _maml_paths_md(res, meta)
            (out / "omniglot_maml_paths.md").write_text("\n".join(lines) + "\n")
            return lines
        if a.redraw:
            res = json.loads((ROOT / "benchmarks" / "results" / "omniglot_maml_paths.json").read_text())
            lines = _maml_paths_md(res, res.pop("meta"))
            (ROOT / "benchmarks" / "results" / "omniglot_maml_paths.md").write_text("\n".join(lines) + "\n")
            return print("\n".join(lines))
        threads = tuple(int(t) for t in a.threads.split(","))
        methods = tuple(a.methods.split(","))
        return print("\n".join(write(bench_maml_paths(a.repeats, threads, query=a.query, methods=methods,
                                                        on_round=write))))
    algos = bench_algorithms(a.steps, a.repeats)
    tmp = ROOT / "benchmarks" / "results" / ".tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    scaling = bench_torchrun(a.steps, a.repeats, tmp)
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()
    meta = {"nproc": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
            "torch": torch.__version__, "python": platform.python_version(), "threads_per_process": 1,
            "command": "python benchmarks/bench_omniglot.py " + " ".join(sys.argv[1:])}
    result = {"meta": meta, "algorithms_20way1shot": algos, "torchrun_protonet_8_episodes": scaling}
    out = ROOT / "benchmarks" / "results"
    (out / "omniglot.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"# Omniglot meta-training throughput (CPU, {meta['nproc']} cores, load average "
             f"{load_before[0]:.1f} before / {meta['loadavg_after'][0]:.1f} after; shared machine)", "",
             f"Command: `{meta['command']}`; torch {meta['torch']}; 1 thread per process.", "",
             "| algorithm (20-way 1-shot, 5 queries/class, conv4 28x28) | episodes/s (median) |", "|---|---|"]
    lines += [f"| {k} | {v['episodes_per_s_median']:.2f} |" for k, v in algos.items()]
    lines += ["", "| torchrun processes (ProtoNet, meta-batch 8) | s per meta-batch (median) | episodes/s |",
              "|---|---|---|"]
    lines += [f"| {k} | {v['seconds_per_meta_batch_median']:.2f} | {v['episodes_per_s']:.2f} |"
              for k, v in scaling.items()]
    (out / "omniglot.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
