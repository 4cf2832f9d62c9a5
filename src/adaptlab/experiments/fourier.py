"""The 1D-function meta-learning study with a closed-form inner solver.

Does meta-learning find the true features? Feature weights c are trained by gradient descent through the
min-norm interpolator of each task's training points, and compared, as the number n of training points of a
new task grows, with all-ones weights ("init"), an oracle that knows the support S, and the zero predictor.

The pieces other Fourier studies reuse: :class:`FourierConfig`, :func:`build_tasks`, :func:`train_and_evaluate`
(the loop with evaluation, checkpoints and resume; pass another ``inner``/``point_loss``/metric),
:func:`fourier_figures` and :func:`fourier_summary`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from adaptlab.config import BaseConfig, check
from adaptlab.engine import fit
from adaptlab.eval.shots import (
    ShotsData,
    constant_curve,
    eval_sizes,
    make_shots_data,
    mse_metric,
    shots_curve,
)
from adaptlab.inner.lstsq import min_norm_lstsq, weighted_min_norm
from adaptlab.io import Checkpoint, progress
from adaptlab.meta.feature_weights import FeatureWeights, closed_form_inner, squared_error
from adaptlab.runner import Experiment
from adaptlab.tasks.fourier import FourierTasks, fourier_features, grid_points, validate_fourier


@dataclass
class TaskConfig:
    d: int = 501  # odd: the constant plus (d-1)/2 sin/cos pairs
    support: list[int] = field(default_factory=lambda: list(range(5, 11)))  # sin/cos of frequencies 3, 4, 5
    x: Literal["grid", "uniform"] = "grid"  # how inner (training) points are drawn, in training and eval
    n_inner: int = 32
    n_meta: int = 64  # fresh uniform query points per task for the meta loss
    noise: float = 0.1  # std of the training-label noise; test labels are clean


@dataclass
class TrainConfig:
    steps: int = 100
    tasks_per_step: int = 5
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = 1e-2
    reduction: Literal["sum", "mean"] = "sum"  # the study's lr 1e-2 is for the loss summed over query points
    init: float = 1.0  # initial feature weights (all ones)
    checkpoint_every: int = 10


@dataclass
class EvalConfig:
    every: int = 10  # evaluate at step 0 and every `every` meta-steps (and at the end)
    num_tasks: int = 10
    n_test: int = 1000
    num_sizes: int = 40  # log-spaced sizes from 1 to max_factor * d, plus n_inner and |S| - 1, |S|, |S| + 1
    max_factor: float = 3.0
    oracle_ridge: float = 1e-10  # tiny ridge for the oracle on grids (columns that vanish on the grid drop out)


@dataclass
class FourierConfig(BaseConfig):
    seed: int = 7
    task: TaskConfig = field(default_factory=TaskConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    RENAMED = {"meta": "train", "checkpoint_every": "train.checkpoint_every"}  # before docs/config.md

    def __post_init__(self) -> None:
        super().__post_init__()
        t, m, e = self.task, self.train, self.eval
        # upper bounds keep the evaluation (up to max_factor * d points of d features per task) within memory
        check(1 <= t.d <= 4001 and t.d % 2 == 1, "task.d", t.d, "an odd integer in 1..4001")
        check(1 <= t.n_inner <= 100_000, "task.n_inner", t.n_inner, "an integer in 1..100000")
        check(1 <= t.n_meta <= 100_000, "task.n_meta", t.n_meta, "an integer in 1..100000")
        check(0 <= t.noise <= 1000, "task.noise", t.noise, "a number in [0, 1000]")
        check(m.init != 0 and abs(m.init) <= 1000, "train.init", m.init, "a non-zero number in [-1000, 1000]")
        check(m.steps <= 10_000_000, "train.steps", m.steps, "an integer in 0..10000000")
        check(m.tasks_per_step <= 10_000, "train.tasks_per_step", m.tasks_per_step, "an integer in 1..10000")
        check(m.lr <= 1e3, "train.lr", m.lr, "a positive number <= 1000")
        check(e.n_test <= 1_000_000, "eval.n_test", e.n_test, "an integer in 1..1000000")
        check(e.num_tasks <= 10_000, "eval.num_tasks", e.num_tasks, "an integer in 1..10000")
        check(e.num_sizes <= 1000, "eval.num_sizes", e.num_sizes, "an integer in 2..1000")
        check(e.max_factor <= 100, "eval.max_factor", e.max_factor, "a positive number <= 100")
        validate_fourier(t.d, t.support, t.x, t.n_inner, t.n_meta, t.noise, prefix="task.",
                         names={"n_support": "n_inner", "n_query": "n_meta"})
        check(len(set(t.support)) == len(t.support), "task.support", t.support, "distinct feature indices")
        check(m.steps >= 0, "train.steps", m.steps, "a non-negative integer")
        check(m.tasks_per_step >= 1, "train.tasks_per_step", m.tasks_per_step, "a positive integer")
        check(m.lr > 0, "train.lr", m.lr, "a positive number")
        check(m.checkpoint_every >= 1, "train.checkpoint_every", m.checkpoint_every, "a positive integer")
        check(e.every >= 1, "eval.every", e.every, "a positive integer")
        check(e.num_tasks >= 1, "eval.num_tasks", e.num_tasks, "a positive integer")
        check(e.n_test >= 1, "eval.n_test", e.n_test, "a positive integer")
        check(e.num_sizes >= 2, "eval.num_sizes", e.num_sizes, "an integer >= 2")
        check(e.max_factor > 0, "eval.max_factor", e.max_factor, "a positive number")
        check(e.oracle_ridge >= 0, "eval.oracle_ridge", e.oracle_ridge, "a non-negative number")


def build_tasks(cfg: FourierConfig, labels: str = "regression", flip_prob: float = 0.0) -> FourierTasks:
    t = cfg.task
    return FourierTasks(d=t.d, support=t.support, x=t.x, n_support=t.n_inner, n_query=t.n_meta, noise=t.noise,
                        labels=labels, flip_prob=flip_prob, dtype=torch.float64, device=cfg.device)


def study_sizes(cfg: FourierConfig) -> list[int]:
    t, e = cfg.task, cfg.eval
    s = len(t.support)
    return eval_sizes(1, max(2, round(e.max_factor * t.d)), e.num_sizes, [t.n_inner, s - 1, s, s + 1])


_QR_CACHE: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}  # id(phi) -> (phi, Q, R)


def _cached_qr(phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """QR of a fixed evaluation design matrix, computed once per tensor (the entry keeps ``phi`` alive, so its
    id cannot be reused while cached)."""
    hit = _QR_CACHE.get(id(phi))
    if hit is not None and hit[0] is phi:
        return hit[1], hit[2]
    if len(_QR_CACHE) >= 256:
        _QR_CACHE.clear()
    Q, R = torch.linalg.qr(phi)
    _QR_CACHE[id(phi)] = (phi, Q, R)
    return Q, R


def weighted_fit(c: torch.Tensor):
    """fit(phi (n, d), y (T, n)) -> alpha (T, d): min-norm on features weighted by c, all tasks at once.

    Over-determined sizes (n > d) with no zero weight use an exact shortcut: if phi = QR then
    phi diag(c) = Q (R diag(c)) with R diag(c) still triangular, so alpha = c * beta = R^{-1} Q^T y does not
    depend on c, and the QR of each fixed evaluation matrix is computed once per run instead of per evaluation.
    """
    nonzero = bool((c != 0).all())

    def fit(phi, y):
        if phi.shape[0] > phi.shape[1] and nonzero:
            Q, R = _cached_qr(phi)
            return torch.linalg.solve_triangular(R, Q.mT @ y.mT, upper=True).mT
        return weighted_min_norm(phi, c, y.mT)[1].mT
    return fit


def oracle_fit(support: list[int], ridge: float, tol: float = 1e-10):
    """Least squares on the columns of S only; columns that vanish on the training points are dropped
    (zeroed, so the ridge/min-norm gives them coefficient 0)."""
    def fit(phi, y):
        cols = phi[:, support]  # (n, |S|)
        alive = (cols.abs().amax(0) > tol).to(cols.dtype)
        coef_s = min_norm_lstsq(cols * alive, y.mT, ridge=ridge).mT * alive  # (T, |S|)
        alpha = phi.new_zeros(y.shape[0], phi.shape[-1])
        alpha[:, support] = coef_s
        return alpha
    return fit


def baseline_curves(cfg: FourierConfig, data: ShotsData, metric=mse_metric, init_fit=None, oracle=None) -> dict:
    """Curves that do not change during meta-training: all-ones init, oracle, zero predictor."""
    ridge = cfg.eval.oracle_ridge if cfg.task.x == "grid" else 0.0
    ones = torch.ones(cfg.task.d, dtype=torch.float64, device=cfg.device)
    zero = metric(data.coef.new_zeros(data.coef.shape), data)
    return {"init": shots_curve(init_fit or weighted_fit(ones), data, metric),
            "oracle": shots_curve(oracle or oracle_fit(cfg.task.support, ridge), data, metric),
            "zero": constant_curve(zero, data.sizes)}


def _example(cfg: FourierConfig, data: ShotsData, fits: dict) -> dict:
    """Task 0 at n = n_inner: its training points, the truth and each method's fit on a plotting grid."""
    i = data.sizes.index(cfg.task.n_inner)
    xp = grid_points(400, torch.float64, data.coef.device)
    phip = fourier_features(xp, cfg.task.d)
    out = {"n": cfg.task.n_inner, "x_train": data.x_train[i].tolist(), "y_train": data.y_train[i][0].tolist(),
           "x": xp.tolist(), "truth": (phip @ data.coef[0]).tolist()}
    for name, fit_fn in fits.items():
        out[name] = (phip @ fit_fn(data.phi_train[i], data.y_train[i][:1])[0]).tolist()
    return out


def train_and_evaluate(cfg: FourierConfig, out_dir: Path, resume: bool, tasks: FourierTasks,
                       learner: FeatureWeights, metric=mse_metric, desc: str = "meta-train",
                       baselines: dict | None = None, sizes: list[int] | None = None, fit_factory=weighted_fit,
                       example: bool = True) -> dict:
    """The meta-training loop: sample tasks, step, evaluate every ``eval.every`` steps, checkpoint, resume.

    Evaluation data are drawn once from their own generator (seed + 1), so every evaluation scores the same
    tasks and points and a resumed run re-creates them exactly. Returns the results dict of the study.
    """
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    data = make_shots_data(tasks, sizes or study_sizes(cfg), cfg.eval.num_tasks, cfg.eval.n_test,
                           torch.Generator().manual_seed(cfg.seed + 1))
    base = baselines if baselines is not None else baseline_curves(cfg, data, metric)
    steps = cfg.train.steps

    def log(step: int, hist: dict) -> None:  # at step 0, every eval.every steps and at the end
        if step % cfg.eval.every == 0 or step == steps:
            c = learner.c.detach()
            curves = {"meta": shots_curve(fit_factory(c), data, metric), **base}
            hist["evals"].append({"step": step, "curves": curves, "feature_weights": c.tolist()})

    hist = fit(lambda batch: learner.meta_loss(batch, tasks.features),
               lambda _: tasks.sample(cfg.train.tasks_per_step, gen), steps=steps, generator=gen,
               optimizer=learner.make_optimizer(),
               modules={"learner": learner}, history={"evals": []}, callbacks=[log],
               checkpoint=Checkpoint(out_dir, every=cfg.train.checkpoint_every), resume=resume,
               progress=progress, desc=desc)
    history, train_loss = hist["evals"], hist["loss"]
    c = learner.c.detach()
    results = {"curves": history[-1]["curves"], "history": history, "feature_weights": c.tolist(),
               "train_loss": train_loss, "noise_var": cfg.task.noise ** 2, "support": list(cfg.task.support),
               "sizes": data.sizes}
    if example:
        ones = torch.ones_like(c)
        results["example"] = _example(cfg, data, {"meta": fit_factory(c), "init": fit_factory(ones)})
    return results


def run(cfg: FourierConfig, out_dir: Path, resume: bool = False) -> dict:
    tasks = build_tasks(cfg)
    learner = FeatureWeights(cfg.task.d, init=cfg.train.init, inner=closed_form_inner, point_loss=squared_error,
                             reduction=cfg.train.reduction, optimizer=cfg.train.optimizer, lr=cfg.train.lr,
                             device=cfg.device)
    return train_and_evaluate(cfg, out_dir, resume, tasks, learner)


def fourier_figures(results: dict, cfg: FourierConfig, out_dir: Path, ylabel: str = "test MSE") -> list[str]:
    from adaptlab.io import save_figure
    from adaptlab.viz.fourier import curves_figure, example_figure, weights_figure

    names = ["curves.png", "weights.png"]
    inner = getattr(cfg, "inner", None)
    label = f"K = {inner.steps} gradient steps of size {inner.lr:g}" if inner is not None else "closed-form min-norm"
    save_figure(curves_figure(results, n_inner=cfg.task.n_inner, d=cfg.task.d, meta_steps=cfg.train.steps,
                              x=cfg.task.x, ylabel=ylabel, inner=label), out_dir / "curves.png")
    save_figure(weights_figure(results), out_dir / "weights.png")
    if "example" in results:
        save_figure(example_figure(results), out_dir / "example.png")
        names.append("example.png")
    return names


def _at(curve: dict, n: int) -> float:
    return curve["mean"][curve["n"].index(n)]


def feature_name(i: int) -> tuple[int, str]:
    """Feature index -> (frequency k, "const" | "sin" | "cos"): 0 is the constant, 2k-1 sin(k pi x), 2k cos."""
    return (0, "const") if i == 0 else ((i + 1) // 2, "sin" if i % 2 else "cos")


def suppressed_features(c: torch.Tensor, support, n_inner: int, grid: bool, top: int = 12) -> list[dict]:
    """The ``top`` features with the smallest |c|, each with its frequency and whether it aliases a support
    frequency on the n-point grid (k = +-k0 mod n: the same values at every grid point, up to sign)."""
    k_support = {feature_name(i)[0] for i in support if i > 0}
    out = []
    for i in c.abs().argsort()[:top].tolist():
        k, kind = feature_name(i)
        alias = grid and any((k - k0) % n_inner == 0 or (k + k0) % n_inner == 0 for k0 in k_support)
        out.append({"index": i, "k": k, "kind": kind, "weight": float(c[i]), "aliases_support": alias})
    return out


def fourier_summary(results: dict, cfg: FourierConfig, metric_name: str = "test MSE") -> str:
    cur, n0 = results["curves"], cfg.task.n_inner
    n_max = cur["meta"]["n"][-1]
    near = [n for n in (n0 - 3, n0, n0 + 3) if n in cur["meta"]["n"]]  # the spike at n = n_inner, numerically
    c = torch.tensor(results["feature_weights"])
    s = cfg.task.support
    others = torch.ones_like(c, dtype=torch.bool)
    others[s] = False
    lines = [f"Meta-learned feature weights after {cfg.train.steps} steps (d={cfg.task.d}, S={s}, "
             f"x={cfg.task.x}, n_inner={n0}).", "",
             f"| method | {metric_name} (mean over {cfg.eval.num_tasks} tasks) at "
             + " | ".join(f"n={n}" for n in near) + f" | at n={n_max} |",
             "|---|" + "---|" * (len(near) + 1)]
    for m in ("meta", "init", "oracle", "zero"):
        lines.append(f"| {m} | " + " | ".join(f"{_at(cur[m], n):.4g}" for n in near) + f" | {_at(cur[m], n_max):.4g} |")
    lines += ["", f"mean |c| on S: {c[s].abs().mean():.3f}; elsewhere: {c[others].abs().mean():.3f} "
              f"(min {c[others].abs().min():.3f})"]
    sup = suppressed_features(c, s, n0, cfg.task.x == "grid")
    freqs = sorted({feature_name(i)[0] for i in s if i > 0})
    listed = ", ".join(f"{f['index']} ({f['kind']} {f['k']}: {f['weight']:.3f}"
                       f"{', alias' if f['aliases_support'] else ''})" for f in sup)
    if cfg.task.x == "grid":
        n_alias = sum(f["aliases_support"] for f in sup)
        lines += ["", f"Suppressed features (the {len(sup)} smallest weights; index (frequency: weight)): {listed}.",
                  f"{n_alias} of {len(sup)} are aliases of the support frequencies {freqs} on the {n0}-point grid "
                  f"(k = ±k0 mod {n0}: on the grid they take the same values as a support feature, so the "
                  "meta-learner shrinks them to keep the min-norm fit from spreading the signal over them)."]
    else:
        lines += ["", f"Smallest weights (index (frequency: weight)): {listed}. With uniform inner points there is "
                  "no exact aliasing, so no frequency is singled out the way grid aliases are."]
    return "\n".join(lines)


# The quick form keeps d = 501: with uniform inner points a smaller d puts n_inner = 32 so close to d that plain
# SGD on the summed loss blows up (the min-norm interpolant of random points is very ill-conditioned).
QUICK = {"train.steps": 50, "eval.every": 25, "eval.num_sizes": 20, "eval.n_test": 500}

EXPERIMENTS = [
    Experiment("fourier-closed-form",
               "1D Fourier study: meta-learn feature weights through the min-norm solver (grid inner points)",
               FourierConfig, run, fourier_figures, fourier_summary,
               quick=QUICK),
    Experiment("fourier-closed-form-uniform",
               "1D Fourier study as fourier-closed-form, with uniform random inner points",
               FourierConfig, run, fourier_figures, fourier_summary, defaults={"task.x": "uniform"},
               quick=QUICK),
]
