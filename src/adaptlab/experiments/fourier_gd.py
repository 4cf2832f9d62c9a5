"""The 1D-function study with a gradient-descent inner loop (``fourier-gd``, ``fourier-gd-1step``).

The feature-weight model of ``fourier-closed-form``, but each task's coefficients start at 0 and take K plain
gradient steps (lr 1e-2) on the mean squared error of its inner points (see :mod:`adaptlab.inner.gd`); the
meta loss is the closed-form study's (fresh uniform query points), differentiated through the K steps.
Evaluation, figures and results format are the closed-form study's: after training, new tasks are fitted in
closed form (min-norm) on the learned weighted features and compared with all-ones weights and the oracle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from adaptlab.config import check
from adaptlab.experiments.fourier import (
    FourierConfig,
    build_tasks,
    fourier_figures,
    fourier_summary,
    train_and_evaluate,
)
from adaptlab.inner.gd import gd_inner
from adaptlab.meta.feature_weights import FeatureWeights, squared_error
from adaptlab.runner import Experiment


@dataclass
class InnerGDConfig:
    steps: int = 5  # K gradient steps from zero coefficients
    lr: float = 1e-2


@dataclass
class FourierGDConfig(FourierConfig):
    inner: InnerGDConfig = field(default_factory=InnerGDConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(0 <= self.inner.steps <= 1000, "inner.steps", self.inner.steps, "an integer in 0..1000")
        check(0 < self.inner.lr <= 100, "inner.lr", self.inner.lr, "a positive number <= 100")


def run(cfg: FourierGDConfig, out_dir: Path, resume: bool = False) -> dict:
    tasks = build_tasks(cfg)
    m = cfg.train
    learner = FeatureWeights(cfg.task.d, init=m.init, inner=gd_inner(cfg.inner.steps, cfg.inner.lr, "squared"),
                             point_loss=squared_error, reduction=m.reduction, optimizer=m.optimizer, lr=m.lr,
                             device=cfg.device)
    return train_and_evaluate(cfg, out_dir, resume, tasks, learner, desc=f"meta-train (K={cfg.inner.steps})")


def summary(results: dict, cfg: FourierGDConfig) -> str:
    head = (f"Inner loop: {cfg.inner.steps} gradient step(s) of size {cfg.inner.lr} on the mean squared error "
            "from zero coefficients; evaluation fits are closed-form min-norm.\n\n")
    return head + fourier_summary(results, cfg)


_QUICK = {"task.d": 101, "train.steps": 60, "eval.every": 20, "eval.num_sizes": 20}

EXPERIMENTS = [
    Experiment("fourier-gd", "1D Fourier study, inner loop of K=5 gradient steps (uniform inner points)",
               FourierGDConfig, run, fourier_figures, summary, quick=_QUICK, defaults={"task.x": "uniform"}),
    Experiment("fourier-gd-1step", "1D Fourier study, inner loop of one gradient step (uniform inner points)",
               FourierGDConfig, run, fourier_figures, summary, quick=_QUICK,
               defaults={"task.x": "uniform", "inner.steps": 1}),
]
