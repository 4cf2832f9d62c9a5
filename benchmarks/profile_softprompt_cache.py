"""Where the time of one prefix-cached prompt-tuning step goes on SmolLM2-135M, and what each cache path saves.

The step of ``bench_softprompt.py`` (batch 8 of ~30-token rows, ragged by up to 2 tokens so padding is present
as in real batches; P soft tokens), forward and backward to the prompt, timed in this process's CPU time
(``time.process_time``, one thread: what an idle core takes; the machine is shared). Variants, interleaved
round by round (same loss and gradient, checked against the uncached one):

- ``uncached``: one forward over ``[prompt, tokens]`` in every row;
- ``kv`` (``cache_prefix="kv"``): a batch-1 prefix forward (model body only: no LM head), the out-of-place
  ``batch_repeat_interleave`` of its keys and values, the rows' forward after the cache;
- ``kv-gqa``: the same with SDPA's ``enable_gqa`` (transformers' ``TRANSFORMERS_SDPA_FORCE_GQA=1``) instead of
  copying the 3 key/value heads to 9 (transformers copies whenever a mask is passed on CPU);
- ``dense-packed``: one batch-1 forward over ``[prompt, row 1, ..., row B]`` with a dense block mask (each row
  sees the prompt and itself, causally) and positions restarting at P in every row;
- ``shared`` (``cache_prefix="shared"``, the library's default where the model supports it): the same packed
  sequence, but each layer's attention split into the prompt's (P x P, batch 1) and the rows' (L x (P + L),
  batch B, the prompt's keys and values expanded): :mod:`adaptlab.lm.shared_prefix`; on CPU it calls SDPA
  with ``enable_gqa``;
- ``shared-copy-heads``: the same through transformers' sdpa function, which copies the key/value heads.

For ``uncached``, ``kv`` and ``shared`` the phases (prefix call, key/value repeat, rows call, head, backward)
are timed apart, and their backwards are recorded with ``torch.profiler`` (3 interleaved rounds after the timed
ones): the time of the matrix products grouped by their row count M (tokens per call), of the attention
backward, and of everything else, with the number of autograd nodes run.

    python benchmarks/profile_softprompt_cache.py     # writes benchmarks/results/softprompt_profile.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parent / "results"
T = time.process_time


def _breakdown(prof) -> dict:
    """Self CPU seconds of one profiled backward: matrix products by row count M, attention, the rest."""
    out = {"mm by M": {}, "attention backward": 0.0, "other": 0.0, "autograd nodes": 0, "total": 0.0}
    for e in prof.key_averages(group_by_input_shape=True):
        sec = e.self_cpu_time_total / 1e6
        out["total"] += sec
        if e.key.startswith("autograd::engine::evaluate_function"):
            out["autograd nodes"] += e.count
        if e.key == "aten::mm" and e.input_shapes and e.input_shapes[0]:
            m = str(e.input_shapes[0][0])
            out["mm by M"][m] = out["mm by M"].get(m, 0.0) + sec
        elif "scaled_dot_product" in e.key:
            out["attention backward"] += sec
        else:
            out["other"] += sec
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--P", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    torch.set_num_threads(1)
    from torch.profiler import ProfilerActivity, profile

    from adaptlab.lm import shared_prefix
    from adaptlab.lm.load import load_causal_lm
    from adaptlab.lm.scoring import _head, base_forward
    from adaptlab.lm.shared_prefix import shared_prefix_hidden
    from adaptlab.lm.softprompt import freeze, init_prompt, input_embedding, loss_positions, make_batch, prompt_loss

    lm = freeze(load_causal_lm())
    ex = []
    for i, w in enumerate(["dog", "wolf", "house", "city", "box", "man", "child", "leaf"]):
        q = lm.encode(f"Answer with one word. The plural of the English noun {w} is")
        q = (lm.encode(" (a noun)") * 8 + q)[-29 + i % 3:]
        ex.append([("question", q), ("answer", lm.encode(" x")[:1])])
    batch = make_batch(lm, ex, ["answer"])
    P = args.P
    prompt = init_prompt(lm, P, "vocab", generator=torch.Generator().manual_seed(0)).requires_grad_()
    ids, am = batch["input_ids"], batch["attention_mask"]

    def head_loss(h):
        rows, pred, target = loss_positions(batch["labels"], P)
        return torch.nn.functional.cross_entropy(_head(lm, h[rows, pred]), target)

    def forward_phases(v: str, t: dict) -> torch.Tensor:
        t0 = T()
        tok = input_embedding(lm)(ids)  # (B, L, D)
        B, L, D = tok.shape
        mask = torch.cat([am.new_ones(B, P), am], 1)
        if v == "kv":
            hp, cache = base_forward(lm, None, inputs_embeds=prompt[None], position_ids=torch.arange(P)[None])
            t["prefix forward"], t0 = T() - t0, T()
            cache.batch_repeat_interleave(B)
            t["repeat keys/values"], t0 = T() - t0, T()
            ht, _ = base_forward(lm, cache, inputs_embeds=tok, attention_mask=mask,
                                 position_ids=(P + torch.arange(L)).expand(B, -1))
            h = torch.cat([hp.expand(B, P, D), ht], 1)
        elif v == "shared":
            h = shared_prefix_hidden(lm, prompt, tok, am)
        else:
            h, _ = base_forward(lm, None, inputs_embeds=torch.cat([prompt.expand(B, P, D), tok], 1),
                                attention_mask=mask, position_ids=torch.arange(P + L).expand(B, -1))
        t["rows forward" if v != "shared" else "one packed call"], t0 = T() - t0, T()
        loss = head_loss(h)
        t["LM head + loss"] = T() - t0
        return loss

    def phases(v: str) -> dict:
        t = {}
        loss = forward_phases(v, t)
        t0 = T()
        torch.autograd.grad(loss, prompt)
        t["backward"] = T() - t0
        t["total"] = sum(t.values())
        return t

    def dense_packed_loss():
        tok = input_embedding(lm)(ids)
        B, L, D = tok.shape
        x = torch.cat([prompt.to(tok.dtype), tok.reshape(B * L, D)], 0)[None]  # (1, P + B L, D)
        row = torch.cat([ids.new_full((P,), -1), torch.arange(B).repeat_interleave(L)])  # (T,) -1 = prompt
        col = torch.cat([torch.arange(P), P + torch.arange(L).repeat(B)])  # (T,) positions
        real = torch.cat([am.new_ones(P), am.reshape(-1)]).bool()
        causal = col[None, :] <= col[:, None]
        ok = ((row[None, :] == -1) & causal | (row[None, :] == row[:, None]) & causal) & real[None, :]
        ok |= torch.eye(len(row), dtype=torch.bool)  # a padding query keeps itself: no empty softmax row
        bias = torch.zeros(ok.shape, dtype=x.dtype).masked_fill(~ok, torch.finfo(x.dtype).min)[None, None]
        h, _ = base_forward(lm, None, inputs_embeds=x, attention_mask=bias, position_ids=col[None])
        h = torch.cat([h[0, :P].expand(B, P, D), h[0, P:].view(B, L, D)], 1)
        return head_loss(h)

    modes = {"uncached": False, "kv": "kv", "kv-gqa": "kv", "shared-copy-heads": "shared", "shared": "shared"}
    own_inner = shared_prefix._inner

    def copy_heads_inner(module, impl, device):  # transformers' sdpa: key/value heads copied to the query heads
        from transformers import AttentionInterface

        return AttentionInterface._global_mapping["sdpa"] if impl == "sdpa" else own_inner(module, impl, device)

    def step(v):
        os.environ["TRANSFORMERS_SDPA_FORCE_GQA"] = "1" if v == "kv-gqa" else "0"
        shared_prefix._inner = copy_heads_inner if v == "shared-copy-heads" else own_inner
        t0 = T()
        loss = dense_packed_loss() if v == "dense-packed" else prompt_loss(prompt, lm, batch, cache_prefix=modes[v])
        g, = torch.autograd.grad(loss, prompt)
        shared_prefix._inner = own_inner
        return T() - t0, float(loss.detach()), g

    load0 = os.getloadavg()
    variants = ["uncached", "kv", "kv-gqa", "dense-packed", "shared-copy-heads", "shared"]
    phased = ["uncached", "kv", "shared"]
    first = {v: step(v) for v in variants}  # warm-up, and the agreement check
    ref = first["uncached"]
    agree = {v: {"loss_abs_diff": abs(first[v][1] - ref[1]),
                 "grad_rel_diff": float((first[v][2] - ref[2]).norm() / ref[2].norm()),
                 "bitwise_equal_to_kv": first[v][1] == first["kv"][1] and torch.equal(first[v][2], first["kv"][2])}
             for v in variants}
    for v in phased:
        phases(v)
    ph = {v: [] for v in phased}
    st = {v: [] for v in variants}
    for _ in range(args.repeats):
        for v in phased:
            ph[v].append(phases(v))
        for v in variants:
            st[v].append(step(v)[0])
    os.environ["TRANSFORMERS_SDPA_FORCE_GQA"] = "0"
    load1 = os.getloadavg()
    rec = {v: [] for v in phased}
    for _ in range(3):  # profiled backwards, interleaved, after the timed rounds (the profiler slows what it records)
        for v in phased:
            loss = forward_phases(v, {})
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                torch.autograd.grad(loss, prompt)
            rec[v].append(_breakdown(prof))
    bd = {v: {"mm by M": {m: statistics.median(r["mm by M"][m] for r in rs) for m in rs[0]["mm by M"]},
              **{k: statistics.median(r[k] for r in rs) for k in ("attention backward", "other", "total",
                                                                  "autograd nodes")}} for v, rs in rec.items()}
    med_ph = {k: {p: statistics.median(d[p] for d in rows) for p in rows[0]} for k, rows in ph.items()}
    med = {v: statistics.median(t) for v, t in st.items()}
    res = {"P": P, "batch": int(ids.shape[0]), "tokens": int(ids.shape[1]), "row_lengths": am.sum(1).tolist(),
           "phases_cpu_s": med_ph, "step_cpu_s": med, "step_cpu_s_rounds": st,
           "speedup_vs_uncached": {v: med["uncached"] / med[v] for v in variants},
           "paired_speedup_median": {v: statistics.median(a / b for a, b in zip(st["uncached"], st[v]))
                                     for v in variants},
           "backward_profile_self_cpu_s": bd, "agreement": agree, "loadavg_before": load0, "loadavg": load1,
           "torch": torch.__version__}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "softprompt_profile.json").write_text(json.dumps(res, indent=1) + "\n")
    B, L = res["batch"], res["tokens"]
    lines = [f"# Prefix-cached step, phase by phase: SmolLM2-135M, P = {P}, batch {B}, {L} tokens "
             f"(rows {res['row_lengths']}), CPU seconds, one thread", "",
             "| phase | uncached | kv | shared |", "|---|---|---|---|"]
    names = []
    for v in phased:
        names += [p for p in med_ph[v] if p not in names and p != "total"]
    for p in [*names, "total"]:
        cells = [f"{med_ph[v][p]:.3f}" if p in med_ph[v] else "-" for v in phased]
        lines.append(f"| {p} | {' | '.join(cells)} |")
    lines += ["", "| step (forward + backward) | CPU s | vs uncached | median of round ratios | loss diff | "
              "gradient rel. diff | loss and gradient bitwise equal to kv |", "|---|---|---|---|---|---|---|"]
    for v in variants:
        lines.append(f"| {v} | {med[v]:.3f} | {res['speedup_vs_uncached'][v]:.2f}x | "
                     f"{res['paired_speedup_median'][v]:.2f}x | "
                     f"{agree[v]['loss_abs_diff']:.1e} | {agree[v]['grad_rel_diff']:.1e} | "
                     f"{'yes' if agree[v]['bitwise_equal_to_kv'] else 'no'} |")
    ms = sorted({m for v in phased for m in bd[v]["mm by M"]}, key=int)
    lines += ["", "Backward under torch.profiler, medians of 3 interleaved rounds (seconds of self time per op; the "
              "profiler's clock is wall time, so on a loaded machine compare the columns, not the totals with the "
              "CPU times above):", "",
              "| backward | " + " | ".join(phased) + " |", "|---|" + "---|" * len(phased)]
    for m in ms:
        lines.append(f"| matrix products, M = {m} | "
                     + " | ".join(f"{bd[v]['mm by M'][m]:.3f}" if m in bd[v]["mm by M"] else "-" for v in phased)
                     + " |")
    for k in ("attention backward", "other", "total"):
        lines.append(f"| {k} | " + " | ".join(f"{bd[v][k]:.3f}" for v in phased) + " |")
    lines.append("| autograd nodes | " + " | ".join(str(bd[v]["autograd nodes"]) for v in phased) + " |")
    lines += ["", f"Medians of {args.repeats} rounds after a warm-up, all variants interleaved; load average "
              f"{', '.join(f'{x:.1f}' for x in load0)} before, {', '.join(f'{x:.1f}' for x in load1)} "
              f"after, on {os.cpu_count()} cores. Command: "
              f"`{' '.join(['python benchmarks/profile_softprompt_cache.py', *sys.argv[1:]])}`.", ""]
    (out / "softprompt_profile.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
