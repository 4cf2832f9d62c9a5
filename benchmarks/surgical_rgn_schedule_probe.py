"""Probe of Auto-RGN's two misses in surgical-finetune (issue 16): longer fine-tuning, stopping step on held-out.

    python benchmarks/surgical_rgn_schedule_probe.py > benchmarks/results/surgical_rgn_schedule_probe.md
    python benchmarks/surgical_rgn_schedule_probe.py labels=block3 labels=all contrast:5=block1 \
        > benchmarks/results/surgical_rgn_schedule_probe_more.md

The default experiment's protocol (its source model, cached under ``adaptlab.io.cache_root()`` by
``benchmarks/surgical_rgn_probe.py``; 1000 target images, Adam steps of 32, tuned BN statistics recomputed,
3 seeds, the lr chosen per seed on the seed's own 500 held-out images) on the two shifts where Auto-RGN misses
the best variant, contrast:5 and labels, with every variant trained for up to 360 steps and evaluated on the
held-out images every 30 steps (``finetune.eval_every=30``: about one epoch of the 1000 images; each snapshot
with its BN statistics recomputed on the target images, as the returned network is).

For a step budget B in {60, 180, 360}, each seed keeps the (lr, stopping step <= B) with the best held-out
accuracy (ties: the first lr of the grid, the earliest step), and that network is scored on the 2000 test
images. The budgets share one 360-step run per (seed, lr): a run's first B steps are exactly a B-step run (the
same batches and updates; ``tests/test_adapt.py`` checks the snapshots bit for bit against separate runs), so
the B < 360 choices are re-trained for their chosen number of steps, without evaluation, to be scored. Every
variant gets the same schedule, the same evaluation points and the same selection.

Variants: Auto-RGN (the paper's rule, lr grid {3e-3, 1e-2, 3e-2}) and the best fixed variant of each shift in
the default table (the head on labels, all layers on contrast:5; grid {3e-3, 1e-2}); or the ``SHIFT=VARIANT``
pairs given as arguments (the second command: is the best fixed variant at 60 steps still the best at 360?).
One torch thread; CPU time (``time.process_time``).
"""
import copy
import os
import sys
import time

import torch

from _surgical_source import cached_source
from adaptlab.eval.metrics import accuracy
from adaptlab.eval.stats import mean_ci95
from adaptlab.experiments.surgical import SHIFTS, SurgicalConfig, _target, _tune, heldout
from adaptlab.io import cache_root

torch.set_num_threads(1)
CACHE = cache_root() / "surgical_rgn_probe_source.pt"  # the default source model (surgical_rgn_probe.py)
STEPS, EVERY, BUDGETS = 360, 30, (60, 180, 360)
JOBS = [("labels", "auto-rgn"), ("labels", "head"), ("contrast:5", "auto-rgn"), ("contrast:5", "all")]


def main() -> None:
    base = SurgicalConfig()
    net, clean = cached_source(base, CACHE)
    jobs = [tuple(a.rsplit("=", 1)) for a in sys.argv[1:]] or JOBS
    cfg = SurgicalConfig()
    cfg.finetune.steps, cfg.finetune.eval_every = STEPS, EVERY
    print("# surgical-finetune: Auto-RGN with longer fine-tuning and the stopping step chosen on held-out images\n")
    args = "".join(" " + a for a in sys.argv[1:])
    print(f"`python benchmarks/surgical_rgn_schedule_probe.py{args}`; one torch thread, load average "
          f"{os.getloadavg()[0]:.1f} at the start. Up to {STEPS} Adam steps of 32 on 1000 target images, held-out "
          f"evaluation every {EVERY} steps; per seed the (lr, step <= budget) with the best held-out accuracy on the "
          "seed's own 500 held-out images. Test accuracy on 2000 target images, mean ± 95% CI over 3 seeds; "
          "`lr @ step`: each seed's choice; `held-out`: its held-out accuracy, mean over seeds; `CPU s`: at "
          f"budget {STEPS} the shared {STEPS}-step runs (every lr and seed, with their evaluations), at the smaller "
          "budgets the re-training of the chosen steps.\n")
    print("| shift | variant | budget | test | per seed | lr @ step per seed | held-out | CPU s |")
    print("|---|---|---|---|---|---|---|---|")
    curves = []
    for shift, variant in jobs:
        data = _target(base, shift, list(SHIFTS).index(shift), clean)
        tx, ty = data["test"]
        grid = cfg.finetune.rgn_lrs if variant == "auto-rgn" else cfg.finetune.lrs
        t0 = time.process_time()
        runs = [{lr: _tune(cfg, net, variant, data, cfg.n_target, s, lr) for lr in grid} for s in range(cfg.seeds)]
        cpu_long = time.process_time() - t0
        for lr in grid:
            accs = torch.tensor([runs[s][lr][1]["eval"]["acc"] for s in range(cfg.seeds)]).mean(0)
            curves.append((shift, variant, lr, runs[0][lr][1]["eval"]["step"], accs.tolist()))
        for budget in BUDGETS:
            t1 = time.process_time()
            tests, picks, held = [], [], []
            for s in range(cfg.seeds):
                best = None
                for lr in grid:
                    ev = runs[s][lr][1]["eval"]
                    for step, acc in zip(ev["step"], ev["acc"]):
                        if step <= budget and (best is None or acc > best[0]):
                            best = (acc, lr, step)
                acc, lr, step = best
                if step == runs[s][lr][1]["best_step"]:  # the long run returned exactly this network
                    tuned = runs[s][lr][0]
                else:  # the first `step` steps of the long run, trained again without evaluation
                    short = copy.deepcopy(cfg)
                    short.finetune.steps, short.finetune.eval_every = step, 0
                    tuned = _tune(short, net, variant, data, cfg.n_target, s, lr)[0]
                    check = accuracy(tuned, *heldout(cfg, data, s))
                    assert check == acc, f"{shift} {variant} seed {s}: re-run held-out {check} != {acc}"
                tests.append(accuracy(tuned, tx, ty))
                picks.append(f"{lr:g} @ {step}")
                held.append(acc)
            mean, ci = mean_ci95(torch.tensor(tests))
            cpu = (cpu_long if budget == STEPS else 0.0) + time.process_time() - t1
            print(f"| {shift} | {variant} | {budget} | {mean:.3f} ± {ci:.3f} | "
                  + ", ".join(f"{a:.3f}" for a in tests) + f" | {', '.join(picks)} | {sum(held) / len(held):.3f} "
                  f"| {cpu:.0f} |", flush=True)
    print("\nMean held-out accuracy over the 3 seeds at each evaluation step, per lr:\n")
    steps = curves[0][3]
    print("| shift | variant | lr | " + " | ".join(str(s) for s in steps) + " |")
    print("|---|---|---|" + "---|" * len(steps))
    for shift, variant, lr, _, accs in curves:
        print(f"| {shift} | {variant} | {lr:g} | " + " | ".join(f"{a:.3f}" for a in accs) + " |")


if __name__ == "__main__":
    main()
