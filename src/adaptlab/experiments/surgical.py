"""Surgical fine-tuning under distribution shift: which block to tune (HW 3; Lee et al., ICLR 2023).

A source model (a CIFAR-style ResNet) is trained once on the source task (MNIST padded to 32 x 32, or
CIFAR-10 from ``data.root``), a cached run stage. For each shift it is then fine-tuned on ``n_target``
labelled target images with every variant: no fine-tuning, each single block, the head only, all layers,
Auto-RGN and Auto-SNR. Each variant's learning rate is chosen from ``lrs`` (Auto-RGN: ``rgn_lrs``, since its
per-tensor weights are at most 1) on held-out target images, by ``finetune.select``: ``"seed"`` (default) —
every seed is a whole replication of the protocol: it draws its target subset, its batches and its own
``n_val`` held-out images (from a pool disjoint from the test images), runs the whole grid and keeps the lr
with the best held-out accuracy, so the spread over seeds includes the spread of the lr choice; ``"mean"`` —
one lr for all seeds, the best mean held-out accuracy over the seeds (each on its own held-out images);
``"seed0"`` — the former protocol (the lr chosen on seed 0's held-out accuracy, the first ``n_val`` held-out
images, then run with the other seeds), kept so the folders made with it reproduce. The accuracy on ``n_test``
target test images at the chosen lr is reported as mean ± 95% CI over seeds.
After fine-tuning, the tuned blocks' batch norms get their running statistics recomputed on the labelled
target images (``finetune.recalibrate``; see :func:`adaptlab.adapt.finetune`), so the network evaluated is
the one that was trained.
The curve sizes rerun ``curve_variants`` at the rates chosen at ``n_target`` (per seed under ``"seed"``) with
other numbers of target images and ``curve_seeds`` seeds.

Shifts are ``corruption:severity`` (see :mod:`adaptlab.data.corruptions`; on CIFAR read from CIFAR-10-C),
``labels`` (a fixed cyclic permutation of labels 0-4: label-level) and ``subpop`` (digits / classes 5-9
relabelled 0-4: a feature-level sub-population shift).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from adaptlab.config import BaseConfig, check
from adaptlab.engine import derive_seed, fit, make_optimizer
from adaptlab.errors import ConfigError
from adaptlab.eval.stats import mean_ci95
from adaptlab.io import save_figure
from adaptlab.runner import Experiment, Stages

SPECIAL = ("labels", "subpop")
SELECT = ("seed", "mean", "seed0")
VARIANTS_AUTO = {"auto-rgn": "rgn", "auto-snr": "snr"}
MODELS = ("resnet-small", "resnet26")
# target shifts: CORRUPTION:SEVERITY (1..5), 'labels' (label permutation) or 'subpop' (sub-populations)
SHIFTS = ("gaussian_noise:5", "impulse_noise:5", "defocus_blur:5", "contrast:5", "contrast:2", "labels", "subpop")
# what is fine-tuned: 'none', a block name of adapt.blocks(model), 'all', 'auto-rgn' or 'auto-snr'
VARIANTS = ("none", "block1", "block2", "block3", "head", "all", "auto-rgn", "auto-snr")


@dataclass
class SurgicalData:
    source: str = "mnist"  # source task: 'mnist' (bundled, padded to 32 px) or 'cifar10' (files under root)
    root: str = ""  # folder with cifar-10-batches-py/ and CIFAR-10-C/ (source=cifar10 only)

    def __post_init__(self) -> None:
        check(self.source in ("mnist", "cifar10"), "data.source", self.source, "'mnist' or 'cifar10'")
        check(self.source == "mnist" or bool(self.root), "data.root", self.root,
              "the folder holding CIFAR-10 and CIFAR-10-C when data.source=cifar10")


def parse_shift(text: str) -> tuple[str, int]:
    """``"contrast:5" -> ("contrast", 5)``; ``"labels" -> ("labels", 0)``; anything else a ConfigError."""
    from adaptlab.data.corruptions import CORRUPTIONS

    if text in SPECIAL:
        return text, 0
    name, _, sev = text.partition(":")
    if name not in CORRUPTIONS:
        raise ConfigError(f"shifts: {name!r} is unknown; expected 'labels', 'subpop' or CORRUPTION:SEVERITY with "
                          f"a corruption in {', '.join(CORRUPTIONS)}")
    if sev not in ("1", "2", "3", "4", "5"):
        raise ConfigError(f"shifts: {text!r} has severity {sev or 'missing'}; expected {name}:S with S in 1..5")
    return name, int(sev)


@dataclass
class SourceTrain:
    steps: int = 500  # Adam steps of batch batch_size on the source task (about 1.3 MNIST epochs)
    batch_size: int = 128  # source training batch size
    lr: float = 2e-3  # source training Adam learning rate


@dataclass
class Finetune:
    steps: int = 60  # fine-tuning steps per variant, the same for every target size (CPU-sized)
    batch_size: int = 32  # fine-tuning batch size
    lrs: list[float] = field(default_factory=lambda: [3e-3, 1e-2])  # Adam learning-rate grid, chosen on n_val
    # Auto-RGN's own grid, one step higher (its weights are <= 1; 1e-1 scored lower still, docs/adapt.md)
    rgn_lrs: list[float] = field(default_factory=lambda: [3e-3, 1e-2, 3e-2])  # Auto-RGN base lr grid, on n_val
    rgn_norms: str = "weigh"  # Auto-RGN and BN affine tensors: 'weigh' (like any tensor) or 'freeze' (paper code)
    # without it the tuned BNs' running statistics still hold source statistics and lag the weights (docs/adapt.md)
    recalibrate: bool = True  # after fine-tuning, recompute the tuned BNs' running statistics on the target images
    # 'seed': each seed runs the grid and keeps its best lr on its own held-out images (a seed is a whole
    # replication, so the CI includes the lr choice); 'mean': one lr, best mean held-out accuracy over seeds;
    # 'seed0': the lr of seed 0's held-out accuracy for every seed (the former protocol; older folders)
    select: str = "seed"  # how the lr is chosen on held-out target images: 'seed', 'mean' or 'seed0'
    # Auto-RGN's measurement (adapt.finetune): the defaults are the paper's rule, per tensor at every step
    rgn_every: int = 1  # steps between Auto-RGN weight recomputations (0: once per epoch of the target images)
    rgn_batches: int = 1  # batches whose mean gradient sets the Auto-RGN weights (1: the step's own batch)
    rgn_unit: str = "tensor"  # Auto-RGN relative norm per 'tensor' (paper) or per 'block' (one weight a block)
    # off by default so the committed folders reproduce; with k > 0 every variant keeps its best snapshot on the
    # seed's held-out images (the ones that choose the lr), the schedule steps long (docs/adapt.md)
    eval_every: int = 0  # steps between held-out evaluations choosing the stopping step (0: off, the last step)


@dataclass
class SurgicalConfig(BaseConfig):
    # before the one vocabulary (docs/config.md): the source model trains under train.*, the variants under finetune.*
    RENAMED = {"source_steps": "train.steps", "source_batch": "train.batch_size", "source_lr": "train.lr",
               "steps": "finetune.steps", "batch": "finetune.batch_size", "lrs": "finetune.lrs"}

    data: SurgicalData = field(default_factory=SurgicalData)  # source task and (for CIFAR) where its files are
    model: str = "resnet-small"  # 'resnet-small' (ResNet-8, CPU default) or 'resnet26' (the paper's network)
    train: SourceTrain = field(default_factory=SourceTrain)  # the source model, trained once (a cached stage)
    recalibrate: int = 10000  # source images that reset the BN running statistics after training (0: keep)
    shifts: list[str] = field(default_factory=lambda: list(SHIFTS))  # CORRUPTION:SEVERITY, 'labels' or 'subpop'
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))  # 'none', a block, 'all', 'auto-rgn/snr'
    n_target: int = 1000  # labelled target images for the main table and heat map
    curve_sizes: list[int] = field(default_factory=lambda: [100, 10000])  # other target sizes for the curve
    # the curve is sized to keep the default run under 20 min of one-thread CPU (docs/adapt.md): one block vs all
    # layers, the paper's comparison, with 2 seeds (a 10000-image run costs about 2.5x a 1000-image one)
    curve_variants: list[str] = field(default_factory=lambda: ["block1", "head", "all"])  # rerun at curve_sizes
    curve_seeds: int = 0  # seeds of the curve runs (the first ones of the main table; 0: all seeds)
    n_val: int = 500  # held-out target images that choose the learning rate
    n_test: int = 2000  # target test images behind every reported accuracy
    finetune: Finetune = field(default_factory=Finetune)  # every variant's fine-tuning
    seeds: int = 3  # target subsets and batch orders per variant (>= 2 for a confidence interval)
    snr_threshold: float = 0.5  # Auto-SNR: tensors whose normalised SNR is below this are frozen for a step

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.model in MODELS, "model", self.model, f"one of {', '.join(MODELS)}")
        check(len(self.shifts) > 0, "shifts", self.shifts, "a non-empty list, e.g. contrast:5,labels")
        for s in self.shifts:
            parse_shift(s)
        check(len(self.variants) > 0, "variants", self.variants, "a non-empty list of variants (empty block set)")
        for key in ("variants", "curve_variants"):
            v = getattr(self, key)
            check(len(set(v)) == len(v), key, v, "distinct variants")
        check(set(self.curve_variants) <= set(self.variants), "curve_variants", self.curve_variants,
              "a subset of variants")
        check(1 <= self.n_target <= 60000, "n_target", self.n_target, "an integer in 1..60000")
        check(all(1 <= n <= 60000 for n in self.curve_sizes), "curve_sizes", self.curve_sizes,
              "target sizes in 1..60000")
        t, f = self.train, self.finetune
        check(0 <= t.steps <= 10_000_000, "train.steps", t.steps, "an integer in 0..10000000")
        check(0 <= f.steps <= 10_000_000, "finetune.steps", f.steps, "an integer in 0..10000000")
        check(1 <= t.batch_size <= 65536, "train.batch_size", t.batch_size, "an integer in 1..65536")
        check(1 <= f.batch_size <= 65536, "finetune.batch_size", f.batch_size, "an integer in 1..65536")
        for key in ("n_val", "n_test"):
            check(1 <= getattr(self, key) <= 60000, key, getattr(self, key), "an integer in 1..60000")
        check(0 < t.lr <= 10, "train.lr", t.lr, "a positive number <= 10")
        check(self.recalibrate >= 0, "recalibrate", self.recalibrate, "an integer >= 0 (0: no recalibration)")
        for key in ("lrs", "rgn_lrs"):
            v = getattr(f, key)
            check(len(v) > 0 and all(0 < lr <= 10 for lr in v), f"finetune.{key}", v,
                  "a non-empty list of positive learning rates <= 10")
        check(f.rgn_norms in ("freeze", "weigh"), "finetune.rgn_norms", f.rgn_norms, "'freeze' or 'weigh'")
        check(f.select in SELECT, "finetune.select", f.select, "'seed', 'mean' or 'seed0'")
        check(0 <= f.rgn_every <= 10_000_000, "finetune.rgn_every", f.rgn_every, "an integer >= 0 (0: per epoch)")
        check(1 <= f.rgn_batches <= 1000, "finetune.rgn_batches", f.rgn_batches, "an integer in 1..1000")
        check(f.rgn_unit in ("tensor", "block"), "finetune.rgn_unit", f.rgn_unit, "'tensor' or 'block'")
        check(0 <= f.eval_every <= 10_000_000, "finetune.eval_every", f.eval_every,
              "an integer >= 0 (0: no stopping-step selection)")
        check(self.curve_seeds == 0 or 2 <= self.curve_seeds <= self.seeds, "curve_seeds", self.curve_seeds,
              "0 (all seeds) or an integer in 2..seeds")
        check(2 <= self.seeds <= 100, "seeds", self.seeds, "an integer in 2..100 (a CI needs two)")
        check(0.0 <= self.snr_threshold <= 1.0, "snr_threshold", self.snr_threshold, "a number in [0, 1]")


def _new_model(cfg: SurgicalConfig):
    from adaptlab import models

    return models.create(cfg.model, in_channels=1 if cfg.data.source == "mnist" else 3)


def check_config(cfg: SurgicalConfig) -> None:
    """Before the run folder exists: every variant names blocks of the model, the CIFAR files are there."""
    from adaptlab.adapt import blocks, select_blocks

    net = _new_model(cfg)
    bmap = blocks(net)
    for v in cfg.variants:
        if v not in ("none", *VARIANTS_AUTO):
            try:
                select_blocks(net, [v], bmap)
            except ValueError as e:
                raise ConfigError(f"variants: {e}") from None
    if cfg.data.source == "cifar10":
        from adaptlab.data.cifar import cifar10_dir, cifar10c_dir, load_cifar10c

        cifar10_dir(cfg.data.root)
        cifar10c_dir(cfg.data.root)
        for s in cfg.shifts:
            name, sev = parse_shift(s)
            if sev:
                load_cifar10c(cfg.data.root, name, sev)


# ------------------------------------------------------------------------------------------------ data


def _source(cfg: SurgicalConfig):
    """(source train x, y), (target pool x, y), (target val x, y), (target test x, y): clean images."""
    if cfg.data.source == "mnist":
        from adaptlab.data.mnist import load_mnist
        from adaptlab.data.shift import pad32

        m = load_mnist()
        tx, ty = pad32(m.train_x), m.train_y
        vx, vy = pad32(m.test_x), m.test_y
        return (tx[:50000], ty[:50000]), (tx[50000:], ty[50000:]), (vx[:5000], vy[:5000]), (vx[5000:], vy[5000:])
    from adaptlab.data.cifar import load_cifar10

    c = load_cifar10(cfg.data.root)
    return ((c.train_x, c.train_y), (c.test_x[:5000], c.test_y[:5000]), (c.test_x[5000:6000], c.test_y[5000:6000]),
            (c.test_x[6000:], c.test_y[6000:]))


def _target(cfg: SurgicalConfig, shift: str, index: int, clean) -> dict:
    """``{"pool", "val", "test"}`` of (x, y) for ``shift``: corrupted, permuted or sub-population data."""
    from adaptlab.data.corruptions import corrupt
    from adaptlab.data.shift import permute_labels, subpopulation

    name, sev = parse_shift(shift)
    _, pool, val, test = clean
    parts = {"pool": pool, "val": val, "test": test}
    if name == "labels":
        parts = {k: (x, permute_labels(y)) for k, (x, y) in parts.items()}
    elif name == "subpop":
        parts = {k: subpopulation(x, y) for k, (x, y) in parts.items()}
    elif cfg.data.source == "cifar10":
        from adaptlab.data.cifar import load_cifar10c

        x, y = load_cifar10c(cfg.data.root, name, sev)
        k = x.shape[0]
        a, b = k // 2, k // 2 + k // 10
        parts = {"pool": (x[:a], y[:a]), "val": (x[a:b], y[a:b]), "test": (x[b:], y[b:])}
    else:
        g = torch.Generator().manual_seed(derive_seed(cfg.seed, 500 + index))
        parts = {k: (corrupt(x, name, sev, g), y) for k, (x, y) in parts.items()}
    vx, vy = parts["val"]
    tx, ty = parts["test"]
    return {"pool": parts["pool"], "val": (vx[:cfg.n_val], vy[:cfg.n_val]), "val_pool": (vx, vy),
            "test": (tx[:cfg.n_test], ty[:cfg.n_test])}


# ------------------------------------------------------------------------------------------------ stages


def train_source(cfg: SurgicalConfig, train, checkpoint=None) -> dict:
    """The source model: ``train.steps`` Adam steps on the source task (a cached run stage)."""
    import torch.nn.functional as F

    torch.manual_seed(cfg.seed)
    net = _new_model(cfg).to(cfg.device)
    x, y = train
    g = torch.Generator().manual_seed(derive_seed(cfg.seed, 0))
    net.train()

    def batch(step):
        idx = torch.randint(x.shape[0], (cfg.train.batch_size,), generator=g)
        return x[idx].to(cfg.device), y[idx].to(cfg.device)

    hist = fit(lambda b: F.cross_entropy(net(b[0]), b[1]), batch, steps=cfg.train.steps,
               optimizer=make_optimizer(net.parameters(), "adam", cfg.train.lr), generator=g,
               modules={"model": net}, checkpoint=checkpoint)
    if cfg.recalibrate:
        from adaptlab.adapt import recalibrate_bn

        recalibrate_bn(net, x[:cfg.recalibrate].to(cfg.device))
    return {"model": net.state_dict(), "seconds": hist["seconds"], "final_loss": hist["loss"][-1:]}


def heldout(cfg: SurgicalConfig, data: dict, seed_i: int):
    """Seed ``seed_i``'s held-out images: ``n_val`` drawn from the held-out pool by the seed (``select="seed0"``:
    the first ``n_val``, the same for every seed, as before per-seed selection)."""
    if cfg.finetune.select == "seed0":
        return data["val"]
    vx, vy = data["val_pool"]
    g = torch.Generator().manual_seed(derive_seed(cfg.seed, 200 + seed_i))
    idx = torch.randperm(vx.shape[0], generator=g)[:cfg.n_val]
    return vx[idx], vy[idx]


def _tune(cfg, net, variant, data, n, seed_i, lr):
    """Fine-tune ``variant`` on ``n`` target images with seed ``seed_i``: (tuned model, history)."""
    from adaptlab.adapt import finetune

    if variant == "none":
        return net, {}
    dev = cfg.device
    px, py = data["pool"]
    g = torch.Generator().manual_seed(derive_seed(cfg.seed, 10 + seed_i))
    idx = torch.randperm(px.shape[0], generator=g)[:n]
    auto = VARIANTS_AUTO.get(variant)
    f = cfg.finetune
    every = f.rgn_every or -(-idx.shape[0] // min(f.batch_size, idx.shape[0]))  # 0: steps per epoch
    held = {}
    if f.eval_every:  # the stopping step is chosen on the same held-out images as the lr
        hx, hy = heldout(cfg, data, seed_i)
        held = {"x_val": hx.to(dev), "y_val": hy.to(dev), "eval_every": f.eval_every}
    return finetune(net, px[idx].to(dev), py[idx].to(dev), tune="all" if auto else [variant], auto=auto,
                    steps=f.steps, lr=lr, batch_size=f.batch_size, generator=g, snr_threshold=cfg.snr_threshold,
                    rgn_norms=f.rgn_norms, recalibrate=f.recalibrate, rgn_every=every, rgn_batches=f.rgn_batches,
                    rgn_unit=f.rgn_unit, **held)


def choose_lr(val: list[dict[float, float]], select: str) -> list[float]:
    """The lr of each seed from ``val[s] = {lr: held-out accuracy}``: its own best (``"seed"``, ``"seed0"``: seed
    0's best for all), or the best mean over seeds (``"mean"``); ties go to the first lr of the grid.

    >>> choose_lr([{0.1: 0.5, 0.2: 0.7}, {0.1: 0.9, 0.2: 0.6}], "seed")
    [0.2, 0.1]
    >>> choose_lr([{0.1: 0.5, 0.2: 0.7}, {0.1: 0.9, 0.2: 0.6}], "mean")
    [0.1, 0.1]
    """
    if select == "seed":
        return [max(v, key=v.get) for v in val]
    if select == "seed0":
        return [max(val[0], key=val[0].get)] * len(val)
    lrs = list(val[0])
    best = max(lrs, key=lambda r: sum(v[r] for v in val) / len(val))
    return [best] * len(val)


def run_shift(cfg: SurgicalConfig, net, data, chosen: dict | None, n: int, variants, seeds: int,
              checkpoint=None) -> dict:
    """Every variant at ``n`` target images with ``seeds`` seeds: the lr chosen on held-out images
    by ``finetune.select`` unless ``chosen`` gives it (``{variant: [lr per seed]}``, from a run at ``n_target``).
    Only the tuned network of the chosen lr is scored on the test images."""
    from adaptlab.eval.metrics import accuracy

    dev = cfg.device
    tx, ty = data["test"]
    select = cfg.finetune.select
    out, secs = {}, {}
    for v in variants:
        t0 = time.perf_counter()
        grid = cfg.finetune.rgn_lrs if v == "auto-rgn" else cfg.finetune.lrs
        grid = [grid[0]] if v == "none" else grid
        runs: list[dict] = []  # runs[s][lr] = (held-out accuracy, tuned model, history)

        def trial(s, lr, v=v):
            tuned, hist = _tune(cfg, net, v, data, n, s, lr)
            hx, hy = heldout(cfg, data, s)
            return accuracy(tuned, hx.to(dev), hy.to(dev)), tuned, hist

        for s in range(seeds):
            if chosen:
                lrs = [chosen[v][s]]
            elif select == "seed0" and s > 0:  # the former protocol: only seed 0 runs the grid
                lrs = [choose_lr([{r: a for r, (a, _, _) in runs[0].items()}], "seed")[0]]
            else:
                lrs = grid
            runs.append({lr: trial(s, lr) for lr in lrs})
        val = [{r: a for r, (a, _, _) in rs.items()} for rs in runs]
        picked = [chosen[v][s] for s in range(seeds)] if chosen else choose_lr(val, select)
        tests = [accuracy(runs[s][lr][1], tx.to(dev), ty.to(dev)) for s, lr in enumerate(picked)]
        hists = [runs[s][lr][2] for s, lr in enumerate(picked)]
        mean, ci = mean_ci95(torch.tensor(tests))
        used = min(n, data["pool"][0].shape[0])
        if select == "seed0":  # the former cell layout, so that older folders reproduce byte for byte
            cell = {"acc": mean, "ci95": ci, "per_seed": tests, "lr": picked[0], "n_used": used,
                    "val": {f"{r:g}": a for r, a in val[0].items()}}
            if "block_weight" in hists[0]:
                cell["block_weight"] = hists[0]["block_weight"]
        else:
            cell = {"acc": mean, "ci95": ci, "per_seed": tests, "lr": picked, "n_used": used,
                    "val": [{f"{r:g}": a for r, a in vs.items()} for vs in val]}
            if "block_weight" in hists[0]:  # mean over seeds of each block's mean weight at the chosen lr
                cell["block_weight"] = {b: sum(h["block_weight"][b] for h in hists) / seeds
                                        for b in hists[0]["block_weight"]}
        if "best_step" in hists[0]:  # finetune.eval_every: the stopping step each seed kept
            cell["stop_step"] = [h["best_step"] for h in hists]
        out[v] = cell
        secs[v] = time.perf_counter() - t0
    return {"cells": out, "seconds": secs}


def lr_text(cell: dict) -> str:
    """A cell's chosen lr: ``"0.003"``, or the per-seed choices ``"0.003/0.01/0.003"``."""
    lr = cell["lr"]
    return "/".join(f"{r:g}" for r in lr) if isinstance(lr, list) else f"{lr:g}"


def run(cfg: SurgicalConfig, out_dir: Path, resume: bool = False) -> dict:
    from adaptlab.adapt import blocks
    from adaptlab.eval.metrics import accuracy

    stages = Stages(out_dir, resume, every=100)
    clean = _source(cfg)
    src = stages.run("source", train_source, cfg, clean[0])
    net = _new_model(cfg).to(cfg.device)
    net.load_state_dict(src["model"])
    net.eval()
    tx, ty = clean[3]
    results: dict = {"n_target": cfg.n_target, "model": cfg.model, "source": cfg.data.source,
                     "source_clean_test_acc": accuracy(net, tx[:cfg.n_test].to(cfg.device),
                                                       ty[:cfg.n_test].to(cfg.device)),
                     "blocks": {b: sum(dict(net.named_parameters())[p].numel() for p in names)
                                for b, names in blocks(net).items()},
                     "shifts": {}, "timings": {"source_seconds": src["seconds"], "variant_seconds": {}}}
    for i, shift in enumerate(cfg.shifts):
        data = _target(cfg, shift, i, clean)
        main = stages.run(f"{shift}@{cfg.n_target}", run_shift, cfg, net, data, None, cfg.n_target, cfg.variants,
                          cfg.seeds)
        per_n = {str(cfg.n_target): main["cells"]}
        results["timings"]["variant_seconds"][shift] = main["seconds"]
        chosen = {v: c["lr"] if isinstance(c["lr"], list) else [c["lr"]] * cfg.seeds for v, c in main["cells"].items()}
        for n in cfg.curve_sizes:
            if n != cfg.n_target and cfg.curve_variants:
                per_n[str(n)] = stages.run(f"{shift}@{n}", run_shift, cfg, net, data, chosen, n,
                                           cfg.curve_variants, cfg.curve_seeds or cfg.seeds)["cells"]
        single = {v: c["acc"] for v, c in main["cells"].items() if v not in ("none", "all", *VARIANTS_AUTO)}
        best_all = max(main["cells"], key=lambda v: main["cells"][v]["acc"])
        results["shifts"][shift] = {"n": dict(sorted(per_n.items(), key=lambda kv: int(kv[0]))),
                                    "best_single": max(single, key=single.get) if single else None,
                                    "best": best_all, "n_pool": int(data["pool"][0].shape[0])}
    return results


# ------------------------------------------------------------------------------------------------ report


def figures(results: dict, cfg: SurgicalConfig, out_dir: Path) -> list[str]:
    from adaptlab.viz.adapt import block_heatmap_figure, data_curve_figure

    save_figure(block_heatmap_figure(results), out_dir / "heatmap.png")
    names = ["heatmap.png"]
    if any(len(s["n"]) > 1 for s in results["shifts"].values()):
        save_figure(data_curve_figure(results), out_dir / "data_curve.png")
        names.append("data_curve.png")
    return names


def _kind(shift: str) -> str:
    return {"labels": "label-level", "subpop": "feature-level"}.get(shift, "input-level")


def summary(results: dict, cfg: SurgicalConfig) -> str:
    n = str(results["n_target"])
    variants = list(next(iter(results["shifts"].values()))["n"][n])
    lines = [f"Surgical fine-tuning of a {results['model']} trained on {results['source']} "
             f"(clean test accuracy {results['source_clean_test_acc']:.3f}); {n} target images, "
             f"{cfg.finetune.steps} Adam steps of {cfg.finetune.batch_size}, lr from {cfg.finetune.lrs} "
             f"(Auto-RGN: {cfg.finetune.rgn_lrs}, BN tensors {cfg.finetune.rgn_norms}) chosen "
             + {"seed0": f"on {cfg.n_val} held-out target images",
                "seed": f"per seed on the seed's own {cfg.n_val} held-out target images",
                "mean": f"on the mean over seeds of the held-out accuracy ({cfg.n_val} images per seed)"
                }[cfg.finetune.select]
             + ", tuned BN statistics "
             f"{'recomputed on the target images' if cfg.finetune.recalibrate else 'as trained (not recomputed)'}"
             "; test accuracy "
             f"on {cfg.n_test} target images, mean ± 95% CI over {cfg.seeds} seeds.", "",
             "| shift | " + " | ".join(variants) + " | best single block |",
             "|---|" + "---|" * (len(variants) + 1)]
    for s, r in results["shifts"].items():
        cells = r["n"][n]
        top = max(cells[v]["acc"] for v in variants)
        row = [(f"**{cells[v]['acc']:.3f}**" if cells[v]["acc"] == top else f"{cells[v]['acc']:.3f}")
               + f" ± {cells[v]['ci95']:.3f}" for v in variants]
        lines.append(f"| {s} | " + " | ".join(row) + f" | {r['best_single']} |")
    autos = [v for v in VARIANTS_AUTO if v in variants]
    if autos:
        lines += ["", "Automatic block choice against the best variant of the table (mean ± 95% CI; difference "
                  "to the best; Auto-RGN's chosen base lr):", "",
                  "| shift | best variant | " + " | ".join(autos) + " |", "|---|---|" + "---|" * len(autos)]
        for s, r in results["shifts"].items():
            cells = r["n"][n]
            b = cells[r["best"]]
            row = [f"{cells[v]['acc']:.3f} ± {cells[v]['ci95']:.3f} ({cells[v]['acc'] - b['acc']:+.3f}"
                   + (f", lr {lr_text(cells[v])})" if v == "auto-rgn" else ")") for v in autos]
            lines.append(f"| {s} | {r['best']} {b['acc']:.3f} ± {b['ci95']:.3f} | " + " | ".join(row) + " |")
    sizes = sorted({k for r in results["shifts"].values() for k in r["n"]}, key=int)
    if len(sizes) > 1:
        lines += ["", "Accuracy by number of target images (mean ± 95% CI; curve variants use the lr chosen at "
                  f"{n}" + (", per seed" if cfg.finetune.select == "seed" else "")
                  + (f"; the first {cfg.curve_seeds} seeds at the other sizes" if cfg.curve_seeds else "") + "):",
                  "", "| shift | variant | " + " | ".join(sizes) + " |", "|---|---|" + "---|" * len(sizes)]
        for s, r in results["shifts"].items():
            for v in cfg.curve_variants:
                cells = [f"{r['n'][k][v]['acc']:.3f} ± {r['n'][k][v]['ci95']:.3f}" if v in r["n"][k] else "—"
                         for k in sizes]
                lines.append(f"| {s} | {v} | " + " | ".join(cells) + " |")
    lines += ["", "**Answer (from the numbers above).** " + _answer(results, n)]
    return "\n".join(lines)


def _answer(results: dict, n: str) -> str:
    inp = {s: r for s, r in results["shifts"].items() if _kind(s) == "input-level"}
    parts = []
    if inp:
        wins: dict[str, list[str]] = {}
        for s, r in inp.items():
            wins.setdefault(r["best_single"], []).append(s)
        top = max(wins, key=lambda b: len(wins[b]))
        parts.append(f"If one block may be tuned under input-level corruptions, tune {top}: it is the best single "
                     f"block on {len(wins[top])} of {len(inp)} corruptions ({', '.join(wins[top])})"
                     + ("" if len(wins) == 1 else "; elsewhere " + "; ".join(
                         f"{b} on {', '.join(v)}" for b, v in wins.items() if b != top)) + ".")
        if top == "block1":
            parts.append("This agrees with Lee et al.: the first block sees the pixels, so a pixel-level shift is "
                         "undone where it enters, while later blocks would have to learn to ignore features that "
                         "were already distorted.")
        else:
            parts.append(f"This differs from Lee et al., whose first block wins on CIFAR-10-C; here {top} wins.")
    for s, r in results["shifts"].items():
        if _kind(s) != "input-level":
            parts.append(f"For the {_kind(s)} shift {s} the best single block is {r['best_single']}.")
    for s, r in results["shifts"].items():
        c = r["n"][n]
        if "all" in c and r["best_single"]:
            b = r["best_single"]
            d = c[b]["acc"] - c["all"]["acc"]
            parts.append(f"{s}: best single block {b} {c[b]['acc']:.3f} vs all {c['all']['acc']:.3f} "
                         f"({'+' if d >= 0 else ''}{d:.3f})" + (f", Auto-RGN {c['auto-rgn']['acc']:.3f}"
                                                                  if "auto-rgn" in c else "") + ".")
    return " ".join(parts)


QUICK = {"train.steps": 30, "train.batch_size": 32, "recalibrate": 500, "shifts": ["gaussian_noise:5", "labels"],
         "variants": ["none", "block1", "head", "auto-rgn"], "curve_sizes": [30], "curve_variants": ["block1"],
         "n_target": 100, "n_val": 100, "n_test": 200, "finetune.lrs": [3e-3], "finetune.rgn_lrs": [1e-2],
         "finetune.steps": 4, "finetune.batch_size": 16, "seeds": 2}
# the paper's ResNet-26 at the size one loaded CPU allowed (docs/adapt.md): a shorter source training, 30 steps
# per variant, 2 seeds, 3 shifts, no Auto-SNR; the default protocol otherwise (lr grids chosen per seed, tuned BN
# statistics recomputed)
RESNET26 = {"model": "resnet26", "train.steps": 150, "train.batch_size": 64, "recalibrate": 2000,
            "shifts": ["gaussian_noise:5", "contrast:2", "labels"],
            "variants": ["none", "block1", "block2", "block3", "head", "all", "auto-rgn"], "curve_sizes": [100],
            "curve_variants": ["block1", "all"], "curve_seeds": 2, "finetune.steps": 30, "seeds": 2, "n_val": 300,
            "n_test": 1000}
# the 6 corruptions the default table leaves out: same protocol and source model, 2 seeds, no curve (CPU-sized)
MORE_SHIFTS = {"shifts": ["shot_noise:5", "motion_blur:5", "brightness:5", "pixelate:5", "jpeg:5", "elastic:5"],
               "curve_variants": [], "curve_seeds": 2, "seeds": 2}
# lower severities of the 4 corruptions where block 1 won at severity 5 (contrast:2 is in the default table):
# severities 1 and 3 only, 2 seeds, no curve; all 1..4 (15 shifts, ~75 s of one-thread CPU each) would be ~20 min
SEVERITIES = {"shifts": [f"{c}:{s}" for c in ("gaussian_noise", "impulse_noise", "defocus_blur", "contrast")
                         for s in (1, 3)], "curve_sizes": [], "curve_variants": [], "curve_seeds": 2, "seeds": 2}

EXPERIMENTS = [
    Experiment("surgical-finetune", "Surgical fine-tuning: which ResNet block to tune per distribution shift, "
               "Auto-RGN / Auto-SNR", SurgicalConfig, run, figures, summary, check=check_config, quick=QUICK),
    Experiment("surgical-finetune-resnet26", "Surgical fine-tuning with the paper's ResNet-26 (a CPU-sized "
               "study: 3 shifts, 2 seeds)", SurgicalConfig, run, figures, summary, check=check_config,
               defaults=RESNET26, quick={**QUICK, "train.steps": 6, "train.batch_size": 16, "recalibrate": 64,
                                         "shifts": ["gaussian_noise:5"], "variants": ["none", "block1", "head"],
                                         "n_val": 50, "n_test": 100, "finetune.steps": 2}),
    Experiment("surgical-finetune-corruptions", "Surgical fine-tuning on the 6 corruptions the default table "
               "leaves out (severity 5)", SurgicalConfig, run, figures, summary, check=check_config,
               defaults=MORE_SHIFTS, quick={**QUICK, "shifts": ["jpeg:5"], "variants": ["none", "block1"],
                                            "curve_sizes": []}),
    Experiment("surgical-finetune-severities", "Surgical fine-tuning at severities 1 and 3 of the 4 corruptions "
               "where block 1 won at severity 5", SurgicalConfig, run, figures, summary, check=check_config,
               defaults=SEVERITIES, quick={**QUICK, "shifts": ["contrast:1"], "variants": ["none", "block1"],
                                           "curve_sizes": []}),
]
