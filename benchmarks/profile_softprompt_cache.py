"""Where the time of one prefix-cached prompt-tuning step goes on SmolLM2-135M, and what two alternatives save.

The step of ``bench_softprompt.py`` (batch 8 of ~30-token rows, ragged by up to 2 tokens so padding is present
as in real batches; P soft tokens), forward and backward to the prompt, timed in this process's CPU time
(``time.process_time``, one thread: what an idle core takes; the machine is shared). Phases:

- uncached: the one forward over ``[prompt, tokens]`` in every row, the LM head at the loss rows, the backward;
- cached (``prompt_hidden``): the batch-1 prefix forward (model body only: no LM head), the out-of-place
  ``batch_repeat_interleave`` of its keys and values, the rows' forward after the cache, head, backward.

Two alternatives to the cached path, timed interleaved with it (same loss and gradient, checked):

- ``gqa``: SDPA with ``enable_gqa`` (transformers' ``TRANSFORMERS_SDPA_FORCE_GQA=1``) instead of copying the
  3 key/value heads to 9 (transformers copies whenever a mask is passed on CPU, and the cached path always has one);
- ``packed``: no cache at all: one batch-1 forward over ``[prompt, row 1, ..., row B]`` with a block mask
  (each row sees the prompt and itself, causally) and positions restarting at P in every row: one model call
  instead of two, no batch-1 prefix call.

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--P", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    torch.set_num_threads(1)
    from adaptlab.lm.load import load_causal_lm
    from adaptlab.lm.scoring import _head, base_forward
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

    def phases(cached: bool) -> dict:
        t, t0 = {}, T()
        tok = input_embedding(lm)(ids)  # (B, L, D)
        B, L, D = tok.shape
        mask = torch.cat([am.new_ones(B, P), am], 1)
        if cached:
            hp, cache = base_forward(lm, None, inputs_embeds=prompt[None], position_ids=torch.arange(P)[None])
            t["prefix forward"], t0 = T() - t0, T()
            cache.batch_repeat_interleave(B)
            t["repeat keys/values"], t0 = T() - t0, T()
            ht, _ = base_forward(lm, cache, inputs_embeds=tok, attention_mask=mask,
                                 position_ids=(P + torch.arange(L)).expand(B, -1))
            h = torch.cat([hp.expand(B, P, D), ht], 1)
        else:
            h, _ = base_forward(lm, None, inputs_embeds=torch.cat([prompt.expand(B, P, D), tok], 1),
                                attention_mask=mask, position_ids=torch.arange(P + L).expand(B, -1))
        t["rows forward"], t0 = T() - t0, T()
        loss = head_loss(h)
        t["LM head + loss"], t0 = T() - t0, T()
        torch.autograd.grad(loss, prompt)
        t["backward"] = T() - t0
        t["total"] = sum(t.values())
        return t

    def packed_loss():
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

    def step(v):
        os.environ["TRANSFORMERS_SDPA_FORCE_GQA"] = "1" if v == "gqa" else "0"
        t0 = T()
        loss = packed_loss() if v == "packed" else prompt_loss(prompt, lm, batch, cache_prefix=v != "uncached")
        g, = torch.autograd.grad(loss, prompt)
        return T() - t0, float(loss.detach()), g

    load0 = os.getloadavg()
    variants = ["uncached", "cached", "gqa", "packed"]
    first = {v: step(v) for v in variants}  # warm-up, and the agreement check
    ref = first["uncached"]
    agree = {v: {"loss_abs_diff": abs(first[v][1] - ref[1]),
                 "grad_rel_diff": float((first[v][2] - ref[2]).norm() / ref[2].norm())} for v in variants}
    phases(False), phases(True)
    ph = {"uncached": [], "cached": []}
    st = {v: [] for v in variants}
    for _ in range(args.repeats):
        ph["uncached"].append(phases(False))
        ph["cached"].append(phases(True))
        for v in variants:
            st[v].append(step(v)[0])
    os.environ["TRANSFORMERS_SDPA_FORCE_GQA"] = "0"
    med_ph = {k: {p: statistics.median(d[p] for d in rows) for p in rows[0]} for k, rows in ph.items()}
    med = {v: statistics.median(t) for v, t in st.items()}
    res = {"P": P, "batch": int(ids.shape[0]), "tokens": int(ids.shape[1]), "row_lengths": am.sum(1).tolist(),
           "phases_cpu_s": med_ph, "step_cpu_s": med, "speedup_vs_uncached": {v: med["uncached"] / med[v]
                                                                            for v in variants},
           "agreement": agree, "loadavg_before": load0, "loadavg": os.getloadavg(), "torch": torch.__version__}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "softprompt_profile.json").write_text(json.dumps(res, indent=1) + "\n")
    names = list(med_ph["cached"])
    lines = [f"# Prefix-cached step, phase by phase: SmolLM2-135M, P = {P}, batch {res['batch']}, "
             f"{res['tokens']} tokens (rows {res['row_lengths']}), CPU seconds, one thread", "",
             "| phase | uncached | cached |", "|---|---|---|"]
    for p in names:
        u = med_ph["uncached"].get(p)
        lines.append(f"| {p} | {'-' if u is None else f'{u:.3f}'} | {med_ph['cached'][p]:.3f} |")
    lines += ["", "| step (forward + backward) | CPU s | vs uncached | loss diff | gradient rel. diff |",
              "|---|---|---|---|---|"]
    for v in variants:
        lines.append(f"| {v} | {med[v]:.3f} | {res['speedup_vs_uncached'][v]:.2f}x | "
                     f"{agree[v]['loss_abs_diff']:.1e} | {agree[v]['grad_rel_diff']:.1e} |")
    lines += ["", f"Medians of {args.repeats} rounds after a warm-up, all variants interleaved; load average "
              f"{', '.join(f'{x:.1f}' for x in load0)} before, {', '.join(f'{x:.1f}' for x in res['loadavg'])} "
              f"after, on {os.cpu_count()} cores. Command: "
              f"`{' '.join(['python benchmarks/profile_softprompt_cache.py', *sys.argv[1:]])}`.", ""]
    (out / "softprompt_profile.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
