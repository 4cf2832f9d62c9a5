"""Training-step cost of the captioning decoders: is the joint layer doing needless work?

    python benchmarks/bench_caption_step.py    # writes benchmarks/results/caption_step.{json,md}

One torch thread, CPU time (``time.process_time``, so the load of a shared machine does not enter), the
captioning experiment's default model at batch 64; the decoders are measured in interleaved rounds (joint,
alternating, joint, ...) and the median round is reported. Measured: the whole training step (encoder + decoder +
Adam), the decoder alone (forward + backward from fixed image tokens), and which SDPA kernel runs (from the
profiler: the fused CPU flash kernel, or the unfused math path that a badly laid-out mask would force).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parent / "results"


def _cpu_ms(fn, n: int) -> float:
    t0 = time.process_time()
    for _ in range(n):
        fn()
    return 1000 * (time.process_time() - t0) / n


def main(rounds: int = 5, n: int = 5) -> dict:
    from torch.profiler import profile

    from adaptlab.experiments.captioning import CaptioningConfig, make_model

    torch.set_num_threads(1)
    cfg, b = CaptioningConfig(), 64
    g = torch.Generator().manual_seed(0)
    x = torch.rand(b, 1, cfg.data.canvas, cfg.data.canvas, generator=g)
    y = torch.randint(3, 20, (b, cfg.model.max_len), generator=g)
    y[:, 0], y[:, -2], y[:, -1] = 1, 2, 0  # <bos> ... <eos> <pad>
    names = ("joint", "alternating")
    nets = {k: make_model(k, cfg) for k in names}
    opts = {k: torch.optim.Adam(nets[k].parameters(), 1e-3) for k in names}
    mem = torch.randn(b, (cfg.data.canvas // cfg.model.patch) ** 2, cfg.model.dim, generator=g)

    def step(k):
        opts[k].zero_grad()
        nets[k].loss(x, y).backward()
        opts[k].step()

    def dec(k):
        m = mem.clone().requires_grad_()
        nets[k].decode(m, y[:, :-1]).sum().backward()

    out: dict = {"batch": b, "threads": 1, "load_avg": round(os.getloadavg()[0], 1), "decoders": {}}
    for k in names:  # warm-up
        step(k), dec(k)
    times = {k: {"step": [], "decoder": []} for k in names}
    for _ in range(rounds):
        for k in names:
            times[k]["step"].append(_cpu_ms(lambda k=k: step(k), n))
            times[k]["decoder"].append(_cpu_ms(lambda k=k: dec(k), n))
    for k in names:
        with profile() as p:
            dec(k)
        kernels = sorted({e.key for e in p.key_averages() if "scaled_dot_product" in e.key or e.key == "aten::bmm"})
        out["decoders"][k] = {"step_cpu_ms": round(statistics.median(times[k]["step"]), 1),
                              "decoder_cpu_ms": round(statistics.median(times[k]["decoder"]), 1),
                              "decoder_block_params": sum(p.numel() for p in nets[k].layers[0].parameters()),
                              "sdpa_kernels": kernels}
    OUT.mkdir(exist_ok=True)
    (OUT / "caption_step.json").write_text(json.dumps(out, indent=1) + "\n")
    rows = ["| decoder | params / block | CPU ms / training step | CPU ms / decoder fwd+bwd | SDPA kernels |",
            "|---|---|---|---|---|"]
    rows += [f"| {k} | {v['decoder_block_params']:,} | {v['step_cpu_ms']} | {v['decoder_cpu_ms']} | "
             f"{', '.join(v['sdpa_kernels'])} |" for k, v in out["decoders"].items()]
    (OUT / "caption_step.md").write_text(
        f"Captioning default model, batch {b}, one thread, median of {rounds} interleaved rounds of {n} steps, "
        f"CPU time (load average {out['load_avg']} at the start).\n\n" + "\n".join(rows) + "\n")
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
