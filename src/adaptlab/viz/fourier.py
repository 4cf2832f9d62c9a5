"""Figures of the 1D Fourier studies (fourier-*, fourier-classification), drawn from results.json only.

Each function returns a matplotlib Figure; save it with :func:`adaptlab.io.save_figure` (which closes it).
What a figure needs beyond the results (the inner support size, the dimension) is passed by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

COLORS = {"meta": "tab:blue", "init": "tab:orange", "oracle": "tab:green", "zero": "tab:gray",
          "chance": "tab:gray"}
LABELS = {"meta": "meta-learned c", "init": "all-ones c", "oracle": "oracle (knows S)", "zero": "zero predictor",
          "chance": "random guessing"}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def curves_figure(results: dict, *, n_inner: int, d: int, meta_steps: int, x: str, ylabel: str = "test MSE",
                  inner: str = "") -> Figure:
    """Test metric vs n with 10-90% bands: full range and zoom to n <= 4 n_inner.

    Args:
        results: holds ``curves`` (name -> {"n", "mean", "p10", "p90"}) and optionally ``noise_var``.
        n_inner: support size of the meta-training tasks (a vertical line; the zoom is n <= 4 n_inner).
        d: feature dimension, meta_steps: meta-training length, x: input distribution (for the titles).
        ylabel: the metric's name; a name holding "MSE" gets a log y-axis and the noise line.
        inner: the inner solver, for the title (the closed-form and K-step figures must not look alike).
    """
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
    for ax, zoom in zip(axes, (False, True)):
        for name, cur in results["curves"].items():
            n, mean = np.array(cur["n"]), np.array(cur["mean"])
            keep = n <= 4 * n_inner if zoom else np.ones_like(n, dtype=bool)
            color = COLORS.get(name)
            ax.plot(n[keep], mean[keep], "-o", ms=2.5, color=color, label=LABELS.get(name, name))
            ax.fill_between(n[keep], np.array(cur["p10"])[keep], np.array(cur["p90"])[keep], color=color,
                            alpha=0.18, lw=0)
        if results.get("noise_var") and "MSE" in ylabel:
            ax.axhline(results["noise_var"], color="k", ls=":", lw=1, label="noise variance σ²")
        ax.axvline(n_inner, color="tab:red", ls="--", lw=0.8, label=f"n_inner = {n_inner}")
        ax.set_xscale("log")
        if "MSE" in ylabel:
            ax.set_yscale("log")
        ax.set_xlabel("training points n of the new task")
        ax.set_ylabel(f"{ylabel} (mean, 10–90% band)")
        ax.set_title("zoom: n ≤ 4·n_inner" if zoom else f"full range (d = {d})")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    where = f"x = {x}; inner loop: {inner}" if inner else f"x = {x}"
    fig.suptitle(f"{ylabel} vs n after {meta_steps} meta-steps ({where})")
    return fig


def weights_figure(results: dict) -> Figure:
    """|c| against feature index at each logged step, and a heatmap of |c| over meta-steps."""
    plt = _plt()
    hist = results["history"]
    steps = [h["step"] for h in hist]
    W = np.abs(np.array([h["feature_weights"] for h in hist]))  # (logged steps, d)
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(13, 7.5), gridspec_kw={"height_ratios": [1.2, 1]})
    cmap = plt.get_cmap("viridis")
    for i, (s, w) in enumerate(zip(steps, W)):
        a1.plot(np.arange(len(w)), w, lw=0.8, color=cmap(i / max(1, len(W) - 1)), label=f"step {s}")
    for k in results["support"]:
        a1.axvline(k, color="tab:red", lw=0.5, alpha=0.5)
    a1.set_xlabel("feature index k (0: constant, 2k-1: sin kπx, 2k: cos kπx)")
    a1.set_ylabel("|c_k|")
    a1.set_title("feature weights at each logged step (red lines: true support S)")
    a1.legend(fontsize=7, ncol=min(6, len(W)), loc="upper right")
    im = a2.imshow(W, aspect="auto", interpolation="nearest", cmap="magma",
                   extent=(-0.5, W.shape[1] - 0.5, steps[-1] + 0.5, steps[0] - 0.5))
    a2.set_xlabel("feature index k")
    a2.set_ylabel("meta-step")
    fig.colorbar(im, ax=a2, label="|c_k|")
    return fig


def example_figure(results: dict) -> Figure:
    """One test task at n = n_inner: truth, fits, training points."""
    plt = _plt()
    ex = results["example"]
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(ex["x"], ex["truth"], "k-", lw=2, label="true function")
    for name in ("meta", "init"):
        if name in ex:
            ax.plot(ex["x"], ex[name], color=COLORS[name], lw=1.2, label=f"fit with {LABELS[name]}")
    ax.plot(ex["x_train"], ex["y_train"], "o", color="tab:red", ms=4, label=f"{ex['n']} training points")
    lo, hi = np.min(ex["truth"]), np.max(ex["truth"])
    pad = 0.6 * (hi - lo)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel("x")
    ax.legend(fontsize=8)
    ax.set_title(f"a new task fitted from n = {ex['n']} points")
    return fig


def lr_comparison_figure(results: dict, *, n_inner: int) -> Figure:
    """fourier-classification: meta-learned test error per inner step size (left) and the share of the
    weights' squared norm on the true support during meta-training (right)."""
    import torch

    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 4.4))
    first = next(iter(results["runs"].values()))["curves"]
    for name, style in (("init", "tab:orange"), ("oracle", "tab:green"), ("chance", "tab:gray")):
        a1.plot(first[name]["n"], first[name]["mean"], "-", color=style, label=name)
    for (lr, res), color in zip(results["runs"].items(), ("tab:blue", "tab:purple", "tab:cyan", "tab:red")):
        cur = res["curves"]["meta"]
        a1.plot(cur["n"], cur["mean"], "-o", ms=3, color=color, label=f"meta-learned, inner lr {lr}")
        a1.fill_between(cur["n"], cur["p10"], cur["p90"], color=color, alpha=0.15, lw=0)
        s = results["support"]
        steps = [h["step"] for h in res["history"]]
        w = torch.tensor([h["feature_weights"] for h in res["history"]]).abs()
        on_s = (w[:, s] ** 2).sum(1) / (w ** 2).sum(1)
        a2.plot(steps, on_s.tolist(), "-o", ms=3, color=color, label=f"inner lr {lr}")
    a1.axvline(n_inner, color="tab:red", ls="--", lw=0.8)
    a1.set(xscale="log", xlabel="training points n of the new task", ylabel="test error (mean, 10–90% band)",
           title="meta-learned weights per inner step size")
    a2.set(xlabel="meta-step", ylabel="share of ||c||² on the true support S", title="weight evolution")
    for ax in (a1, a2):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    return fig
