"""Probe of surgical-finetune's Auto-RGN gap (issue 16): stale BN statistics, BN mode, Auto-RGN's lr grid.

    python benchmarks/surgical_bn_probe.py '{"shift": "contrast:5", "variants": ["all", "auto-rgn"],
                                             "lrs": [0.003], "seeds": [0, 1, 2]}'
    python benchmarks/surgical_bn_probe.py --bn-variance

One line per (variant, lr, seed): the experiment's protocol (default source model, cached in /tmp; 1000 target
images drawn by the seed; 60 Adam steps of 32) with ``finetune(recalibrate=False)``, i.e. the fine-tuning as
it was before this probe, scored on the 500 held-out (``val``) and 2000 test target images; then, on the same
tuned network, the running statistics of the batch norms that trained are recomputed over the 1000
fine-tuning images in one pass (``val_rc`` / ``test_rc``). Options: ``rgn_norms`` ("weigh" | "freeze") and
``bn`` ("train": the tuned blocks' BNs in training mode, as in the experiment; "eval": every BN in eval mode
while fine-tuning, the paper's CIFAR setting). The lines of benchmarks/results/surgical_bn_probe.md came
from this script, one thread, under load 3-10 on the 2 shared cores (test numbers there were read for
diagnosis only; every choice in the experiment is made on held-out images).
"""
import json
import sys
import time

import torch
from torch import nn

import adaptlab.adapt.tune as tune_mod
from _surgical_source import cached_source
from adaptlab.adapt import finetune, select_blocks
from adaptlab.engine import derive_seed
from adaptlab.eval.metrics import accuracy
from adaptlab.experiments.surgical import SHIFTS, SurgicalConfig, _target
from adaptlab.io import cache_root

torch.set_num_threads(1)
CACHE = cache_root() / "surgical_bn_probe_source.pt"  # the default source model, trained once
cfg = SurgicalConfig()
net, clean = cached_source(cfg, CACHE)

_orig_train_mode = tune_mod.train_mode


def eval_mode(model, tuned):
    return model.eval()


def recal_tuned(model, x, chosen):
    names = set(select_blocks(model, chosen))
    bns = [m for mn, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
           and any(f"{mn}.{p}" in names for p, _ in m.named_parameters(recurse=False))]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.eval()
    for m in bns:
        m.train()
    with torch.no_grad():
        model(x)
    for m, s in zip(bns, saved):
        m.momentum = s
    model.eval()


def one(data, variant, lr, seed, rgn_norms="weigh", bn="train", steps=60):
    (px, py), (vx, vy), (tx, ty) = data["pool"], data["val"], data["test"]
    g = torch.Generator().manual_seed(derive_seed(cfg.seed, 10 + seed))
    idx = torch.randperm(px.shape[0], generator=g)[:cfg.n_target]
    auto = {"auto-rgn": "rgn", "auto-snr": "snr"}.get(variant)
    tune_mod.train_mode = eval_mode if bn == "eval" else _orig_train_mode
    t, h = finetune(net, px[idx], py[idx], tune="all" if auto else [variant], auto=auto, steps=steps, lr=lr,
                    batch_size=32, generator=g, rgn_norms=rgn_norms, recalibrate=False)
    tune_mod.train_mode = _orig_train_mode
    r = {"val": accuracy(t, vx, vy), "test": accuracy(t, tx, ty)}
    if bn == "train":
        recal_tuned(t, px[idx], "all" if auto else [variant])
        r["val_rc"] = accuracy(t, vx, vy)
        r["test_rc"] = accuracy(t, tx, ty)
    return r


def bn_variance() -> None:
    """contrast:5: the first BN's source running variance over the target variance, and after 60 steps."""
    data = _target(cfg, "contrast:5", 3, clean)
    px, py = data["pool"]
    g = torch.Generator().manual_seed(derive_seed(cfg.seed, 10))
    idx = torch.randperm(px.shape[0], generator=g)[:1000]
    with torch.no_grad():
        h = net.stem[0](px[idx])
    print("source running var / target var (stem BN, per channel):",
          (net.stem[1].running_var / h.var(dim=(0, 2, 3))).round().tolist())
    t, _ = finetune(net, px[idx], py[idx], tune="all", steps=60, lr=3e-3, batch_size=32, generator=g,
                    recalibrate=False)
    with torch.no_grad():
        h2 = t.stem[0](px[idx])
    print("after 60 steps (all layers, lr 3e-3): running var / exact var:",
          [round(v, 3) for v in (t.stem[1].running_var / h2.var(dim=(0, 2, 3))).tolist()])


if __name__ == "__main__":
    if sys.argv[1] == "--bn-variance":
        bn_variance()
        sys.exit()
    spec = json.loads(sys.argv[1])  # {"shift", "variants", "lrs", "seeds", "rgn_norms", "bn", "steps"}
    shift = spec["shift"]
    data = _target(cfg, shift, list(SHIFTS).index(shift), clean)
    for v in spec["variants"]:
        for lr in spec["lrs"]:
            for s in spec.get("seeds", [0]):
                t0 = time.process_time()
                r = one(data, v, lr, s, spec.get("rgn_norms", "weigh"), spec.get("bn", "train"),
                        spec.get("steps", 60))
                print(shift, v, lr, s, spec.get("bn", "train"), spec.get("rgn_norms", "weigh"),
                      {k: round(x, 3) for k, x in r.items()}, f"{time.process_time() - t0:.1f}s", flush=True)
