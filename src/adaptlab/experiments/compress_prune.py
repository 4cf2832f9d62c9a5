"""``prune-mnist``: fine-grained and channel pruning of a VGG-style CNN on MNIST.

Train the CNN; plot per-layer weight histograms; scan each layer's pruning sensitivity on a held-out
validation split; allocate per-layer sparsities that meet a size target with the least summed accuracy drop
(next to the uniform allocation); fine-tune both with masks kept applied; check our masks against
``torch.nn.utils.prune``; then remove output channels by L2 importance vs keep-first, count MACs (checked
against the analytic formula) and CPU latency, and fine-tune.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from adaptlab.config import BaseConfig, check
from adaptlab.experiments._compress_common import (
    DataCfg,
    TrainCfg,
    check_mnist,
    latency_pair,
    mean_loss_curve,
    mnist_split,
    train_stage,
)
from adaptlab.io import progress, save_figure
from adaptlab.runner import Experiment, Stages


@dataclass
class PruneCfg:
    layers: list[str] = field(default_factory=list)   # prunable weight names; empty = every conv/linear
    grid: list[float] = field(default_factory=lambda: [0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95])
    target: float = 0.25             # keep a quarter of the prunable weights (4x smaller pruned layers)
    finetune_steps: int = 300
    finetune_lr: float = 5e-4        # a quarter of the training rate: fine-tuning starts near a minimum
    compare_sparsity: float = 0.7    # sparsity at which our masks are compared with torch.nn.utils.prune

    def __post_init__(self):
        for s in self.grid:
            check(0.0 <= s <= 1.0, "prune.grid", s, "sparsities in [0, 1]")
        check(len(self.grid) >= 1, "prune.grid", self.grid, "at least one sparsity")
        check(0.0 < self.target <= 1.0, "prune.target", self.target, "a fraction of weights kept in (0, 1]")
        check(self.finetune_steps >= 0, "prune.finetune_steps", self.finetune_steps, "an integer >= 0")
        check(0 < self.finetune_lr <= 10, "prune.finetune_lr", self.finetune_lr, "a positive number <= 10")
        check(0.0 <= self.compare_sparsity <= 1.0, "prune.compare_sparsity", self.compare_sparsity, "[0, 1]")


@dataclass
class ChannelCfg:
    ratio: float = 0.5               # remove half of every conv's output channels
    finetune_steps: int = 300
    finetune_lr: float = 1e-3

    def __post_init__(self):
        check(0.0 <= self.ratio < 1.0, "channel.ratio", self.ratio,
              "a fraction of channels removed in [0, 1)")
        check(self.finetune_steps >= 0, "channel.finetune_steps", self.finetune_steps, "an integer >= 0")
        check(0 < self.finetune_lr <= 10, "channel.finetune_lr", self.finetune_lr, "a positive number <= 10")


@dataclass
class PruneMnistConfig(BaseConfig):
    data: DataCfg = field(default_factory=DataCfg)
    widths: list[int] = field(default_factory=lambda: [16, 32, 32, 64])   # VGG conv widths, pool every 2
    train: TrainCfg = field(default_factory=TrainCfg)
    prune: PruneCfg = field(default_factory=PruneCfg)
    channel: ChannelCfg = field(default_factory=ChannelCfg)
    latency_repeats: int = 30

    def __post_init__(self):
        super().__post_init__()
        check(1 <= self.latency_repeats <= 10000, "latency_repeats", self.latency_repeats, "an integer in 1..10000")
        check(1 <= len(self.widths) <= 6 and all(w >= 1 for w in self.widths), "widths", self.widths,
              "1 to 6 positive conv widths")
        from adaptlab.compress.prune import check_names
        from adaptlab.models.cnn import VGGNet

        check_names(VGGNet(self.widths), self.prune.layers, key="prune.layers")


def _pruned_copy(model, sparsities):
    from adaptlab.compress.prune import FineGrainedPruner

    m = copy.deepcopy(model)
    pruner = FineGrainedPruner(m, sparsities)
    pruner.apply()
    return m, pruner


def run(cfg: PruneMnistConfig, out_dir: Path, resume: bool = False) -> dict:
    from adaptlab.compress import channel as ch
    from adaptlab.compress import prune as pr
    from adaptlab.compress import sensitivity as sens
    from adaptlab.compress import size as sz
    from adaptlab.compress.torch_ref import torch_prune_masks
    from adaptlab.eval.metrics import accuracy
    from adaptlab.models.cnn import VGGNet

    stages = Stages(out_dir, resume)
    data = mnist_split(cfg.data, cfg.device)
    torch.manual_seed(cfg.seed)
    model = VGGNet(cfg.widths).to(cfg.device)
    base_train = train_stage(stages, "train", model, data, cfg.train, cfg.seed)
    names = cfg.prune.layers or pr.prunable_names(model)
    params = dict(model.named_parameters())
    sizes = {n: params[n].numel() for n in names}
    example = data.test_x[:64]
    res: dict = {"layers": names, "layer_sizes": sizes, "train_loss": mean_loss_curve(base_train["losses"])}
    res["dense"] = {"test_acc": accuracy(model, data.test_x, data.test_y),
                    "val_acc": accuracy(model, data.val_x, data.val_y), "params": ch.count_params(model),
                    "size_mib": sz.mib(sz.dense_bits(params)), "macs": ch.count_macs(model, example),
                    "macs_analytic": VGGNet.analytic_macs(cfg.widths)}
    res["histograms"] = {"dense": pr.weight_histograms({n: params[n] for n in names})}

    def scan(_checkpoint):
        t0 = time.perf_counter()
        curves = sens.sensitivity_scan(model, lambda m: accuracy(m, data.val_x, data.val_y), names,
                                       cfg.prune.grid, progress=lambda it: progress(it, desc="sensitivity"))
        return {"curves": curves, "seconds": time.perf_counter() - t0}

    res["scan"] = dict(stages.run("scan", scan), grid=list(cfg.prune.grid))
    allocs = {"sensitivity": sens.allocate_sparsity(res["scan"]["curves"], sizes, cfg.prune.grid,
                                                    cfg.prune.target),
              "uniform": sens.uniform_allocation(names, cfg.prune.target)}
    res["fine_grained"] = {}
    for kind, alloc in allocs.items():
        m, pruner = _pruned_copy(model, alloc)
        before = accuracy(m, data.test_x, data.test_y)
        ft = TrainCfg(steps=cfg.prune.finetune_steps, batch_size=cfg.train.batch_size,
                      lr=cfg.prune.finetune_lr, optimizer=cfg.train.optimizer,
                      checkpoint_every=cfg.train.checkpoint_every)
        out = train_stage(stages, f"finetune-{kind}", m, data, ft, cfg.seed + 1, after_step=pruner.apply)
        p = dict(m.named_parameters())
        res["fine_grained"][kind] = {
            "sparsities": alloc, "kept_fraction": sens.kept_fraction(alloc, sizes),
            "measured_sparsity": {n: pr.sparsity_of(p[n]) for n in names},
            "test_acc_before_finetune": before,
            "test_acc_after_finetune": accuracy(m, data.test_x, data.test_y),
            "size_mib": sz.mib(sz.sparse_bits(p)), "finetune_loss": mean_loss_curve(out["losses"])}
        if kind == "sensitivity":
            res["histograms"]["pruned"] = pr.weight_histograms({n: p[n] for n in names}, nonzero_only=True)
            pruned_fg = m
    ours = pr.masks_for(params, dict.fromkeys(names, cfg.prune.compare_sparsity))
    theirs = torch_prune_masks(model, dict.fromkeys(names, cfg.prune.compare_sparsity))
    res["torch_prune"] = {"sparsity": cfg.prune.compare_sparsity,
                          "mismatched_elements": {n: int((ours[n] != theirs[n]).sum()) for n in names}}
    res["channel"] = _channel_pruning(cfg, stages, model, data, example)
    lat = {"dense": latency_pair(model, example, cfg.latency_repeats),
           "fine_grained_pruned": latency_pair(pruned_fg, example, cfg.latency_repeats)}
    res["latency"] = lat
    return res


def _channel_pruning(cfg, stages, model, data, example) -> dict:
    from adaptlab.compress import channel as ch
    from adaptlab.compress import size as sz
    from adaptlab.eval.metrics import accuracy
    from adaptlab.models.cnn import VGGNet

    reordered = ch.reorder_channels(model)
    with torch.no_grad():
        reorder_diff = float((reordered(data.test_x[:256]) - model(data.test_x[:256])).abs().max())
    kept = [ch.kept_channels(w, cfg.channel.ratio) for w in cfg.widths]
    out = {"ratio": cfg.channel.ratio, "kept_widths": kept, "reorder_max_abs_output_change": reorder_diff}
    for imp in ("l2", "first"):
        m = ch.prune_channels(model, cfg.channel.ratio, imp)
        before = accuracy(m, data.test_x, data.test_y)
        ft = TrainCfg(steps=cfg.channel.finetune_steps, batch_size=cfg.train.batch_size,
                      lr=cfg.channel.finetune_lr, optimizer=cfg.train.optimizer,
                      checkpoint_every=cfg.train.checkpoint_every)
        train_stage(stages, f"channel-{imp}", m, data, ft, cfg.seed + 2)
        out[imp] = {"test_acc_before_finetune": before,
                    "test_acc_after_finetune": accuracy(m, data.test_x, data.test_y),
                    "params": ch.count_params(m), "macs": ch.count_macs(m, example),
                    "macs_analytic": VGGNet.analytic_macs(kept),
                    "size_mib": sz.mib(sz.dense_bits(dict(m.named_parameters())))}
        if imp == "l2":
            out["latency"] = latency_pair(m, example, cfg.latency_repeats)
    return out


# ------------------------------------------------------------------------------------------- report


def figures(res: dict, cfg: PruneMnistConfig, out_dir: Path) -> list[str]:
    import matplotlib.pyplot as plt

    names = res["layers"]
    fig, axes = plt.subplots(1, len(names), figsize=(3.0 * len(names), 2.8), squeeze=False, layout="constrained")
    for ax, n in zip(axes[0], names):
        for key, color, label in (("dense", "0.6", "dense"), ("pruned", "C3", "after pruning + fine-tune")):
            h = res["histograms"].get(key, {}).get(n)
            if h:
                ax.stairs(h["counts"], h["edges"], fill=key == "dense", color=color, label=label)
        ax.set_title(n.replace(".weight", ""), fontsize=9)
        ax.set_xlabel("weight value")
        ax.xaxis.set_major_locator(plt.MaxNLocator(4))
    axes[0][0].set_ylabel("count")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Weight histograms per layer (pruned: non-zeros only)")
    save_figure(fig, out_dir / "weight_histograms.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    for n in names:
        ax.plot(res["scan"]["grid"], [100 * a for a in res["scan"]["curves"][n]], "o-", ms=3, label=n)
    ax.axhline(100 * res["dense"]["val_acc"], color="k", ls=":", lw=1, label="dense")
    ax.set(xlabel="sparsity of this layer only", ylabel="validation accuracy (%)",
           title="Sensitivity scan: one layer pruned at a time")
    ax.legend(fontsize=7)
    save_figure(fig, out_dir / "sensitivity.png")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = torch.arange(len(names)).float()
    for i, kind in enumerate(("sensitivity", "uniform")):
        fg = res["fine_grained"][kind]
        acc = 100 * fg["test_acc_after_finetune"]
        ax.bar(x + 0.4 * i - 0.2, [fg["sparsities"][n] for n in names], 0.4,
               label=f"{kind} ({acc:.2f}% after fine-tune)")
    ax.set_xticks(x.tolist(), [n.replace(".weight", "") for n in names], fontsize=8)
    ax.set(ylabel="sparsity", ylim=(0, 1.05),
           title=f"Per-layer sparsity, {cfg.prune.target:.0%} of weights kept")
    ax.legend(fontsize=8)
    save_figure(fig, out_dir / "allocation.png")

    c = res["channel"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    labels = ["L2 ranking", "keep first"]
    for i, stage in enumerate(("test_acc_before_finetune", "test_acc_after_finetune")):
        bars = axes[0].bar([j + 0.4 * i for j in range(2)], [100 * c[k][stage] for k in ("l2", "first")], 0.4,
                           label=stage.replace("test_acc_", "").replace("_", " "))
        axes[0].bar_label(bars, fmt="%.1f", fontsize=7)
    axes[0].set_xticks([0.2, 1.2], labels)
    axes[0].set(ylabel="test accuracy (%)", ylim=(0, 118),
                title=f"Channel pruning, {c['ratio']:.0%} of channels removed")
    axes[0].legend(fontsize=8, loc="upper center", ncol=2)
    d = res["dense"]
    dense_lat = res["latency"]["dense"]
    vals = [(c["l2"]["macs"] / d["macs"], "MACs"), (c["l2"]["params"] / d["params"], "params"),
            (c["latency"]["batch64"]["median_ms"] / dense_lat["batch64"]["median_ms"], "time b64"),
            (c["latency"]["batch1"]["median_ms"] / dense_lat["batch1"]["median_ms"], "time b1")]
    axes[1].bar_label(axes[1].bar([v[1] for v in vals], [v[0] for v in vals], color="C2"), fmt="%.2f", fontsize=7)
    axes[1].axhline(1.0, color="k", lw=1, ls=":")
    axes[1].set(ylabel="pruned / dense", title="Cost after channel pruning (CPU, 1 thread)")
    save_figure(fig, out_dir / "channel_pruning.png")
    return ["weight_histograms.png", "sensitivity.png", "allocation.png", "channel_pruning.png"]


def summary(res: dict, cfg: PruneMnistConfig) -> str:
    d, fg, c, lat = res["dense"], res["fine_grained"], res["channel"], res["latency"]
    rows = ["| model | test acc before FT | test acc after FT | size (MiB) | MACs | latency b1 / b64 (ms) |",
            "|---|---|---|---|---|---|",
            f"| dense VGG | {100 * d['test_acc']:.2f}% | - | {d['size_mib']:.3f} | {d['macs']:,} | "
            f"{lat['dense']['batch1']['median_ms']:.2f} / {lat['dense']['batch64']['median_ms']:.1f} |"]
    for kind in ("sensitivity", "uniform"):
        f = fg[kind]
        rows.append(f"| fine-grained, {kind} allocation (keep {f['kept_fraction']:.0%}) | "
                    f"{100 * f['test_acc_before_finetune']:.2f}% | "
                    f"{100 * f['test_acc_after_finetune']:.2f}% | "
                    f"{f['size_mib']:.3f} | {d['macs']:,} (dense kernels) | - |")
    for imp, label in (("l2", "L2 ranking"), ("first", "keep-first")):
        m = c[imp]
        latency = (f"{c['latency']['batch1']['median_ms']:.2f} / {c['latency']['batch64']['median_ms']:.1f}"
                   if imp == "l2" else "-")
        rows.append(f"| channel {c['ratio']:.0%} removed, {label} | "
                    f"{100 * m['test_acc_before_finetune']:.2f}% | "
                    f"{100 * m['test_acc_after_finetune']:.2f}% | {m['size_mib']:.3f} | {m['macs']:,} | "
                    f"{latency} |")
    mism = sum(res["torch_prune"]["mismatched_elements"].values())
    sp = fg["sensitivity"]["sparsities"]
    alloc = ", ".join(f"{n.replace('.weight', '')}={sp[n]:.2f}" for n in res["layers"] if n in sp)  # network order
    return "\n".join(rows + [
        "",
        f"Sensitivity scan: {len(res['layers'])} layers x {len(res['scan']['grid'])} sparsities in "
        f"{res['scan']['seconds']:.1f} s. Chosen allocation: {alloc}.",
        f"Masks vs torch.nn.utils.prune.l1_unstructured at sparsity {res['torch_prune']['sparsity']}: "
        f"{mism} differing elements.",
        f"MACs counted {c['l2']['macs']:,} vs analytic {c['l2']['macs_analytic']:,}; reordering channels by "
        f"importance changes the outputs by at most {c['reorder_max_abs_output_change']:.2e}.",
        "", *_answers(res, cfg),
    ])


def _answers(res: dict, cfg: PruneMnistConfig) -> list[str]:
    """The lab's questions, answered from this run's numbers."""
    from adaptlab.compress.channel import kept_channels
    from adaptlab.models.cnn import VGGNet

    grid, curves, d, c = res["scan"]["grid"], res["scan"]["curves"], res["dense"], res["channel"]
    base = curves[res["layers"][0]][grid.index(0.0)] if 0.0 in grid else d["val_acc"]
    drop = {n: sum(base - a for a in curves[n]) / len(grid) for n in res["layers"]}  # mean over the grid
    ranked = sorted(drop, key=drop.get, reverse=True)
    hi = max(grid)
    most, least = ranked[0], ranked[-1]
    lat_d, lat_c = res["latency"]["dense"], c["latency"]
    lines = ["## Answers", "",
             f"- Most sensitive layer: **{most.replace('.weight', '')}** (mean accuracy drop over the scanned "
             f"sparsities {100 * drop[most]:.1f} points; at sparsity {hi:g} it keeps "
             f"{100 * curves[most][grid.index(hi)]:.1f}%); least sensitive: {least.replace('.weight', '')} "
             f"({100 * drop[least]:.1f} points, {100 * curves[least][grid.index(hi)]:.1f}% at {hi:g}). Order: "
             + " > ".join(n.replace(".weight", "") for n in ranked) + ".",
             f"- Channel pruning at {c['ratio']:.0%}: MACs x{c['l2']['macs'] / d['macs']:.3f} "
             f"({c['l2']['macs']:,} / {d['macs']:,}), parameters x{c['l2']['params'] / d['params']:.3f}, measured "
             f"latency x{lat_c['batch1']['median_ms'] / lat_d['batch1']['median_ms']:.2f} at batch 1 and "
             f"x{lat_c['batch64']['median_ms'] / lat_d['batch64']['median_ms']:.2f} at batch 64: the time falls "
             "by less than the MACs (per-layer overheads that do not shrink with the channels)."]
    for r in sorted({0.3, 0.5} - {c["ratio"]}):  # the lab's 30% (and 50%): exact MACs of the pruned shape
        macs = VGGNet.analytic_macs([kept_channels(w, r) for w in cfg.widths])
        lines.append(f"- At {r:.0%} (analytic, same architecture): MACs x{macs / d['macs']:.3f} ({macs:,}); "
                     f"accuracy and latency need a run with --set channel.ratio={r:g}.")
    return lines


EXPERIMENTS = [Experiment(
    name="prune-mnist",
    description="Fine-grained + channel pruning of a VGG-style CNN on MNIST: sensitivity scan, allocation, "
                "fine-tune",
    config_cls=PruneMnistConfig, run=run, figures=figures, summary=summary, check=check_mnist,
    quick={"data.train_size": 2000, "data.val_size": 300, "data.test_size": 500, "widths": [4, 8],
           "train.steps": 30, "train.batch_size": 64, "prune.grid": [0.0, 0.5, 0.9], "prune.finetune_steps": 5,
           "channel.finetune_steps": 5, "latency_repeats": 3},
)]
