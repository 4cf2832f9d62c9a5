"""Sinusoid regression (MAML paper, sec. 5.1): MAML, first-order MAML and a jointly pretrained baseline.

For each K in ``shots`` three copies of the 1-40-40-1 ReLU network (same initialization) are trained with
Adam: MAML (second order) and FOMAML on the query loss after ``inner_steps`` inner steps of size ``inner_lr``
on K support points, and a baseline on the plain regression loss over all sampled tasks jointly. Each is then
adapted to the same ``eval_tasks`` held-out sinusoids with 0..``eval_steps`` gradient steps (same step size)
on K points and scored by MSE on ``eval_points`` fresh points, with normal 95% confidence intervals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from adaptlab.config import BaseConfig, check
from adaptlab.engine import derive_seed, fit, make_optimizer
from adaptlab.eval.stats import mean_ci95
from adaptlab.io import progress, save_figure
from adaptlab.meta.maml import MAML, adapt_tasks
from adaptlab.models.mlp import MLP
from adaptlab.runner import Experiment, Stages
from adaptlab.tasks.sinusoid import SinusoidTasks

METHODS = ("maml", "fomaml", "pretrained")
LABELS = {"maml": "MAML", "fomaml": "first-order MAML", "pretrained": "pretrained jointly"}
COLORS = {"maml": "tab:blue", "fomaml": "tab:green", "pretrained": "tab:orange"}


@dataclass
class TrainConfig:
    steps: int = 15000  # meta-steps; the paper runs 70000, the gap MAML vs pretrained is clear well before that
    lr: float = 1e-3  # Adam
    tasks_per_step: int = 25
    checkpoint_every: int = 1000

    def __post_init__(self) -> None:
        check(self.steps >= 0, "train.steps", self.steps, "a non-negative integer")
        check(self.lr > 0, "train.lr", self.lr, "a positive number")
        for key in ("tasks_per_step", "checkpoint_every"):
            check(getattr(self, key) >= 1, f"train.{key}", getattr(self, key), "a positive integer")


@dataclass
class SinusoidConfig(BaseConfig):
    RENAMED = {"meta_steps": "train.steps", "outer_lr": "train.lr", "tasks_per_step": "train.tasks_per_step",
               "checkpoint_every": "train.checkpoint_every"}  # before the one vocabulary (docs/config.md)

    shots: list[int] = field(default_factory=lambda: [5, 10])
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    hidden: list[int] = field(default_factory=lambda: [40, 40])
    inner_lr: float = 0.01
    inner_steps: int = 1  # inner steps during meta-training (the paper's sinusoid setting)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval_tasks: int = 600
    eval_steps: int = 10
    eval_points: int = 100
    plot_tasks: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        check(len(self.shots) > 0 and all(1 <= k <= 99 for k in self.shots), "shots", self.shots,
              "a non-empty list of integers in 1..99, e.g. 5,10 (each K seeds its own stream)")
        bad = [m for m in self.methods if m not in METHODS]
        check(len(self.methods) > 0 and not bad, "methods", self.methods, f"a non-empty subset of {METHODS}")
        check(len(self.hidden) > 0 and all(h >= 1 for h in self.hidden), "hidden", self.hidden,
              "a non-empty list of positive widths")
        check(0 < self.inner_lr <= 100, "inner_lr", self.inner_lr, "a positive number <= 100")
        for key in ("inner_steps", "eval_steps"):
            check(0 <= getattr(self, key) <= 1000, key, getattr(self, key), "an integer in 0..1000")
        check(0 <= self.plot_tasks <= min(self.eval_tasks, 20), "plot_tasks", self.plot_tasks,
              "an integer in 0..min(eval_tasks, 20)")
        for key in ("eval_tasks", "eval_points"):
            check(1 <= getattr(self, key) <= 100_000, key, getattr(self, key), "an integer in 1..100000")
        check(self.eval_tasks >= 2, "eval_tasks", self.eval_tasks, "an integer >= 2 (for the confidence interval)")


def _model(cfg: SinusoidConfig) -> MLP:
    torch.manual_seed(cfg.seed)  # every method and K starts from the same initialization
    return MLP((1, *cfg.hidden, 1)).to(cfg.device)


def train_one(cfg: SinusoidConfig, k: int, method: str, checkpoint=None) -> dict:
    """Train one (K, method) model with :func:`~adaptlab.engine.fit`; ``checkpoint`` is its stage of the run."""
    model = _model(cfg)
    maml = MAML(model, F.mse_loss, cfg.inner_lr, cfg.inner_steps, first_order=method == "fomaml")
    gen = torch.Generator().manual_seed(derive_seed(cfg.seed, 10 * k + METHODS.index(method)))
    tasks = SinusoidTasks(device=cfg.device)

    def step(b):
        if method == "pretrained":  # the regression loss of all sampled points, no adaptation
            x, y = torch.cat([b.support_x, b.query_x], 1), torch.cat([b.support_y, b.query_y], 1)
            return F.mse_loss(model(x.reshape(-1, 1)), y.reshape(-1, 1))
        return maml.loss(b)[0]

    hist = fit(step, lambda _: tasks.sample(cfg.train.tasks_per_step, gen, n_support=k, n_query=k),
               steps=cfg.train.steps, optimizer=make_optimizer(model.parameters(), "adam", cfg.train.lr), generator=gen,
               modules={"model": model}, checkpoint=checkpoint, progress=progress, desc=f"{method}-{k}")
    return {"model": model.state_dict(), "train_loss": hist["loss"]}


def evaluate(cfg: SinusoidConfig, k: int, model: MLP) -> dict:
    """MSE after 0..eval_steps steps on the held-out tasks (mean, 95% CI) and adapted fits for plotting."""
    gen = torch.Generator().manual_seed(cfg.seed + 1 + k)  # the same held-out tasks for every method
    b = SinusoidTasks(device=cfg.device).sample(cfg.eval_tasks, gen, n_support=k, n_query=cfg.eval_points)
    params, buffers = dict(model.named_parameters()), dict(model.named_buffers())
    out = adapt_tasks(params, buffers, b.support_x, b.support_y, model=model, loss_fn=F.mse_loss,
                      steps=cfg.eval_steps, lr=cfg.inner_lr, x_eval=b.query_x, y_eval=b.query_y)
    stats = [mean_ci95(out["loss"][:, s]) for s in range(cfg.eval_steps + 1)]
    p = cfg.plot_tasks
    grid = torch.linspace(-5, 5, 200, device=cfg.device).view(1, -1, 1).expand(p, -1, -1)
    fits = adapt_tasks(params, buffers, b.support_x[:p], b.support_y[:p], model=model, loss_fn=F.mse_loss,
                       steps=cfg.eval_steps, lr=cfg.inner_lr, x_eval=grid)["pred"]  # (p, steps + 1, 200, 1)
    truth = b.amplitude[:p, None] * torch.sin(grid[..., 0] - b.phase[:p, None])  # (p, 200)
    return {"mse": [s[0] for s in stats], "ci95": [s[1] for s in stats], "fits": fits[..., 0].tolist(),
            "support": (b.support_x[:p, :, 0].tolist(), b.support_y[:p, :, 0].tolist()),
            "truth": truth.tolist(), "grid": grid[0, :, 0].tolist()}


def run(cfg: SinusoidConfig, out_dir: Path, resume: bool = False) -> dict:
    stages = Stages(out_dir, resume, every=cfg.train.checkpoint_every)
    results: dict = {"steps": list(range(cfg.eval_steps + 1)), "shots": {}}
    for k in cfg.shots:
        per = results["shots"].setdefault(str(k), {})
        for method in cfg.methods:
            done = stages.run(f"{method}-{k}", train_one, cfg, k, method)
            model = _model(cfg)
            model.load_state_dict(done["model"])
            ev = evaluate(cfg, k, model)
            stride = max(1, len(done["train_loss"]) // 200)  # keep results.json small
            ev["train_loss"] = done["train_loss"][::stride]
            ev["train_loss_stride"] = stride
            per[method] = ev
    return results


def figures(results: dict, cfg: SinusoidConfig, out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    shots = list(results["shots"])
    fig, axes = plt.subplots(1, len(shots), figsize=(6 * len(shots), 4.2), squeeze=False)
    for ax, k in zip(axes[0], shots):
        for m, r in results["shots"][k].items():
            ax.errorbar(results["steps"], r["mse"], yerr=r["ci95"], fmt="-o", ms=3, capsize=3, color=COLORS[m],
                        label=LABELS[m])
        ax.set(title=f"K = {k} shots, {cfg.eval_tasks} held-out tasks", xlabel="test-time gradient steps",
               ylabel="query MSE (mean ± 95% CI)", yscale="log")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    save_figure(fig, out_dir / "mse_vs_steps.png")

    p = min(cfg.plot_tasks, 3)
    names = ["mse_vs_steps.png"]
    if p > 0:
        fig, axes = plt.subplots(len(shots), p, figsize=(5 * p, 3.6 * len(shots)), squeeze=False)
        last = cfg.eval_steps
        for row, k in zip(axes, shots):
            rk = results["shots"][k]
            any_r = next(iter(rk.values()))
            for t, ax in enumerate(row):
                ax.plot(any_r["grid"], any_r["truth"][t], "k-", lw=2, label="truth")
                for m, r in rk.items():
                    ax.plot(r["grid"], r["fits"][t][last], color=COLORS[m], label=f"{LABELS[m]}, {last} steps")
                    if m == "maml":
                        ax.plot(r["grid"], r["fits"][t][0], ":", color=COLORS[m], label="MAML, before adapting")
                ax.plot(*[v[t] for v in any_r["support"]], "^", color="tab:red", ms=7, label=f"{k} support points")
                ax.set(title=f"K = {k}, held-out task {t}", xlabel="x", ylabel="y = A sin(x − φ)")
                ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=7)
        save_figure(fig, out_dir / "adapted_functions.png")
        names.append("adapted_functions.png")

    fig, ax = plt.subplots(figsize=(7, 4))
    for k in shots:
        for m, r in results["shots"][k].items():
            x = [i * r["train_loss_stride"] + 1 for i in range(len(r["train_loss"]))]
            ax.plot(x, r["train_loss"], color=COLORS[m], lw=0.8, ls="-" if k == shots[-1] else "--",
                    label=f"{LABELS[m]}, K={k}")
    ax.set(xlabel="meta-step", ylabel="training loss (query MSE / joint MSE)", yscale="log")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    save_figure(fig, out_dir / "training.png")
    return names + ["training.png"]


def summary(results: dict, cfg: SinusoidConfig) -> str:
    s = cfg.eval_steps
    lines = [f"Sinusoid regression, {cfg.train.steps} meta-steps of {cfg.train.tasks_per_step} tasks, inner lr "
             f"{cfg.inner_lr} ({cfg.inner_steps} inner step(s) in training). Query MSE on {cfg.eval_tasks} "
             "held-out tasks, mean ± 95% CI.", "",
             f"| K | method | 0 steps | 1 step | {s} steps |", "|---|---|---|---|---|"]
    for k, per in results["shots"].items():
        for m, r in per.items():
            cells = [f"{r['mse'][i]:.3f} ± {r['ci95'][i]:.3f}" for i in (0, min(1, s), s)]
            lines.append(f"| {k} | {LABELS[m]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


EXPERIMENTS = [
    Experiment("sinusoid-maml", "Sinusoid regression: MAML vs first-order MAML vs a jointly pretrained network",
               SinusoidConfig, run, figures, summary,
               quick={"shots": [5], "train.steps": 150, "eval_tasks": 50, "eval_steps": 5, "plot_tasks": 2,
                      "train.checkpoint_every": 50}),
]
