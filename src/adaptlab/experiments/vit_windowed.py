"""Global vs Swin-style windowed attention, and bidirectional vs causal attention, in a ViT classifier.

One real MNIST digit (28 px) is pasted at a uniformly random place on a blank canvas that grows (64, 128, ...
px); a ViT of fixed depth classifies it. Variants at equal depth and width:

* ``global``: every patch attends to every patch, ``O(D (H/P)^4)`` per layer;
* ``windowed``: K x K-patch windows, odd blocks shifted by K/2, ``O(D (H/P)^2 K^2)``;
* ``causal``: global attention with a raster-order causal mask (token i sees 0..i), trained at the first
  canvas only: the "decoder-style" image encoder of HW 2 (a).

The patch embedding is by default the convolutional stem of Xiao et al. (``ViT(embed="conv")``: log2 P
stride-2 3 x 3 convolutions in place of one P x P patch convolution), which lets these small ViTs converge
within a few minutes of CPU; the grid stays H / P.

Training draws fresh placements of MNIST-train digits at every step (no image is seen twice), with Adam, a
linear warmup and a cosine decay (:func:`adaptlab.engine.cosine`). Each variant trains ``seeds`` times at the
first canvas (mean and Student-t 95% CI over seeds; the windowed - global and global - causal gaps are paired
by seed, which fixes the data stream) and ``seeds_large`` times at the larger ones. Cost is counted (forward FLOPs per
image, :func:`adaptlab.eval.flops.count_flops`) and timed (median forward CPU seconds of a batch, timings.json)
on canvases up to ``cost_sizes``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from adaptlab.config import BaseConfig, check
from adaptlab.engine import cosine, derive_seed, fit, make_optimizer
from adaptlab.io import progress
from adaptlab.runner import Experiment, Stages

VARIANTS = ("global", "windowed", "causal")


@dataclass
class TrainConfig:
    steps: int = 1200  # optimizer steps per model at the first canvas (1000: 92.6% global in a probe)
    steps_large: int = 300  # optimizer steps per model at the larger canvases (each ~3x dearer at 128 px)
    batch_size: int = 64  # images per step, each a fresh random placement
    lr: float = 3e-3  # Adam peak learning rate (1e-2 trained slower in a 1000-step probe)
    warmup: int = 100  # steps of linear warmup to lr, then cosine decay to 0 (engine.cosine)


@dataclass
class VitWindowedConfig(BaseConfig):
    RENAMED = {"steps": "train.steps", "batch_size": "train.batch_size", "lr": "train.lr"}  # docs/config.md

    canvases: list[int] = field(default_factory=lambda: [64, 128])  # canvas sides trained (multiples of patch * window)
    cost_sizes: list[int] = field(default_factory=lambda: [64, 128, 256, 512])  # canvas sides costed (no training)
    patch: int = 8  # patch side (64 px -> 8 x 8 tokens; a power of two for embed = "conv")
    window: int = 4  # K of the K x K windows (must divide every grid)
    dim: int = 32  # token width (d = 32, 2 heads: 2.7x cheaper per step than d = 64, 4 heads)
    depth: int = 4  # blocks (windowed: plain, shifted, ...; from 3 on every token sees the whole 8 x 8 grid)
    heads: int = 2  # attention heads
    stem: int = 0  # channels of a full-resolution 3x3 conv stem before the patch embedding (0: none)
    stem_depth: int = 1  # 3x3 convolutions (+ GELU) in that stem, at full resolution
    embed: str = "conv"  # patch embedding: "conv" (log2 P stride-2 3x3 convs, Xiao et al.) or "patch" (one P x P conv)
    pool: str = "mean"  # how the head pools the tokens: "mean" or "max"
    rel_pos: bool = False  # Swin's learned relative position bias in every block, every variant (False: none)
    n_train: int = 60000  # MNIST-train digits drawn from (placements are fresh at every step)
    n_test: int = 2000  # test images (digits from MNIST's test split, the same for every variant and seed)
    seeds: int = 3  # training seeds per variant at the first canvas (CIs over them)
    seeds_large: int = 1  # training seeds per variant at each larger canvas
    train: TrainConfig = field(default_factory=TrainConfig)
    timing_batch: int = 16  # images per timed forward pass

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.patch >= 1, "patch", self.patch, "a positive integer")  # before the sizes, which divide by them
        check(self.window >= 1, "window", self.window, "a positive integer")
        check(self.embed in ("patch", "conv"), "embed", self.embed, "'patch' or 'conv'")
        check(self.embed == "patch" or (self.patch >= 2 and self.patch & (self.patch - 1) == 0), "patch",
              self.patch, "a power of two >= 2 with embed='conv' (its stride-2 convolutions)")
        for key in ("canvases", "cost_sizes"):  # the image side must tile into patches, the grid into windows
            sizes = getattr(self, key)
            check(len(sizes) > 0 and all(s >= 28 and s % self.patch == 0 for s in sizes), key, sizes,
                  f"canvas sides >= 28 divisible by patch = {self.patch}")
            grids = [s // self.patch for s in sizes]
            check(all(self.window <= g for g in grids), "window", self.window,
                  f"at most the smallest patch grid, {min(grids)} (the grids of {key} = {sizes} are {grids})")
            check(all(g % self.window == 0 for g in grids), key, sizes,
                  f"canvas sides whose patch grids (side / patch = {grids}) window = {self.window} divides, i.e. "
                  f"multiples of patch * window = {self.patch * self.window}")
        check(1 <= self.heads <= 64, "heads", self.heads, "an integer in 1..64")
        check(4 <= self.dim <= 4096 and self.dim % (4 * self.heads) == 0, "dim", self.dim,
              f"a multiple of 4 * heads = {4 * self.heads}, at most 4096")
        check(1 <= self.depth <= 64, "depth", self.depth, "an integer in 1..64")
        check(0 <= self.stem <= 1024, "stem", self.stem, "0 (no stem) or a number of channels up to 1024")
        check(self.pool in ("mean", "max"), "pool", self.pool, "'mean' or 'max'")
        check(isinstance(self.rel_pos, bool), "rel_pos", self.rel_pos, "true or false")
        check(1 <= self.stem_depth <= 16, "stem_depth", self.stem_depth, "an integer in 1..16")
        check(1 <= self.n_train <= 60000, "n_train", self.n_train, "an integer in 1..60000")
        check(1 <= self.n_test <= 10000, "n_test", self.n_test, "an integer in 1..10000")
        check(1 <= self.seeds <= 100, "seeds", self.seeds, "an integer in 1..100")
        check(0 <= self.seeds_large <= 100, "seeds_large", self.seeds_large, "an integer in 0..100")
        t = self.train
        check(1 <= t.steps <= 10_000_000, "train.steps", t.steps, "an integer in 1..10000000")
        check(1 <= t.steps_large <= 10_000_000, "train.steps_large", t.steps_large, "an integer in 1..10000000")
        check(1 <= t.batch_size <= 65536, "train.batch_size", t.batch_size, "an integer in 1..65536")
        check(0 < t.lr <= 10, "train.lr", t.lr, "a positive number <= 10")
        check(0 <= t.warmup <= min(t.steps, t.steps_large), "train.warmup", t.warmup,
              f"an integer in 0..min(train.steps, train.steps_large) = {min(t.steps, t.steps_large)}")
        check(self.timing_batch >= 1, "timing_batch", self.timing_batch, "a positive integer")


def check_data(cfg: VitWindowedConfig) -> None:
    from adaptlab.data.mnist import load_mnist
    from adaptlab.errors import DataError

    load_mnist()
    if cfg.seeds > 1 or cfg.seeds_large > 1:
        try:
            import scipy  # noqa: F401
        except ImportError as e:
            raise DataError(f"seeds={cfg.seeds} needs scipy for its Student-t intervals; install it with: "
                            "pip install scipy") from e


def make_vit(variant: str, canvas: int, cfg: VitWindowedConfig):
    from adaptlab.models.vit import ViT

    return ViT(image_size=canvas, patch=cfg.patch, dim=cfg.dim, depth=cfg.depth, heads=cfg.heads,
               window=cfg.window if variant == "windowed" else None, causal=variant == "causal", n_classes=10,
               stem=cfg.stem, stem_depth=cfg.stem_depth, pool=cfg.pool, embed=cfg.embed, rel_pos=cfg.rel_pos)


def held_out_images(canvas: int, cfg: VitWindowedConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed test set of a canvas: MNIST-test digits at random places (the same for every model)."""
    from adaptlab.data.captions import paste_digit
    from adaptlab.data.mnist import load_mnist

    ds = load_mnist()
    return paste_digit(ds.test_x, ds.test_y, cfg.n_test, canvas, torch.Generator().manual_seed(
        derive_seed(cfg.seed, canvas % 1000)))


def train_one(variant: str, canvas: int, seed: int, cfg: VitWindowedConfig, checkpoint=None) -> dict:
    """Train one model on fresh placements; its test accuracy (%), last-50-step loss and CPU seconds."""
    from adaptlab.data.captions import paste_digit
    from adaptlab.data.mnist import load_mnist

    ds, dev = load_mnist(), cfg.device
    pool_x, pool_y = ds.train_x[:cfg.n_train], ds.train_y[:cfg.n_train]
    tx, ty = held_out_images(canvas, cfg)
    torch.manual_seed(derive_seed(cfg.seed, 100 + seed))  # the same init for every variant of a seed
    net = make_vit(variant, canvas, cfg).to(dev)
    gen = torch.Generator().manual_seed(derive_seed(cfg.seed, 200 + seed))  # the same data for every variant
    t = cfg.train
    steps = t.steps if canvas == cfg.canvases[0] else t.steps_large

    def batch(step: int):
        x, y = paste_digit(pool_x, pool_y, t.batch_size, canvas, gen)
        return x.to(dev), y.to(dev)

    cpu0 = time.process_time()
    hist = fit(lambda b: F.cross_entropy(net(b[0]), b[1]), batch, steps=steps,
               optimizer=make_optimizer(net.parameters(), "adam", t.lr),
               schedule=cosine(t.lr, steps, warmup=min(t.warmup, steps)), generator=gen, modules={"model": net},
               history={}, checkpoint=checkpoint, every=max(1, steps // 4), progress=progress,
               desc=f"{variant}@{canvas}#{seed}")
    cpu = time.process_time() - cpu0  # of this session only, if the stage was resumed
    net.eval()
    with torch.no_grad():
        pred = torch.cat([net(tx[i:i + 500].to(dev)).argmax(-1).cpu() for i in range(0, len(tx), 500)])
    tail = hist["loss"][-50:]
    return {"accuracy": 100 * float((pred == ty).float().mean()), "final_loss": sum(tail) / len(tail),
            "seconds": hist["seconds"], "cpu_seconds": cpu, "steps": steps}


def forward_cost(variant: str, canvas: int, cfg: VitWindowedConfig, repeats: int = 3) -> tuple[int, float]:
    """(counted forward FLOPs per image, median forward CPU seconds of a ``timing_batch`` batch)."""
    from adaptlab.eval.flops import count_flops

    torch.manual_seed(0)
    net = make_vit(variant, canvas, cfg).to(cfg.device).eval()
    x = torch.zeros(1, 1, canvas, canvas, device=cfg.device)
    clock = time.process_time if cfg.device == "cpu" else time.perf_counter
    with torch.no_grad():
        flops = count_flops(net, x)
        xb = x.expand(cfg.timing_batch, -1, -1, -1).contiguous()
        net(xb)  # warm-up
        ts = []
        for _ in range(repeats):
            t0 = clock()
            net(xb)
            if cfg.device.startswith("cuda"):
                torch.cuda.synchronize()
            ts.append(clock() - t0)
    return flops, sorted(ts)[len(ts) // 2]


def token_reach(variant: str, canvas: int, depth: int, cfg: VitWindowedConfig) -> dict:
    """How much of the patch grid each output token of ``depth`` blocks can see, measured with autograd.

    For every output token i of a randomly initialised stack of ``depth`` blocks, the input tokens j with a
    nonzero gradient d out_i / d in_j (summed over channels). Masked keys get exactly zero weight, so the
    pattern is the model's connectivity: one K x K window at depth 1 for ``windowed``, i + 1 raster tokens
    for ``causal``, the whole grid for ``global``.

    Returns: ``{"mean", "min", "max"}`` fraction of the G x G grid an output token sees, and ``"full"``, the
    fraction of output tokens that see all of it.
    """
    from adaptlab.models.vit import Block

    g = canvas // cfg.patch
    window = cfg.window if variant == "windowed" else None
    shift = 0 if window is None or window == g else window // 2
    torch.manual_seed(0)
    blocks = torch.nn.Sequential(*[Block(cfg.dim, cfg.heads, g, window, shift if i % 2 else 0, 2.0,
                                         variant == "causal", cfg.rel_pos) for i in range(depth)]).double()
    x = torch.randn(1, g, g, cfg.dim, dtype=torch.float64, requires_grad=True)
    y = blocks(x).reshape(g * g, cfg.dim)  # (N, D)
    seen = torch.stack([torch.autograd.grad(y[i].sum(), x, retain_graph=True)[0].abs().sum(-1).flatten() > 0
                        for i in range(g * g)])  # (N out, N in)
    frac = seen.double().mean(1)  # (N,)
    return {"mean": float(frac.mean()), "min": float(frac.min()), "max": float(frac.max()),
            "full": float(seen.all(1).double().mean())}


def jobs(cfg: VitWindowedConfig) -> list[tuple[str, int, int]]:
    """(variant, canvas, seed) of every model, in training order."""
    c0 = cfg.canvases[0]
    out = [(v, c0, s) for s in range(cfg.seeds) for v in VARIANTS]
    return out + [(v, c, s) for c in cfg.canvases[1:] for s in range(cfg.seeds_large) for v in ("global", "windowed")]


def _mean_ci(values: list[float]) -> dict:
    """Mean and Student-t 95% half-width over a few seeds (t_{0.975, 2} = 4.30 for 3 seeds, not 1.96)."""
    from adaptlab.eval.stats import mean_t_ci95

    if len(values) == 1:  # no spread to estimate: a CI of 0 rather than NaN (results hold no NaN)
        return {"mean": float(values[0]), "ci95": 0.0, "n": 1}
    mean, half = mean_t_ci95(values)
    return {"mean": mean, "ci95": half, "n": len(values)}


def run(cfg: VitWindowedConfig, out_dir: Path, resume: bool = False) -> dict:
    stages = Stages(out_dir, resume)
    per: dict[str, dict[str, list[float]]] = {}
    loss: dict[str, dict[str, list[float]]] = {}
    cpu: dict[str, dict[str, list[float]]] = {}
    step_s: dict[str, dict[str, float]] = {}
    for v, c, s in progress(jobs(cfg), desc="models"):
        rec = stages.run(f"{v}@{c}#{s}", train_one, v, c, s, cfg)
        per.setdefault(v, {}).setdefault(str(c), []).append(rec["accuracy"])
        loss.setdefault(v, {}).setdefault(str(c), []).append(rec["final_loss"])
        cpu.setdefault(v, {}).setdefault(str(c), []).append(rec["cpu_seconds"])
        step_s.setdefault(v, {})[str(c)] = rec["seconds"] / rec["steps"]
    acc = {v: {c: _mean_ci(a) for c, a in d.items()} for v, d in per.items()}
    c0 = str(cfg.canvases[0])
    paired = {"windowed - global": [w - g for w, g in zip(per["windowed"][c0], per["global"][c0])],
              "global - causal": [g - c for g, c in zip(per["global"][c0], per["causal"][c0])]}
    cost: dict[str, dict[str, int]] = {}
    fwd: dict[str, dict[str, float]] = {}
    for v in ("global", "windowed"):
        for c in cfg.cost_sizes:
            flops, sec = forward_cost(v, c, cfg)
            cost.setdefault(v, {})[str(c)] = flops
            fwd.setdefault(v, {})[str(c)] = sec
    reach = {v: {str(d): token_reach(v, cfg.canvases[0], d, cfg) for d in range(1, max(cfg.depth, 4) + 1)}
             for v in VARIANTS}
    return {"accuracy": {v: {c: a["mean"] for c, a in d.items()} for v, d in acc.items()},
            "accuracy_ci95": {v: {c: a["ci95"] for c, a in d.items()} for v, d in acc.items()},
            "accuracy_seeds": per, "final_loss": loss,
            "paired_gap": {k: {**_mean_ci(d), "per_seed": d} for k, d in paired.items()},
            "reach": reach, "cost": cost, "tokens": {str(c): (c // cfg.patch) ** 2 for c in cfg.cost_sizes},
            "timings": {"forward_cpu_seconds": fwd, "train_seconds_per_step": step_s, "train_cpu_seconds": cpu}}


def figures(results: dict, cfg: VitWindowedConfig, out_dir: Path) -> list[str]:
    from adaptlab.io import save_figure
    from adaptlab.viz.vit import vit_accuracy_figure, vit_cost_figure

    save_figure(vit_accuracy_figure(results), out_dir / "accuracy.png")
    save_figure(vit_cost_figure(results), out_dir / "cost.png")
    return ["accuracy.png", "cost.png"]


def _acc(results: dict, v: str, c: str) -> str:
    if c not in results["accuracy"].get(v, {}):
        return "—"
    n = len(results["accuracy_seeds"][v][c])
    ci = results["accuracy_ci95"][v][c]
    return f"{results['accuracy'][v][c]:.1f}%" + (f" ± {ci:.1f} ({n} seeds)" if n > 1 else " (1 seed)")


def summary(results: dict, cfg: VitWindowedConfig) -> str:
    acc, cost = results["accuracy"], results["cost"]
    fwd = results.get("timings", {}).get("forward_cpu_seconds", {})
    c0 = str(cfg.canvases[0])
    t = cfg.train
    lines = [f"One real MNIST digit at a random place on a growing canvas; ViT with patch {cfg.patch}, "
             f"{cfg.depth} blocks, d = {cfg.dim}, {cfg.heads} heads"
             + (f", a 3x3 conv stem of {cfg.stem} channels" if cfg.stem else "")
             + (f", a convolutional patch embedding ({cfg.patch.bit_length() - 1} stride-2 3x3 convolutions)"
                if cfg.embed == "conv" else "")
             + (", a learned relative position bias in every block (Swin)" if cfg.rel_pos else "")
             + f". Adam, peak lr {t.lr:g}, {t.warmup} warmup steps then cosine decay, batch {t.batch_size} of "
             f"fresh placements of the first {cfg.n_train} MNIST-train digits; {t.steps} steps at {c0} px "
             f"({cfg.seeds} seeds), {t.steps_large} at larger canvases ({cfg.seeds_large} seed(s)); accuracy on "
             f"{cfg.n_test} MNIST-test images per canvas, ± the Student-t 95% CI over seeds. Windowed: "
             f"{cfg.window}x{cfg.window}-patch windows, odd blocks shifted.", "",
             "| canvas (px) | tokens | global acc. | windowed acc. | global GFLOPs / image | windowed GFLOPs / image "
             "| FLOPs ratio | forward CPU-time ratio (global / windowed) |", "|---|---|---|---|---|---|---|---|"]
    for c in cfg.cost_sizes:
        s = str(c)
        fg, fw = cost["global"][s], cost["windowed"][s]
        tr = f"{fwd['global'][s] / fwd['windowed'][s]:.2f}" if fwd else "—"
        lines.append(f"| {c} | {results['tokens'][s]} | {_acc(results, 'global', s)} | "
                     f"{_acc(results, 'windowed', s)} | {fg / 1e9:.4f} | {fw / 1e9:.4f} | {fg / fw:.2f} | {tr} |")
    gap = results["paired_gap"]
    wg, gc = gap["windowed - global"], gap["global - causal"]
    lines += ["", f"**Windowed vs global at {c0} px**: {acc['windowed'][c0]:.1f}% vs {acc['global'][c0]:.1f}%; "
              f"paired by seed, windowed - global = {wg['mean']:+.1f} ± {wg['ci95']:.1f} points "
              f"(per seed: {', '.join(f'{d:+.1f}' for d in wg['per_seed'])})."]
    if "reach" in results:
        r, g = results["reach"]["windowed"], cfg.canvases[0] // cfg.patch
        full = min((int(d) for d in r if r[d]["full"] == 1.0), default=None)
        ds = sorted(r, key=int)
        mean = " / ".join(f"{100 * r[d]['mean']:.0f}" for d in ds)
        whole = " / ".join(f"{100 * r[d]['full']:.0f}" for d in ds)
        lines.append(f"Receptive field of the windowed blocks on the {g}x{g} grid (autograd): after "
                     f"{' / '.join(ds)} blocks a token sees on average {mean}% of the grid, and {whole}% of "
                     "tokens see all of it"
                     + (f" (all from {full} blocks on)" if full else "") + f"; this model has {cfg.depth}.")
    cheaper = [c for c in cfg.cost_sizes if cost["windowed"][str(c)] < cost["global"][str(c)]]
    if cheaper:
        lines.append(f"Windowed attention counts fewer FLOPs from {cheaper[0]} px up.")
    faster = [c for c in cfg.cost_sizes if fwd and fwd["windowed"][str(c)] < fwd["global"][str(c)]]
    if faster:
        lines.append(f"Its forward pass takes less CPU time from {faster[0]} px up (at these sizes).")
    lines += ["", f"**Encoder vs decoder** (HW 2 a), at {c0} px: bidirectional (global) attention "
              f"{_acc(results, 'global', c0)} vs raster-causal attention {_acc(results, 'causal', c0)}; paired by "
              f"seed, global - causal = {gc['mean']:+.1f} ± {gc['ci95']:.1f} points "
              f"({'bidirectional' if gc['mean'] >= 0 else 'causal'} ahead; per seed: "
              f"{', '.join(f'{d:+.1f}' for d in gc['per_seed'])})."]
    if max(acc["global"][c0], acc["causal"][c0]) < 90:
        lines.append(f"These models are far from converged ({t.steps} steps): read the gaps as this training "
                     "budget's, not as the architectures' limits.")
    return "\n".join(lines)


QUICK = {"canvases": [32], "cost_sizes": [32, 64], "window": 2, "dim": 16, "heads": 2, "depth": 2, "n_train": 256,
         "n_test": 64, "seeds": 2, "train.steps": 6, "train.steps_large": 6, "train.warmup": 2,
         "train.batch_size": 16, "timing_batch": 2}

EXPERIMENTS = [Experiment(
    "vit-windowed", "ViT on a digit at a random place on a growing canvas: global vs shifted-window attention "
    "(accuracy over seeds, FLOPs, CPU time) and bidirectional vs causal attention", VitWindowedConfig, run,
    figures, summary, quick=QUICK, check=check_data)]
