"""The two-feature alias study: why meta-learning drives aliased feature weights to zero.

One training point x0, a true feature phi_0 and an alias phi_1 with phi_0(x0) = phi_1(x0) = a but
E[phi_0 phi_1] = 0, E[phi_i^2] = 1 under the test distribution (realised here with Fourier features:
x0 = 0, phi_0 = sqrt(2) cos(pi x), phi_1 = sqrt(2) cos(3 pi x)). The task is f = phi_0 and the training label
is y = a + eps, eps ~ N(0, sigma^2). With weights c = (c0, c1) the min-norm solution of
a (c0 beta0 + c1 beta1) = y is::

    beta = (c0, c1) * m / (c0^2 + c1^2),    alpha = c * beta = (p, q) * m,    m = y / a,
    p = c0^2 / s,  q = c1^2 / s,  s = c0^2 + c1^2,

and, since the features are orthonormal, the expected test error is::

    E(c) = E[(p m - 1)^2 + (q m)^2] = (p^2 + q^2) v - 2 p + 1,    v = E[m^2] = 1 + sigma^2 / a^2,
    dE/dc0 =  g * 2 c0 c1^2 / s^2,    dE/dc1 = -g * 2 c1 c0^2 / s^2,    g = 2 (p - q) v - 2.

The gradient is orthogonal to c (c . dE/dc = 0), so gradient flow keeps ||c|| fixed while c1 -> 0: c converges
to (||c(0)||, 0), beta to (1 / ||c(0)||, 0) and alpha to (1, 0) (up to the noise shrinkage when sigma > 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from adaptlab.config import BaseConfig, check
from adaptlab.io import progress, save_figure
from adaptlab.runner import Experiment


def alias_beta(c: torch.Tensor, y_over_a: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Closed-form min-norm beta for weights c = (c0, c1) (..., 2), when y / a = ``y_over_a``."""
    return c * y_over_a / (c ** 2).sum(-1, keepdim=True)


def alias_error(c: torch.Tensor, v: float = 1.0) -> torch.Tensor:
    """Expected test error E(c) with v = 1 + sigma^2 / a^2 (v = 1: noise-free)."""
    s = (c ** 2).sum(-1)
    p, q = c[..., 0] ** 2 / s, c[..., 1] ** 2 / s
    return (p ** 2 + q ** 2) * v - 2 * p + 1


def alias_grad(c: torch.Tensor, v: float = 1.0) -> torch.Tensor:
    """The analytic gradient dE/dc, shape of c."""
    c0, c1 = c[..., 0], c[..., 1]
    s = c0 ** 2 + c1 ** 2
    p, q = c0 ** 2 / s, c1 ** 2 / s
    g = 2 * (p - q) * v - 2
    return torch.stack([g * 2 * c0 * c1 ** 2 / s ** 2, -g * 2 * c1 * c0 ** 2 / s ** 2], -1)


def alias_features(x: torch.Tensor) -> torch.Tensor:
    """(n,) -> (n, 2): the true feature sqrt(2) cos(pi x) and its alias at x0 = 0, sqrt(2) cos(3 pi x)."""
    return math.sqrt(2) * torch.stack([torch.cos(math.pi * x), torch.cos(3 * math.pi * x)], -1)


def gradient_descent(c0: torch.Tensor, lr: float, steps: int, v: float = 1.0, num_logged: int = 300):
    """Plain GD on E(c) from ``c0``; returns ~``num_logged`` log-spaced steps and their iterates (k, 2)."""
    import numpy as np

    log_at = set(np.unique(np.rint(np.logspace(0, np.log10(steps), num_logged))).astype(int).tolist())
    c = c0.clone()
    logged_steps, traj = [0], [c.clone()]
    for t in progress(range(1, steps + 1), total=steps, desc="alias GD"):
        c = c - lr * alias_grad(c, v)
        if t in log_at or t == steps:
            logged_steps.append(t)
            traj.append(c.clone())
    return logged_steps, torch.stack(traj)


@dataclass
class TrainConfig:
    # Small steps: each discrete step grows ||c|| by lr^2 ||grad||^2 (the gradient is orthogonal to c), and c1
    # decays only like (16 lr t)^(-1/2) near the optimum, so: many cheap small steps.
    lr: float = 0.02
    steps: int = 50000

    def __post_init__(self) -> None:
        check(self.lr > 0, "train.lr", self.lr, "a positive number")
        check(self.steps >= 1, "train.steps", self.steps, "a positive integer")


@dataclass
class AliasConfig(BaseConfig):
    RENAMED = {"steps": "train.steps", "lr": "train.lr"}  # before the one vocabulary (docs/config.md)

    c0: float = 0.6  # initial weight of the true feature
    c1: float = 0.8  # initial weight of the alias (||c(0)|| = 1)
    train: TrainConfig = field(default_factory=TrainConfig)
    noise: float = 0.0  # sigma of the training-label noise
    num_logged: int = 300  # log-spaced steps kept for the figures

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.c0 != 0 and abs(self.c0) <= 100, "c0", self.c0, "a non-zero weight in [-100, 100]")
        check(self.c1 != 0 and abs(self.c1) <= 100, "c1", self.c1, "a non-zero weight in [-100, 100]")
        check(self.noise >= 0, "noise", self.noise, "a non-negative number")
        check(self.num_logged >= 2, "num_logged", self.num_logged, "an integer >= 2")


def run(cfg: AliasConfig, out_dir: Path, resume: bool = False) -> dict:
    a2 = float(alias_features(torch.zeros(1, dtype=torch.float64))[0, 0]) ** 2  # a^2 = 2 at x0 = 0
    v = 1 + cfg.noise ** 2 / a2
    start = torch.tensor([cfg.c0, cfg.c1], dtype=torch.float64)
    steps, traj = gradient_descent(start, cfg.train.lr, cfg.train.steps, v, cfg.num_logged)
    final = traj[-1]
    return {"steps": steps, "c": traj.tolist(), "beta": alias_beta(traj).tolist(),
            "error": alias_error(traj, v).tolist(), "init": start.tolist(), "init_norm": float(start.norm()),
            "final_c": final.tolist(), "final_beta": alias_beta(final).tolist(),
            "final_alpha": (final * alias_beta(final)).tolist(), "v": v}


def figures(results: dict, cfg: AliasConfig, out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    C, B = np.array(results["c"]), np.array(results["beta"])
    r = results["init_norm"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.8))
    g0, g1 = np.meshgrid(np.linspace(0.05, 1.25 * r, 200), np.linspace(-1.1 * r, 1.1 * r, 200))
    E = alias_error(torch.tensor(np.stack([g0, g1], -1)), results["v"]).numpy()
    cs = a1.contour(g0, g1, E, levels=12, cmap="Greys", linewidths=0.6)
    a1.clabel(cs, fontsize=6)
    a1.plot([], [], color="0.45", lw=0.6, label="contours: expected test error E(c)")
    th = np.linspace(-np.pi / 2, np.pi / 2, 200)
    a1.plot(r * np.cos(th), r * np.sin(th), "--", color="tab:gray", lw=1, label=f"‖c(0)‖ = {r:.3g}")
    a1.plot(C[:, 0], C[:, 1], "-", color="tab:blue", lw=2, label="gradient descent")
    a1.plot(*C[0], "o", color="tab:red", label=f"c(0) = ({C[0, 0]:.2f}, {C[0, 1]:.2f})")
    a1.plot(*C[-1], "*", color="tab:green", ms=13, label=f"final ({C[-1, 0]:.3f}, {C[-1, 1]:.3f})")
    a1.set_xlabel("c0 (true feature)")
    a1.set_ylabel("c1 (alias)")
    a1.set_aspect("equal")
    a1.legend(fontsize=8, loc="lower left")
    a1.set_title("feature weights under gradient descent on E(c)")
    st = results["steps"]
    a2.plot(st, B[:, 0], label="β0 (true)")
    a2.plot(st, B[:, 1], label="β1 (alias)")
    a2.plot(st, results["error"], label="expected test error E(c)")
    a2.axhline(1 / r, color="k", ls=":", lw=1, label=f"1/‖c(0)‖ = {1 / r:.3g}")
    a2.set_xscale("symlog", linthresh=1)
    a2.set_xlim(0, st[-1])
    a2.set_xlabel("gradient step")
    a2.legend(fontsize=8)
    a2.set_title("min-norm β and the test error")
    save_figure(fig, out_dir / "alias.png")
    return ["alias.png"]


def summary(results: dict, cfg: AliasConfig) -> str:
    c, b = results["final_c"], results["final_beta"]
    return (f"Gradient descent on the expected test error from c(0) = {tuple(results['init'])} "
            f"(‖c(0)‖ = {results['init_norm']:.4f}), lr {cfg.train.lr}, {cfg.train.steps} steps, noise {cfg.noise}.\n\n"
            f"| | c0 | c1 | β0 | β1 | E(c) |\n|---|---|---|---|---|---|\n"
            f"| start | {results['c'][0][0]:.4f} | {results['c'][0][1]:.4f} | {results['beta'][0][0]:.4f} | "
            f"{results['beta'][0][1]:.4f} | {results['error'][0]:.4g} |\n"
            f"| end | {c[0]:.4f} | {c[1]:.4f} | {b[0]:.4f} | {b[1]:.4f} | {results['error'][-1]:.4g} |\n\n"
            f"Expected limit: c → (‖c(0)‖, 0) = ({results['init_norm']:.4f}, 0), "
            f"β → (1/‖c(0)‖, 0) = ({1 / results['init_norm']:.4f}, 0).")


EXPERIMENTS = [
    Experiment("alias-two-feature",
               "Two-feature alias study: closed-form beta(c), analytic gradient, GD on c converges to (|c0|, 0)",
               AliasConfig, run, figures, summary, quick={"train.lr": 0.05, "train.steps": 5000}),
]
