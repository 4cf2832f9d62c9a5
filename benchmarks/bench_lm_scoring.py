"""Cloze scoring of 100 five-way capitals questions with SmolLM2-135M: batched + prefix-cached vs a naive loop.

Both score the same tokens: a shared prefix (3 cloze demonstrations), then ``Question: ... Answer:``, then each
option's text. The naive loop runs one ``model(ids)`` per (question, option) over the whole sequence and reads
the log-probabilities from the full logits; ``score_options`` runs the prefix once, each question once, and only
the option tokens per option, in batches. The scores are compared first (max abs difference); each path is
timed ``--repeats`` times (the compared run is the first), interleaved (fast, naive, fast, ...) so machine
load hits both alike, and the median is reported with the load average: wall seconds and the process's CPU
seconds (all its threads; with one thread, what an idle core would take on a shared machine).

Run: ``python benchmarks/bench_lm_scoring.py`` (writes benchmarks/results/lm_scoring.json and lm_scoring.md).
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

from adaptlab.data.text import load_capitals
from adaptlab.lm.load import load_causal_lm
from adaptlab.lm.prompts import build_prompts
from adaptlab.lm.scoring import score_options

OUT = Path(__file__).resolve().parent / "results"


@torch.no_grad()
def naive(lm, prefix, prompts, options):
    out = torch.empty(len(prompts), len(options[0]), dtype=torch.float64)
    for q, (p, opts) in enumerate(zip(prompts, options)):
        for o, text in enumerate(opts):
            ctx, tgt = lm.encode(prefix) + lm.encode(p), lm.encode(text)
            lp = lm.model(torch.tensor([ctx + tgt])).logits[0].log_softmax(-1)
            out[q, o] = sum(float(lp[len(ctx) - 1 + t, tgt[t]]) for t in range(len(tgt)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_causal_lm()
    qs = load_capitals()
    test, pool = qs[:args.questions], qs[args.questions:args.questions + 10]
    prefix, prompts = build_prompts("cloze", test, pool, k=3)
    options = [[" " + o for o in q.options] for q in test]
    times: dict[str, list[float]] = {"batched_prefix_cached": [], "naive_loop": []}
    cpu: dict[str, list[float]] = {"batched_prefix_cached": [], "naive_loop": []}

    def timed(name, fn):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        times[name].append(time.perf_counter() - t)
        cpu[name].append(time.process_time() - c)
        return out

    fast = timed("batched_prefix_cached", lambda: score_options(lm, prompts, options, prefix=prefix))["logprob"]
    ref = timed("naive_loop", lambda: naive(lm, prefix, prompts, options))
    diff = float((fast - ref).abs().max())
    acc = float((fast.argmax(1) == torch.tensor([q.answer for q in test])).double().mean())
    for _ in range(args.repeats - 1):  # the first, compared run counts as repeat 1
        for name, fn in (("batched_prefix_cached", lambda: score_options(lm, prompts, options, prefix=prefix)),
                         ("naive_loop", lambda: naive(lm, prefix, prompts, options))):
            timed(name, fn)
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    res = {"questions": len(test), "options": 5, "threads": args.threads, "max_abs_diff": diff,
           "cloze_accuracy": acc, "seconds": times, "median_s": med,
           "cpu_seconds": cpu, "median_cpu_s": med_cpu,
           "ratio_naive_over_batched": med["naive_loop"] / med["batched_prefix_cached"],
           "cpu_ratio_naive_over_batched": med_cpu["naive_loop"] / med_cpu["batched_prefix_cached"],
           "loadavg": os.getloadavg(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
           "torch": torch.__version__}
    OUT.mkdir(exist_ok=True)
    (OUT / "lm_scoring.json").write_text(json.dumps(res, indent=1) + "\n")
    md = ("# Cloze scoring, SmolLM2-135M, " f"{len(test)} five-way capitals questions, {args.threads} thread(s)\n\n"
          f"`python benchmarks/bench_lm_scoring.py --threads {args.threads} --repeats {args.repeats}`\n\n"
          "| path | median wall s | median CPU s | wall runs | CPU runs |\n|---|---|---|---|---|\n"
          + "".join(f"| {k} | {med[k]:.1f} | {med_cpu[k]:.1f} | {', '.join(f'{x:.1f}' for x in v)} | "
                    f"{', '.join(f'{x:.1f}' for x in cpu[k])} |\n" for k, v in times.items())
          + f"\nratio naive / batched: **{res['ratio_naive_over_batched']:.1f}x** wall, "
          f"**{res['cpu_ratio_naive_over_batched']:.1f}x** CPU; max |score difference| "
          f"{diff:.2e}; cloze accuracy {acc:.2f}; load average {', '.join(f'{x:.1f}' for x in res['loadavg'])} "
          f"on {os.cpu_count()} cores.\n")
    (OUT / "lm_scoring.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
