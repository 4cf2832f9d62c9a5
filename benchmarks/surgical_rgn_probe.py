"""Probe of Auto-RGN's two misses in surgical-finetune (issue 16): the paper's rule against two cheap variants.

    python benchmarks/surgical_rgn_probe.py > benchmarks/results/surgical_rgn_probe.md

The default experiment's protocol (its source model, cached under ``adaptlab.io.cache_root()``; 1000 target
images, 60 Adam steps of 32, tuned BN statistics recomputed, 3 seeds, the lr chosen per seed on the seed's own
500 held-out images, ``finetune.select="seed"``) on the two shifts where Auto-RGN missed the best variant,
contrast:5 and labels, through the experiment's own ``run_shift``. Rules compared (Auto-RGN grid
{3e-3, 1e-2, 3e-2}, BN tensors weighed like the default):

* ``paper``: per tensor, recomputed at every step from the step's batch (Lee et al., the default);
* ``epoch``: per tensor, recomputed once per epoch of the 1000 images (every 32 steps) from the mean gradient
  of 5 fresh batches, as the paper's released code measures it;
* ``block``: one relative norm per block (``||g_B|| / ||theta_B||`` over the block's tensors), normalised by
  the largest block, every step.

Also the best fixed variant of each shift in the same protocol (all layers on contrast:5, the head on labels).
One torch thread; CPU time (``time.process_time``) per rule and shift.
"""
import os
import time

import torch

from _surgical_source import cached_source
from adaptlab.experiments.surgical import SHIFTS, SurgicalConfig, _target, lr_text, run_shift
from adaptlab.io import cache_root

torch.set_num_threads(1)
CACHE = cache_root() / "surgical_rgn_probe_source.pt"  # the default source model, trained once
RULES = {"paper": {}, "epoch": {"rgn_every": 0, "rgn_batches": 5}, "block": {"rgn_unit": "block"}}
BEST = {"contrast:5": "all", "labels": "head"}


def main() -> None:
    base = SurgicalConfig()
    net, clean = cached_source(base, CACHE)
    print("# surgical-finetune: Auto-RGN, the paper's rule against two variants (contrast:5, labels)\n")
    print(f"`python benchmarks/surgical_rgn_probe.py`; one torch thread, load average {os.getloadavg()[0]:.1f} "
          "at the start. Test accuracy on 2000 target images, mean ± 95% CI over 3 seeds (per seed: seed's "
          "own lr choice on its own 500 held-out images); `lr`: the lr each seed chose; `held-out`: the chosen "
          "lr's held-out accuracy, mean over seeds; `weights`: mean Auto-RGN weight per block.\n")
    print("| shift | rule | test | per seed | lr per seed | held-out | weights block1/2/3/head | CPU s |")
    print("|---|---|---|---|---|---|---|---|")
    for shift in ("contrast:5", "labels"):
        data = _target(base, shift, list(SHIFTS).index(shift), clean)
        jobs = [(name, "auto-rgn", over) for name, over in RULES.items()] + [(BEST[shift], BEST[shift], {})]
        for name, variant, over in jobs:
            cfg = SurgicalConfig()
            for k, v in over.items():
                setattr(cfg.finetune, k, v)
            t0 = time.process_time()
            c = run_shift(cfg, net, data, None, cfg.n_target, [variant], cfg.seeds)["cells"][variant]
            cpu = time.process_time() - t0
            held = sum(v[f"{r:g}"] for v, r in zip(c["val"], c["lr"])) / len(c["lr"])
            w = c.get("block_weight")
            ws = " / ".join(f"{w[b]:.2f}" for b in ("block1", "block2", "block3", "head")) if w else "—"
            print(f"| {shift} | {name} | {c['acc']:.3f} ± {c['ci95']:.3f} | "
                  + ", ".join(f"{a:.3f}" for a in c["per_seed"]) + f" | {lr_text(c)} | {held:.3f} | {ws} | "
                  f"{cpu:.0f} |", flush=True)


if __name__ == "__main__":
    main()
