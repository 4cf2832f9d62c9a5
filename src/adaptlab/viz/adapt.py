"""Figures of the surgical fine-tuning study (surgical-finetune), drawn from its results dict.

Each function returns a matplotlib Figure; save it with :func:`adaptlab.io.save_figure` (which closes it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def block_heatmap_figure(results: dict, n: str | None = None) -> Figure:
    """Shift x variant heat map of target test accuracy (mean over seeds) at ``n`` target images."""
    import matplotlib.pyplot as plt
    import numpy as np

    n = n or str(results["n_target"])
    shifts = list(results["shifts"])
    variants = list(results["shifts"][shifts[0]]["n"][n])
    acc = np.array([[results["shifts"][s]["n"][n][v]["acc"] for v in variants] for s in shifts])
    fig, ax = plt.subplots(figsize=(1.1 * len(variants) + 2.5, 0.55 * len(shifts) + 1.6))
    im = ax.imshow(acc, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for i in range(len(shifts)):
        best = max(range(len(variants)), key=lambda j: acc[i, j])
        for j in range(len(variants)):
            ax.text(j, i, f"{acc[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="k" if acc[i, j] > 0.6 else "w", fontweight="bold" if j == best else None)
    ax.set_xticks(range(len(variants)), variants, rotation=30, ha="right")
    ax.set_yticks(range(len(shifts)), shifts)
    ax.set_title(f"target test accuracy, {n} target images (mean over seeds; bold: best)")
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    return fig


def data_curve_figure(results: dict) -> Figure:
    """Accuracy vs number of target images, one panel per shift, one line per variant (mean ± 95% CI)."""
    import matplotlib.pyplot as plt

    shifts = list(results["shifts"])
    cols = min(4, len(shifts))
    rows = (len(shifts) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax, s in zip(axes.flat, shifts):
        per_n = results["shifts"][s]["n"]
        sizes = sorted(per_n, key=int)
        variants = list(dict.fromkeys(v for k in sorted(sizes, key=lambda k: -len(per_n[k])) for v in per_n[k]))
        for v in variants:
            ks = [k for k in sizes if v in per_n[k]]
            ax.errorbar([per_n[k][v]["n_used"] for k in ks], [per_n[k][v]["acc"] for k in ks],
                        yerr=[per_n[k][v]["ci95"] for k in ks], fmt="-o", ms=3, capsize=2, label=v)
        ax.set(xscale="log", title=s, xlabel="target images", ylabel="test accuracy", ylim=(0, 1))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(shifts):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


__all__ = ["block_heatmap_figure", "data_curve_figure"]
