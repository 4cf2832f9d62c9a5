"""``mtl-toy``: Adam on the mean loss vs MGDA vs PCGrad vs CAGrad on two-task 2-D objectives.

Trajectories from each starting point over the contours of the mean loss, with the Pareto set (where the two
task gradients are anti-parallel) marked. The CAGrad objective follows the authors' released code, whose f_2
has ``+ tanh(-θ₂)`` where the paper's text prints ``- tanh(-θ₂)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from adaptlab.config import BaseConfig, check
from adaptlab.io import progress
from adaptlab.runner import Experiment, Stages

METHODS = ("mean", "mgda", "pcgrad", "cagrad")
CAPTIONS = {
    "cagrad": "CAGrad toy (Liu et al. 2021, Sec. 5.1) with f₂ as in the authors' released code "
              "(+tanh(−θ₂); the paper text prints −tanh(−θ₂)). Gold: Pareto set; white: paths; ★: end points.",
    "pcgrad": "PCGrad toy (Yu et al. 2020, appendix): L₁ = 20 log max(|θ₁/2 + tanh θ₂|, 5e-6), "
              "L₂ = 25 log max(|θ₁/2 − tanh θ₂ + 2|, 5e-6). Gold: Pareto set; white: paths; ★: end points.",
}


@dataclass
class TrainConfig:
    # the released CAGrad toy runs Adam(lr=1e-3) for 100k steps; 20k steps at 5e-3 cover the same path length
    # on a CPU in a few minutes (--set train.steps=100000 --set train.lr=0.001 for the released schedule)
    steps: int = 20000
    lr: float = 5e-3
    checkpoint_every: int = 5000

    def __post_init__(self) -> None:
        check(self.steps >= 1, "train.steps", self.steps, "a positive integer")
        check(self.lr > 0, "train.lr", self.lr, "a positive number")
        check(self.checkpoint_every >= 1, "train.checkpoint_every", self.checkpoint_every, "a positive integer")


@dataclass
class ToyConfig(BaseConfig):
    RENAMED = {"steps": "train.steps", "lr": "train.lr"}  # before the one vocabulary (docs/config.md)

    problems: list[str] = field(default_factory=lambda: ["cagrad", "pcgrad"])
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    train: TrainConfig = field(default_factory=TrainConfig)
    c: float = 0.5  # CAGrad radius in the released toy
    record_every: int = 100
    grid: int = 300

    def __post_init__(self) -> None:
        super().__post_init__()
        from adaptlab.mtl.toy import PROBLEMS

        check(len(self.problems) > 0 and all(p in PROBLEMS for p in self.problems), "problems", self.problems,
              f"a non-empty list from {', '.join(PROBLEMS)}")
        check(len(self.methods) > 0 and all(m in METHODS for m in self.methods), "methods", self.methods,
              f"a non-empty list from {', '.join(METHODS)}")
        check(self.c >= 0, "c", self.c, "a number >= 0")
        check(1 <= self.record_every <= self.train.steps, "record_every", self.record_every,
              "an integer in 1..train.steps")
        check(20 <= self.grid <= 2000, "grid", self.grid, "an integer in 20..2000")


def _stationarity(problem, pts: torch.Tensor) -> list[float]:
    """||min-norm element of conv{g1, g2}|| / max(||g1||, ||g2||) at each point (0 = Pareto-stationary)."""
    from adaptlab.mtl.aggregators import mgda
    from adaptlab.mtl.toy import point_gradients

    _, G = point_gradients(problem, pts)
    d = torch.vmap(lambda g: mgda(g)[0])(G)
    scale = G.norm(dim=-1).amax(-1).clamp_min(1e-30)
    return (d.norm(dim=-1) / scale).tolist()


def _problem(cfg: ToyConfig, name: str, checkpoint) -> dict:
    """One stage of the run: every method's trajectories on one problem, and their end points."""
    from adaptlab.mtl.toy import PROBLEMS, trajectories

    problem, inits, _ = PROBLEMS[name]
    r = trajectories(problem, inits, cfg.methods, cfg.train.steps, lr=cfg.train.lr, c=cfg.c,
                     record_every=cfg.record_every, checkpoint=checkpoint, every=cfg.train.checkpoint_every)
    finals = r["paths"][:, :, -1]  # (M, I, 2)
    return {
        "inits": [list(p) for p in inits],
        "paths": {m: r["paths"][k].tolist() for k, m in enumerate(cfg.methods)},
        "final": {m: finals[k].tolist() for k, m in enumerate(cfg.methods)},
        "final_losses": {m: r["losses"][k, :, -1].tolist() for k, m in enumerate(cfg.methods)},
        "final_stationarity": {m: _stationarity(problem, finals[k]) for k, m in enumerate(cfg.methods)},
    }


def run(cfg: ToyConfig, out_dir: Path, resume: bool) -> dict:
    stages = Stages(out_dir, resume)
    for name in progress(cfg.problems, desc="mtl-toy problems"):
        stages.run(name, _problem, cfg, name)
    return {"problems": {p: stages.done[p] for p in cfg.problems}, "methods": list(cfg.methods),
            "steps": cfg.train.steps}


def figures(results: dict, cfg: ToyConfig, out_dir: Path) -> list[str]:
    from adaptlab.io import save_figure
    from adaptlab.mtl.toy import PROBLEMS, pareto_curve, pcgrad_toy_pareto_set
    from adaptlab.viz.mtl import toy_figure

    names = []
    for p, r in results["problems"].items():
        problem, _, box = PROBLEMS[p]
        X, Y, Z = pareto_curve(problem, box, n=cfg.grid)
        loss = problem(torch.stack([X, Y], -1)).mean(-1)
        grid = {"x": X.tolist(), "y": Y.tolist(), "loss": loss.tolist(), "pareto": Z.tolist()}
        pts = pcgrad_toy_pareto_set(box[3]).tolist() if p == "pcgrad" else None  # analytic: see its docstring
        fig = toy_figure({"methods": results["methods"], "paths": r["paths"], "grid": grid, "pareto_points": pts},
                         CAPTIONS[p], schedule=f"Adam (lr {cfg.train.lr:g}, {cfg.train.steps} steps)")
        save_figure(fig, out_dir / f"toy_{p}.png")
        names.append(f"toy_{p}.png")
    return names


def summary(results: dict, cfg: ToyConfig) -> str:
    lines = [f"Adam (lr {cfg.train.lr:g}, {cfg.train.steps} steps) on each update direction; CAGrad c = {cfg.c:g}. "
             "Stationarity = ||min-norm point of conv{∇L₁, ∇L₂}|| / max ||∇L_i|| at the end point "
             "(0 on the Pareto set).", ""]
    for p, r in results["problems"].items():
        lines += [f"### {p} toy", "", CAPTIONS[p], "", "| method | start | end | L₁, L₂ at end | stationarity |",
                  "|---|---|---|---|---|"]
        for m in results["methods"]:
            for i, start in enumerate(r["inits"]):
                e, L = r["final"][m][i], r["final_losses"][m][i]
                lines.append(f"| {m} | ({start[0]:g}, {start[1]:g}) | ({e[0]:.2f}, {e[1]:.2f}) | "
                             f"{L[0]:.2f}, {L[1]:.2f} | {r['final_stationarity'][m][i]:.3f} |")
        lines.append("")
    return "\n".join(lines)


EXPERIMENTS = [Experiment(
    name="mtl-toy",
    description="2-D two-task toys (PCGrad, CAGrad papers): Adam on mean loss vs MGDA vs PCGrad vs CAGrad",
    config_cls=ToyConfig, run=run, figures=figures, summary=summary,
    quick={"train.steps": 150, "train.lr": 0.1, "record_every": 10, "grid": 40})]
