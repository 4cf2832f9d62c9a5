"""Figures of the vision-transformer studies (captioning, vit-windowed), drawn from results.json only.

Example::

    >>> r = {"decoders": {"joint": {"train_loss": [2.0, 1.0, 0.5]}}}
    >>> caption_training_figure(r).axes[0].get_yscale()
    'log'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _smooth(y, w: int) -> np.ndarray:
    y = np.asarray(y, dtype=float)
    w = max(1, min(w, len(y)))
    return np.convolve(y, np.ones(w) / w, mode="valid")


def caption_training_figure(results: dict) -> Figure:
    """Teacher-forced training loss of each decoder (running mean over 20 steps)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, rec in results["decoders"].items():
        ax.plot(_smooth(rec["train_loss"], 20), label=name)
    ax.set(xlabel="step", ylabel="training loss (cross-entropy)", yscale="log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig


def caption_attention_figure(example: dict, grid: int, title: str = "") -> Figure:
    """Each generated word's attention over the image patches (last decoder layer, mean over heads)."""
    plt = _plt()
    n = len(example["image"])
    cols = max(len(w) for w in example["words"]) + 1
    fig, axes = plt.subplots(n, cols, figsize=(1.6 * cols, 1.8 * n), squeeze=False)
    for i in range(n):
        img = np.asarray(example["image"][i])
        words = example["words"][i]
        maps = np.asarray(example["maps"][i])  # (T, M): row t is the query that predicts word t
        axes[i][0].imshow(img, cmap="gray")
        axes[i][0].set_title("image", fontsize=7)
        for t in range(cols - 1):
            ax = axes[i][t + 1]
            if t < len(words):
                m = maps[t].reshape(grid, grid)
                ax.imshow(img, cmap="gray")
                ax.imshow(np.kron(m, np.ones((img.shape[0] // grid, img.shape[1] // grid))), cmap="magma",
                          alpha=0.6)
                ax.set_title(f"→ {words[t]}", fontsize=7)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"{title}: attention of the query predicting each word" if title else "attention", fontsize=9)
    fig.tight_layout()
    return fig


def vit_accuracy_figure(results: dict) -> Figure:
    """Test accuracy against canvas size for each attention variant (error bars: ``accuracy_ci95``, if any)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ci = results.get("accuracy_ci95", {})
    for name, per in results["accuracy"].items():
        sizes = sorted(int(s) for s in per)
        err = [ci.get(name, {}).get(str(s), 0.0) for s in sizes]
        ax.errorbar(sizes, [per[str(s)] for s in sizes], yerr=err, fmt="o-", capsize=3, label=name)
    ax.set(xlabel="canvas side (px)", ylabel="test accuracy (%)", xscale="log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def vit_cost_figure(results: dict) -> Figure:
    """Counted forward FLOPs (left) and measured forward time (right) of global vs windowed models."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    cost = results["cost"]
    timings = results.get("timings", {})
    cpu = "forward_cpu_seconds" in timings
    times = timings.get("forward_cpu_seconds", timings.get("forward_seconds", {}))
    for name, per in cost.items():
        sizes = sorted(int(s) for s in per)
        axes[0].plot(sizes, [per[str(s)] for s in sizes], "o-", label=name)
        if name in times:
            ts = sorted(int(s) for s in times[name])
            axes[1].plot(ts, [times[name][str(s)] for s in ts], "o-", label=name)
    axes[0].set(xlabel="canvas side (px)", ylabel="forward FLOPs per image", xscale="log", yscale="log")
    axes[1].set(xlabel="canvas side (px)", ylabel=f"forward {'CPU ' if cpu else ''}seconds per batch",
                xscale="log", yscale="log")
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
