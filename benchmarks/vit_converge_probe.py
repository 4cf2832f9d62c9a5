"""Probe vit-windowed recipes with the experiment's own training (``train_one``): a few seeds, one torch thread.

Each argument after the variants is a ``--set`` style override of :class:`VitWindowedConfig`, except
``seeds=0,1,2`` (the training seeds to probe, default 0); the script trains every named variant at the first
canvas with that config (``fit``, Adam, warmup + cosine, exactly as ``adaptlab run vit-windowed`` does for
that seed) and prints its test accuracy, last-50-step loss and one-thread CPU seconds. Output of the probes
that chose the default recipe: ``benchmarks/results/vit_converge_probe.md``.

    python benchmarks/vit_converge_probe.py global,windowed train.steps=1000 n_test=1000
    python benchmarks/vit_converge_probe.py windowed,global rel_pos=true seeds=1,2
"""

from __future__ import annotations

import os
import sys
import time

import torch


def main(argv: list[str]) -> None:
    from adaptlab.config import apply_overrides
    from adaptlab.experiments.vit_windowed import VitWindowedConfig, train_one

    torch.set_num_threads(1)
    variants, overrides = argv[0].split(","), [a for a in argv[1:] if not a.startswith("seeds=")]
    seeds = [int(s) for a in argv[1:] if a.startswith("seeds=") for s in a[len("seeds="):].split(",")] or [0]
    cfg = apply_overrides(VitWindowedConfig(), overrides)
    c0 = cfg.canvases[0]
    for seed in seeds:
        for v in variants:
            w0 = time.perf_counter()
            rec = train_one(v, c0, seed, cfg)
            print(f"{v}@{c0}#{seed} {' '.join(overrides)}: acc {rec['accuracy']:.1f}% loss {rec['final_loss']:.3f} "
                  f"cpu {rec['cpu_seconds']:.0f} s wall {time.perf_counter() - w0:.0f} s "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
