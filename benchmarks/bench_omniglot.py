"""Omniglot meta-training throughput: episodes/s per algorithm, and data-parallel scaling under torchrun.

    python benchmarks/bench_omniglot.py                    # writes benchmarks/results/omniglot.{json,md}
    python benchmarks/bench_omniglot.py --steps 5 --repeats 1   # smoke run

Part 1 times meta-training steps of ProtoNet, second-order MAML and first-order MAML (conv4, 28x28, one
20-way 1-shot episode per step with 5 queries per class for ProtoNet's 30-way default replaced by the same
20-way episode so the algorithms see the same images), interleaving the algorithms (A, B, C, A, B, C, ...) so
machine load affects all alike, and reports the median episodes/s. Part 2 runs ``torchrun`` with 1, 2 and 4
CPU processes on a fixed meta-batch of 8 ProtoNet episodes (each process takes its shard, gradients are
all-reduced) and reports the median meta-batch time. Accuracy against wall-clock comes from the run folders
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
    a = p.parse_args()
    if a.worker:
        return worker(a.steps, a.out)
    os.environ.setdefault("ADAPTLAB_DATA", str(ROOT.parent / "shared" / "data"))
    torch.set_num_threads(1)
    load_before = os.getloadavg()
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
