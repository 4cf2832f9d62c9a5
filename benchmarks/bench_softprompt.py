"""Time per prompt-tuning step on SmolLM2-135M: uncached vs prefix-cached soft prompt vs PEFT prompt tuning.

One step = forward, backward to the prompt, Adam update; batch 8 of "The plural of {noun} is" + target rows
padded to ``--tokens`` tokens (~30), at P = 20 and P = 100. Prefix-cached is the library's default
(``cache_prefix=True``: the shared-prefix packed call on this model); ``kv`` is the key/value-cache path
(``cache_prefix="kv"``), the default before it. The four variants are interleaved (one step of each
in turn, ``--repeats`` rounds after a warm-up) in one process, so load changes hit all alike; the median step
time and the ratios are reported with the load average, in wall time and in this process's CPU time
(``time.process_time``: with one thread, what an idle core would take; on a shared machine the wall time also
counts the waits for a core). All four start from the same prompt and batches; the
largest loss difference over the measured steps shows they train the same thing.

    python benchmarks/bench_softprompt.py                 # writes benchmarks/results/softprompt.{json,md}
    python benchmarks/bench_softprompt.py --device cuda --out /tmp/gpu
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parent / "results"


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompt-lens", type=int, nargs="+", default=[20, 100])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from peft import PromptTuningConfig, get_peft_model

    from adaptlab.lm.load import load_causal_lm
    from adaptlab.lm.softprompt import SoftPrompt, freeze, init_prompt, make_batch

    lm = freeze(load_causal_lm(device=args.device))
    words = ["dog", "wolf", "house", "city", "box", "man", "child", "leaf"]
    pad_to = args.tokens
    ex = []
    for w in words[:args.batch]:
        q = lm.encode(f"Answer with one word. The plural of the English noun {w} is")
        filler = lm.encode(" (a noun)") * 8
        q = (filler + q)[-(pad_to - 1):]
        ex.append([("question", q), ("answer", lm.encode(" x")[:1])])
    batch = make_batch(lm, ex, ["answer"])
    load0 = os.getloadavg()
    res = {"rows": [], "batch": args.batch, "tokens": int(batch["input_ids"].shape[1]), "threads": args.threads,
           "device": args.device}
    for P in args.prompt_lens:
        p0 = init_prompt(lm, P, "vocab", generator=torch.Generator().manual_seed(0))
        sps = {"uncached": SoftPrompt(p0), "kv": SoftPrompt(p0), "cached": SoftPrompt(p0)}
        opts = {k: torch.optim.Adam(v.parameters(), lr=1e-3) for k, v in sps.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            pm = get_peft_model(lm.model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P))
        table = pm.prompt_encoder["default"].embedding
        with torch.no_grad():
            table.weight.copy_(p0)
        opts["peft"] = torch.optim.Adam(table.parameters(), lr=1e-3)

        def step(name, opts=opts, sps=sps, pm=pm):
            opts[name].zero_grad()
            if name == "peft":
                loss = pm(**batch).loss
            else:
                loss = sps[name].loss(lm, batch, cache_prefix={"uncached": False, "kv": "kv", "cached": True}[name])
            loss.backward()
            opts[name].step()
            return float(loss.detach())

        times = {k: [] for k in opts}
        cpu = {k: [] for k in opts}
        losses = {k: [] for k in opts}
        for k in opts:  # warm-up step, not timed (it trains too, alike for all four)
            losses[k].append(step(k))
        for _ in range(args.repeats):
            for k in opts:
                _sync(args.device)
                t0, c0 = time.perf_counter(), time.process_time()
                losses[k].append(step(k))
                _sync(args.device)
                times[k].append(time.perf_counter() - t0)
                cpu[k].append(time.process_time() - c0)
        lm.model = pm.get_base_model()
        med = {k: statistics.median(v) for k, v in times.items()}
        mcpu = {k: statistics.median(v) for k, v in cpu.items()}
        diff = max(abs(a - b) for k in ("kv", "cached", "peft") for a, b in zip(losses["uncached"], losses[k]))
        res["rows"].append({"P": P, "median_s": med, "times_s": times, "median_cpu_s": mcpu, "cpu_s": cpu,
                            "losses": losses, "speedup_cached_vs_uncached": med["uncached"] / med["cached"],
                            "speedup_cached_vs_peft": med["peft"] / med["cached"],
                            "cpu_speedup_cached_vs_uncached": mcpu["uncached"] / mcpu["cached"],
                            "cpu_speedup_cached_vs_peft": mcpu["peft"] / mcpu["cached"],
                            "speedup_kv_vs_uncached": med["uncached"] / med["kv"],
                            "cpu_speedup_kv_vs_uncached": mcpu["uncached"] / mcpu["kv"], "max_loss_diff": diff})
        print(P, med, mcpu, diff, flush=True)
    res.update(loadavg_before=load0, loadavg=os.getloadavg(), cpu_count=os.cpu_count(), platform=platform.platform(),
               torch=torch.__version__)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "softprompt.json").write_text(json.dumps(res, indent=1) + "\n")
    lines = [f"# Prompt-tuning step time, SmolLM2-135M, batch {args.batch}, {res['tokens']} tokens, "
             f"{args.threads} thread(s), {args.device}", "",
             "| P | time | uncached s/step | kv-cached s/step | cached s/step | PEFT s/step | kv vs uncached | "
             "cached vs uncached | cached vs PEFT | max loss diff |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        for kind, m, pre in (("wall", r["median_s"], ""), ("CPU", r["median_cpu_s"], "cpu_")):
            lines.append(f"| {r['P']} | {kind} | {m['uncached']:.3f} | {m['kv']:.3f} | {m['cached']:.3f} | "
                         f"{m['peft']:.3f} | {r[pre + 'speedup_kv_vs_uncached']:.2f}x | "
                         f"{r[pre + 'speedup_cached_vs_uncached']:.2f}x | {r[pre + 'speedup_cached_vs_peft']:.2f}x | "
                         f"{r['max_loss_diff']:.1e} |")
    lines += ["", f"Medians of {args.repeats} interleaved steps after one warm-up (wall: perf_counter; CPU: this "
              f"process's process_time, one thread); load average "
              f"{', '.join(f'{x:.1f}' for x in res['loadavg_before'])} before and "
              f"{', '.join(f'{x:.1f}' for x in res['loadavg'])} after, on {res['cpu_count']} cores. Command: "
              f"`{' '.join(['python benchmarks/bench_softprompt.py', *sys.argv[1:]])}`.", ""]
    (out / "softprompt.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
