"""The 1D-function study for classification (``fourier-classification``).

Labels are sign(f) (sign(0) = +1), each training label optionally flipped with probability ``flip_prob``.
Each task's coefficients start at 0 and take K = 5 gradient steps on the mean logistic loss with weight decay
1e-5 over its inner points; the meta loss is the logistic loss on fresh uniform points, differentiated through
the K steps. The study is run once per inner step size in ``inner.lrs`` (1e-2 and 3e-1 by default).

Evaluation: for each n (log-spaced from 24 to 3d, plus n_inner) a nearly unregularized logistic regression is
fitted on the weighted features of each test task, all tasks at once (:mod:`adaptlab.inner.logistic`), and
scored by test classification error, against all-ones weights, the oracle (logistic regression on the columns
of S) and random guessing (error 1/2).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from adaptlab.config import check
from adaptlab.eval.shots import (
    constant_curve,
    eval_sizes,
    make_shots_data,
    shots_curve,
    sign_error_metric,
)
from adaptlab.experiments.fourier import EvalConfig, FourierConfig, build_tasks, train_and_evaluate
from adaptlab.inner.gd import gd_inner, logistic_point_loss
from adaptlab.inner.logistic import logistic_regression
from adaptlab.io import Checkpoint, atomic_write_json
from adaptlab.meta.feature_weights import FeatureWeights
from adaptlab.runner import Experiment


@dataclass
class InnerLogisticConfig:
    steps: int = 5  # K gradient steps from zero coefficients
    lrs: list[float] = field(default_factory=lambda: [1e-2, 3e-1])  # one full study per inner step size
    weight_decay: float = 1e-5


@dataclass
class ClassEvalConfig(EvalConfig):
    every: int = 25  # each evaluation fits ~10 logistic regressions per size: keep them few
    num_sizes: int = 16
    min_n: int = 24
    ridge: float = 1e-6  # the "nearly unregularized" evaluation fit: finite on separable data


@dataclass
class FourierClassConfig(FourierConfig):
    inner: InnerLogisticConfig = field(default_factory=InnerLogisticConfig)
    eval: ClassEvalConfig = field(default_factory=ClassEvalConfig)
    flip_prob: float = 0.0  # probability of flipping each training label

    def __post_init__(self) -> None:
        super().__post_init__()
        i, e = self.inner, self.eval
        check(0 <= i.steps <= 1000, "inner.steps", i.steps, "an integer in 0..1000")
        check(len(i.lrs) > 0 and all(lr > 0 for lr in i.lrs), "inner.lrs", i.lrs,
              "a non-empty list of positive step sizes, e.g. 0.01,0.3")
        check(len(set(i.lrs)) == len(i.lrs), "inner.lrs", i.lrs, "distinct step sizes")
        check(i.weight_decay >= 0, "inner.weight_decay", i.weight_decay, "a non-negative number")
        check(1 <= e.min_n <= 3 * self.task.d, "eval.min_n", e.min_n, f"an integer in [1, {3 * self.task.d}]")
        check(e.ridge > 0, "eval.ridge", e.ridge, "a positive number (separable data need a ridge)")
        check(0 <= self.flip_prob < 0.5, "flip_prob", self.flip_prob, "a probability in [0, 0.5)")


def logistic_fit(c: torch.Tensor, ridge: float):
    """fit(phi (n, d), y (T, n)) -> alpha (T, d): logistic regression on phi * c for all tasks at once."""
    return lambda phi, y: c * logistic_regression(phi * c, y, ridge=ridge)


def oracle_logistic_fit(support: list[int], ridge: float):
    """Logistic regression on the columns of S only; zero coefficients elsewhere."""
    def fit(phi, y):
        alpha = phi.new_zeros(y.shape[0], phi.shape[-1])
        alpha[:, support] = logistic_regression(phi[:, support], y, ridge=ridge)
        return alpha
    return fit


def class_sizes(cfg: FourierClassConfig) -> list[int]:
    e = cfg.eval
    return eval_sizes(e.min_n, round(e.max_factor * cfg.task.d), e.num_sizes, [cfg.task.n_inner])


def run(cfg: FourierClassConfig, out_dir: Path, resume: bool = False) -> dict:
    tasks = build_tasks(cfg, labels="sign", flip_prob=cfg.flip_prob)
    sizes = class_sizes(cfg)
    # the same evaluation data train_and_evaluate draws (same sizes and generator seed)
    data = make_shots_data(tasks, sizes, cfg.eval.num_tasks, cfg.eval.n_test,
                           torch.Generator().manual_seed(cfg.seed + 1))
    ones = torch.ones(cfg.task.d, dtype=torch.float64, device=cfg.device)
    ridge = cfg.eval.ridge
    base = {"init": shots_curve(logistic_fit(ones, ridge), data, sign_error_metric),
            "oracle": shots_curve(oracle_logistic_fit(cfg.task.support, ridge), data, sign_error_metric),
            "chance": constant_curve(torch.tensor([0.5]), sizes)}
    runs = {}
    for lr in cfg.inner.lrs:
        sub = out_dir / f"inner-lr-{lr:g}"  # each step size checkpoints and finishes on its own
        done = sub / "results.json"
        if resume and done.exists():
            runs[f"{lr:g}"] = json.loads(done.read_text())
            continue
        sub.mkdir(exist_ok=True)
        m = cfg.train
        learner = FeatureWeights(cfg.task.d, init=m.init, point_loss=logistic_point_loss,
                                 inner=gd_inner(cfg.inner.steps, lr, "logistic", cfg.inner.weight_decay),
                                 reduction=m.reduction, optimizer=m.optimizer, lr=m.lr, device=cfg.device)
        res = train_and_evaluate(cfg, sub, resume, tasks, learner, metric=sign_error_metric,
                                 desc=f"meta-train (inner lr {lr:g})", baselines=base, sizes=sizes,
                                 fit_factory=lambda c: logistic_fit(c, ridge), example=False)
        res.pop("noise_var", None)
        atomic_write_json(done, res)
        runs[f"{lr:g}"] = res
    for lr in cfg.inner.lrs:  # all finished: the per-step-size folders are no longer needed
        sub = out_dir / f"inner-lr-{lr:g}"
        Checkpoint(sub).clear()
        shutil.rmtree(sub, ignore_errors=True)
    return {"runs": runs, "inner_lrs": list(cfg.inner.lrs), "sizes": sizes, "support": list(cfg.task.support)}


def figures(results: dict, cfg: FourierClassConfig, out_dir: Path) -> list[str]:
    from adaptlab.io import save_figure
    from adaptlab.viz.fourier import curves_figure, lr_comparison_figure, weights_figure

    names = []
    for lr, res in results["runs"].items():
        fig = curves_figure(res, n_inner=cfg.task.n_inner, d=cfg.task.d, meta_steps=cfg.train.steps, x=cfg.task.x,
                            ylabel=f"test error (inner lr {lr})", inner=f"K = {cfg.inner.steps} logistic GD steps")
        save_figure(fig, out_dir / f"curves_lr{lr}.png")
        save_figure(weights_figure(res), out_dir / f"weights_lr{lr}.png")
        names += [f"curves_lr{lr}.png", f"weights_lr{lr}.png"]
    save_figure(lr_comparison_figure(results, n_inner=cfg.task.n_inner), out_dir / "lr_comparison.png")
    return names + ["lr_comparison.png"]


def summary(results: dict, cfg: FourierClassConfig) -> str:
    n0 = cfg.task.n_inner
    first = next(iter(results["runs"].values()))["curves"]
    sizes = first["init"]["n"]
    picks = [n for n in (sizes[0], n0, sizes[len(sizes) * 3 // 4], sizes[-1])]
    lines = [f"Classification, K={cfg.inner.steps} logistic GD steps (weight decay {cfg.inner.weight_decay}), "
             f"{cfg.train.steps} meta-steps, d={cfg.task.d}, x={cfg.task.x}, flip_prob={cfg.flip_prob}. Test error, "
             f"mean over {cfg.eval.num_tasks} tasks; evaluation fits: logistic regression, ridge {cfg.eval.ridge}.",
             "", "| method | " + " | ".join(f"n={n}" for n in picks) + " |", "|---|" + "---|" * len(picks)]

    def row(name, cur):
        return f"| {name} | " + " | ".join(f"{cur['mean'][cur['n'].index(n)]:.3f}" for n in picks) + " |"

    for lr, res in results["runs"].items():
        lines.append(row(f"meta-learned (inner lr {lr})", res["curves"]["meta"]))
    for name in ("init", "oracle", "chance"):
        lines.append(row({"init": "all-ones", "chance": "random guessing"}.get(name, name), first[name]))
    lines.append("")
    for lr, res in results["runs"].items():
        c = torch.tensor(res["feature_weights"])
        share = float((c[cfg.task.support] ** 2).sum() / (c ** 2).sum())
        ones = len(cfg.task.support) / cfg.task.d
        lines.append(f"- inner lr {lr}: share of ||c||² on S = {share:.3f} (all-ones weights: {ones:.3f})")
    return "\n".join(lines)


EXPERIMENTS = [
    Experiment("fourier-classification",
               "1D Fourier study for classification: logistic GD inner loop, inner lr 1e-2 and 3e-1",
               FourierClassConfig, run, figures, summary, defaults={"task.x": "uniform"},
               quick={"task.d": 51, "train.steps": 40, "eval.every": 40, "eval.num_sizes": 6,
                      "eval.num_tasks": 5, "eval.n_test": 300}),
]
