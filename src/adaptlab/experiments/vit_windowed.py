"""Global vs Swin-style windowed attention, and bidirectional vs causal attention, in a ViT classifier.

One real MNIST digit (28 px) is pasted at a uniformly random place on a blank canvas that grows (56, 112, ...
px); a ViT of fixed depth classifies it. Variants at equal depth and width:

* ``global``: every patch attends to every patch, ``O(D (H/P)^4)`` per layer;
* ``windowed``: K x K-patch windows, odd blocks shifted by K/2, ``O(D (H/P)^2 K^2)``;
* ``causal``: global attention with a raster-order causal mask (token i sees 0..i), trained at the first
  canvas only: the "decoder-style" image encoder of HW 2 (a).

Cost is counted (forward FLOPs per image, :func:`adaptlab.eval.flops.count_flops`) and timed
(median forward seconds of a batch, timings.json) on canvases up to ``cost_sizes``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from adaptlab.config import BaseConfig, check
from adaptlab.engine import cosine, fit, make_optimizer
from adaptlab.io import progress
from adaptlab.runner import Experiment, Stages

VARIANTS = ("global", "windowed", "causal")


@dataclass
class TrainConfig:
    steps: int = 600  # optimizer steps per model
    batch_size: int = 64  # images per step
    lr: float = 2e-3  # Adam peak learning rate (cosine decay to 0)


@dataclass
class VitWindowedConfig(BaseConfig):
    RENAMED = {"steps": "train.steps", "batch_size": "train.batch_size", "lr": "train.lr"}  # docs/config.md

    canvases: list[int] = field(default_factory=lambda: [56, 112])  # canvas sides trained (multiples of patch * window)
    cost_sizes: list[int] = field(default_factory=lambda: [56, 112, 224, 448])  # canvas sides costed (no training)
    patch: int = 7  # patch side (56 px -> 8 x 8 tokens)
    window: int = 4  # K of the K x K windows (must divide every grid)
    dim: int = 64  # token width
    depth: int = 2  # blocks (windowed: one plain, one shifted)
    heads: int = 4  # attention heads
    n_train: int = 10000  # training images (digits from MNIST's training split)
    n_test: int = 2000  # test images (digits from MNIST's test split)
    train: TrainConfig = field(default_factory=TrainConfig)
    timing_batch: int = 16  # images per timed forward pass

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.patch >= 1, "patch", self.patch, "a positive integer")  # before the sizes, which divide by them
        check(self.window >= 1, "window", self.window, "a positive integer")
        for key in ("canvases", "cost_sizes"):
            sizes = getattr(self, key)
            check(len(sizes) > 0 and all(s >= 28 and s % (self.patch * self.window) == 0 for s in sizes), key,
                  sizes, f"canvas sides >= 28 divisible by patch * window = {self.patch * self.window}")
        check(1 <= self.heads <= 64, "heads", self.heads, "an integer in 1..64")
        check(4 <= self.dim <= 4096 and self.dim % (4 * self.heads) == 0, "dim", self.dim,
              f"a multiple of 4 * heads = {4 * self.heads}, at most 4096")
        check(1 <= self.depth <= 64, "depth", self.depth, "an integer in 1..64")
        check(1 <= self.n_train <= 60000, "n_train", self.n_train, "an integer in 1..60000")
        check(1 <= self.n_test <= 10000, "n_test", self.n_test, "an integer in 1..10000")
        t = self.train
        check(1 <= t.steps <= 10_000_000, "train.steps", t.steps, "an integer in 1..10000000")
        check(1 <= t.batch_size <= 65536, "train.batch_size", t.batch_size, "an integer in 1..65536")
        check(0 < t.lr <= 10, "train.lr", t.lr, "a positive number <= 10")
        check(self.timing_batch >= 1, "timing_batch", self.timing_batch, "a positive integer")


def check_data(cfg: VitWindowedConfig) -> None:
    from adaptlab.data.mnist import load_mnist

    load_mnist()


def make_vit(variant: str, canvas: int, cfg: VitWindowedConfig):
    from adaptlab.models.vit import ViT

    return ViT(image_size=canvas, patch=cfg.patch, dim=cfg.dim, depth=cfg.depth, heads=cfg.heads,
               window=cfg.window if variant == "windowed" else None, causal=variant == "causal", n_classes=10)


def train_one(variant: str, canvas: int, cfg: VitWindowedConfig, index: int, checkpoint=None) -> dict:
    from adaptlab.data.captions import paste_digit
    from adaptlab.data.mnist import load_mnist

    ds, dev = load_mnist(), cfg.device
    g = torch.Generator().manual_seed(cfg.seed * 1000 + canvas)  # the same images for every variant
    x, y = paste_digit(ds.train_x, ds.train_y, cfg.n_train, canvas, g)
    tx, ty = paste_digit(ds.test_x, ds.test_y, cfg.n_test, canvas, g)
    x, y, tx, ty = x.to(dev), y.to(dev), tx.to(dev), ty.to(dev)
    torch.manual_seed(cfg.seed * 100 + index)
    net = make_vit(variant, canvas, cfg).to(dev)
    gen = torch.Generator().manual_seed(cfg.seed * 100 + 50 + index)

    def batch(step: int):
        idx = torch.randint(0, len(x), (cfg.train.batch_size,), generator=gen).to(dev)
        return x[idx], y[idx]

    t = cfg.train
    hist = fit(lambda b: F.cross_entropy(net(b[0]), b[1]), batch, steps=t.steps,
               optimizer=make_optimizer(net.parameters(), "adam", t.lr), schedule=cosine(t.lr, t.steps),
               generator=gen, modules={"model": net}, history={}, checkpoint=checkpoint,
               every=max(1, cfg.train.steps // 4), progress=progress, desc=f"{variant}@{canvas}")
    net.eval()
    with torch.no_grad():
        pred = torch.cat([net(tx[i:i + 500]).argmax(-1) for i in range(0, len(tx), 500)])
    return {"accuracy": 100 * float((pred == ty).float().mean()), "final_loss": float(hist["loss"][-1]),
            "seconds": hist["seconds"]}


def forward_cost(variant: str, canvas: int, cfg: VitWindowedConfig, repeats: int = 3) -> tuple[int, float]:
    """(counted forward FLOPs per image, median forward seconds of a ``timing_batch`` batch)."""
    from adaptlab.eval.flops import count_flops

    torch.manual_seed(0)
    net = make_vit(variant, canvas, cfg).to(cfg.device).eval()
    x = torch.zeros(1, 1, canvas, canvas, device=cfg.device)
    with torch.no_grad():
        flops = count_flops(net, x)
        xb = x.expand(cfg.timing_batch, -1, -1, -1).contiguous()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            net(xb)
            ts.append(time.perf_counter() - t0)
    return flops, sorted(ts)[len(ts) // 2]


def run(cfg: VitWindowedConfig, out_dir: Path, resume: bool = False) -> dict:
    stages = Stages(out_dir, resume)
    jobs = [(v, c) for c in cfg.canvases for v in ("global", "windowed")] + [("causal", cfg.canvases[0])]
    acc: dict[str, dict[str, float]] = {}
    train_s: dict[str, dict[str, float]] = {}
    for i, (v, c) in enumerate(progress(jobs, desc="models")):
        rec = stages.run(f"{v}@{c}", train_one, v, c, cfg, i)
        acc.setdefault(v, {})[str(c)] = rec["accuracy"]
        train_s.setdefault(v, {})[str(c)] = rec["seconds"] / cfg.train.steps
    cost: dict[str, dict[str, int]] = {}
    fwd: dict[str, dict[str, float]] = {}
    for v in ("global", "windowed"):
        for c in cfg.cost_sizes:
            flops, sec = forward_cost(v, c, cfg)
            cost.setdefault(v, {})[str(c)] = flops
            fwd.setdefault(v, {})[str(c)] = sec
    return {"accuracy": acc, "cost": cost, "tokens": {str(c): (c // cfg.patch) ** 2 for c in cfg.cost_sizes},
            "timings": {"forward_seconds": fwd, "train_seconds_per_step": train_s}}


def figures(results: dict, cfg: VitWindowedConfig, out_dir: Path) -> list[str]:
    from adaptlab.io import save_figure
    from adaptlab.viz.vit import vit_accuracy_figure, vit_cost_figure

    save_figure(vit_accuracy_figure(results), out_dir / "accuracy.png")
    save_figure(vit_cost_figure(results), out_dir / "cost.png")
    return ["accuracy.png", "cost.png"]


def summary(results: dict, cfg: VitWindowedConfig) -> str:
    acc, cost = results["accuracy"], results["cost"]
    fwd = results.get("timings", {}).get("forward_seconds", {})
    c0 = str(cfg.canvases[0])
    lines = [f"One real MNIST digit at a random place on a growing canvas; ViT with patch {cfg.patch}, "
             f"{cfg.depth} blocks, d = {cfg.dim}, {cfg.train.steps} steps on {cfg.n_train} MNIST-train images, "
             f"accuracy on {cfg.n_test} MNIST-test images. Windowed: {cfg.window}x{cfg.window}-patch windows, "
             "odd blocks shifted.", "",
             "| canvas (px) | tokens | global acc. | windowed acc. | global GFLOPs / image | windowed GFLOPs / image "
             "| FLOPs ratio | forward time ratio (global / windowed) |", "|---|---|---|---|---|---|---|---|"]
    for c in cfg.cost_sizes:
        s = str(c)
        ga, wa = acc.get("global", {}).get(s), acc.get("windowed", {}).get(s)
        fg, fw = cost["global"][s], cost["windowed"][s]
        tr = fwd["global"][s] / fwd["windowed"][s] if fwd else float("nan")
        lines.append(f"| {c} | {results['tokens'][s]} | {'—' if ga is None else f'{ga:.1f}%'} | "
                     f"{'—' if wa is None else f'{wa:.1f}%'} | {fg / 1e9:.4f} | {fw / 1e9:.4f} | {fg / fw:.2f} | "
                     f"{tr:.2f} |")
    lines += ["", f"**Windowed vs global at {c0} px**: {acc['windowed'][c0]:.1f}% vs {acc['global'][c0]:.1f}% "
              f"({acc['windowed'][c0] - acc['global'][c0]:+.1f} points)."]
    cheaper = [c for c in cfg.cost_sizes if cost["windowed"][str(c)] < cost["global"][str(c)]]
    if cheaper:
        lines.append(f"Windowed attention counts fewer FLOPs from {cheaper[0]} px up.")
    gc, cc = acc["global"][c0], acc["causal"][c0]
    lines += ["", f"**Encoder vs decoder** (HW 2 a), at {c0} px: bidirectional (global) attention {gc:.1f}% vs "
              f"raster-causal attention {cc:.1f}% ({gc - cc:+.1f} points; "
              f"{'bidirectional' if gc >= cc else 'causal'} ahead)."]
    if max(gc, cc) < 90:
        lines.append(f"All models here are far from converged (one seed, {cfg.train.steps} steps): read the gaps as "
                     "this training budget's, not as the architectures' limits.")
    return "\n".join(lines)


QUICK = {"canvases": [28], "cost_sizes": [28, 56], "window": 2, "dim": 16, "heads": 2, "n_train": 256,
         "n_test": 64, "train.steps": 6, "train.batch_size": 16, "timing_batch": 2}

EXPERIMENTS = [Experiment(
    "vit-windowed", "ViT on a digit at a random place on a growing canvas: global vs shifted-window attention "
    "(accuracy, FLOPs, time) and bidirectional vs causal attention", VitWindowedConfig, run, figures, summary,
    quick=QUICK, check=check_data)]
