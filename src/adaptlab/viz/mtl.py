"""Figures of the multi-task experiments (mtl-multimnist, mtl-toy), drawn from their results dicts.

Each function returns a matplotlib Figure; save it with :func:`adaptlab.io.save_figure` (which closes it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_COLORS = {"single": "k", "equal": "tab:blue", "uncertainty": "tab:orange", "gradnorm": "tab:green",
           "dwa": "tab:olive", "mgda-ub": "tab:red", "mgda": "tab:pink", "pcgrad": "tab:purple",
           "cagrad": "tab:brown", "mean": "tab:blue"}


def pareto_figure(results: dict) -> Figure:
    """Left vs right test accuracy: the fixed-weight sweep as a front, adaptive methods as mean ± std."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.2, 5.2))
    pts = sorted(results["pareto"], key=lambda p: p["w_left"])
    if pts:
        ax.plot([p["left"] for p in pts], [p["right"] for p in pts], "o--", color="0.55", ms=4,
                label="fixed weights (sweep, seed 0)")
        for p in pts:
            ax.annotate(f"w={p['w_left']:g}", (p["left"], p["right"]), fontsize=7, color="0.4",
                        xytext=(3, -9), textcoords="offset points")
    markers = "sDv^PXhp<>"
    for i, (m, e) in enumerate(results["methods"].items()):
        # hollow markers of different shapes and sizes: methods that land on the same point stay visible
        single = m == "single"
        ax.errorbar(e["left"], e["right"], xerr=e["left_std"], yerr=e["right_std"],
                    fmt="*" if single else markers[i % len(markers)], ms=13 if single else 11 - (i % 4),
                    mfc="none" if not single else _COLORS.get(m), mew=1.6, color=_COLORS.get(m, None), capsize=2,
                    label=f"{m} (mean ± std over seeds)" if single else m, zorder=3)
    ax.set_xlabel("top-left digit accuracy (%)")
    ax.set_ylabel("bottom-right digit accuracy (%)")
    ax.set_title("MultiMNIST: accuracy trade-off")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig


def conflict_figure(results: dict, steps: list[int]) -> Figure:
    """Cosine between the two tasks' shared gradients during training (smoothed), one line per method.

    ``steps`` are the global training steps at which the cosines were measured."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for m, c in results["conflict"].items():
        cs = c["cosine"]
        if not cs:
            continue
        k = max(1, len(cs) // 25)
        smooth = [sum(cs[max(0, i - k + 1):i + 1]) / len(cs[max(0, i - k + 1):i + 1]) for i in range(len(cs))]
        ax.plot(steps[:len(cs)], smooth, color=_COLORS.get(m), label=m)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel("training step")
    ax.set_ylabel("cos(∇ L_left, ∇ L_right), shared params")
    k = max(1, max((len(c["cosine"]) for c in results["conflict"].values()), default=0) // 25)
    ax.set_title("Gradient conflict during training (seed 0" + (f", {k}-point moving average)" if k > 1 else ")"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return fig


def cka_figure(results: dict) -> Figure:
    """Heat map of linear CKA between the encoders' features on test images."""
    import matplotlib.pyplot as plt

    names, M = results["cka"]["names"], results["cka"]["matrix"]
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(names), 0.6 + 0.7 * len(names)))
    im = ax.imshow(M, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{M[i][j]:.2f}", ha="center", va="center", fontsize=7,
                    color="w" if M[i][j] < 0.6 else "k")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title("Linear CKA of encoder features (seed 0)")
    return fig


def toy_figure(result: dict, caption: str, schedule: str = "") -> Figure:
    """Loss contours of (L1 + L2)/2 with the Pareto set and each method's trajectories from each start.

    ``schedule`` (e.g. "Adam, lr 0.005, 20000 steps") is printed in the figure title."""
    import matplotlib.pyplot as plt
    import numpy as np

    methods = result["methods"]
    fig, axes = plt.subplots(1, len(methods), figsize=(3.6 * len(methods), 3.9), sharey=True)
    X, Y, Z = (np.asarray(result["grid"][k]) for k in ("x", "y", "loss"))
    P = np.asarray(result["grid"]["pareto"], dtype=float)
    for ax, m in zip(np.atleast_1d(axes), methods):
        ax.contourf(X, Y, Z, levels=30, cmap="viridis", alpha=0.8)
        if result.get("pareto_points") is not None:
            pp = np.asarray(result["pareto_points"])
            ax.plot(pp[:, 0], pp[:, 1], color="gold", lw=3)
        else:
            ax.contour(X, Y, P, levels=[0.0], colors="gold", linewidths=2.2)
        for path_pts in result["paths"][m]:
            p = np.asarray(path_pts)
            ax.plot(p[:, 0], p[:, 1], color="w", lw=1.4)
            ax.plot(p[0, 0], p[0, 1], "o", color="w", ms=4)
            ax.plot(p[-1, 0], p[-1, 1], "*", color="red", ms=9)
        ax.set_title({"mean": "Adam on mean loss", "mgda": "MGDA", "pcgrad": "PCGrad", "cagrad": "CAGrad"}.get(m, m))
        ax.set_xlabel("θ₁")
    np.atleast_1d(axes)[0].set_ylabel("θ₂")
    if schedule:
        fig.text(0.5, 0.995, f"Each method's direction followed by {schedule}; contours: (L₁ + L₂)/2; gold: Pareto "
                 "set; white: paths from each start (o) to the end point (red star)", ha="center", va="top",
                 fontsize=9)
    fig.suptitle(caption, fontsize=9, y=0.02, va="top")
    fig.tight_layout(rect=(0, 0, 1, 0.95) if schedule else (0, 0, 1, 1))
    return fig


def many_task_figure(results: dict) -> Figure:
    """Mtl-omniglot: mean test accuracy per method (all / low-data / other tasks), and its gradient conflict."""
    import matplotlib.pyplot as plt

    ms = results["methods"]
    names = list(ms)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    w = 0.27
    for k, (key, label, color) in enumerate((("mean", "all tasks", "tab:blue"),
                                             ("few", "low-data tasks", "tab:orange"),
                                             ("many", "other tasks", "tab:green"))):
        xs = [i + (k - 1) * w for i, m in enumerate(names) if key in ms[m]]
        ax.bar(xs, [ms[m][key] for m in names if key in ms[m]], w,
               yerr=[ms[m][key + "_std"] for m in names if key in ms[m]], color=color, capsize=2, label=label)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy (%), mean ± std over seeds")
    ax.set_title("Multi-task Omniglot: one alphabet per task")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    conf = [m for m in names if "cosine" in ms[m]]
    bx.bar(range(len(conf)), [ms[m]["cosine"] for m in conf], yerr=[ms[m]["cosine_std"] for m in conf],
           color="tab:purple", capsize=2)
    for i, m in enumerate(conf):
        bx.annotate(f"{100 * ms[m]['negative']:.0f}% < 0", (i, ms[m]["cosine"]), fontsize=7, ha="center",
                    xytext=(0, 4), textcoords="offset points")
    bx.axhline(0, color="k", lw=0.8)
    bx.set_xticks(range(len(conf)), conf, rotation=30, ha="right", fontsize=8)
    bx.set_ylabel("mean pairwise cosine of task gradients")
    bx.set_title("Gradient conflict on the shared parameters")
    bx.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def task_correlation_figure(results: dict) -> Figure:
    """Mtl-omniglot: the relation prior's learned task correlation matrices (seed 0), one per fc layer."""
    import matplotlib.pyplot as plt

    rel, tasks, few = results["relation"], results["tasks"], set(results["few_tasks"])
    mats = rel["correlation"][0]
    labels = [t + (" *" if t in few else "") for t in tasks]
    n = len(tasks)
    fig, axes = plt.subplots(1, len(mats), figsize=(0.9 + 4.2 * len(mats), 1.6 + 0.45 * n), squeeze=False)
    for ax, M, layer in zip(axes[0], mats, rel["layers"]):
        im = ax.imshow(M, vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_xticks(range(n), labels, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(n), labels, fontsize=7)
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{M[i][j]:.2f}", ha="center", va="center", fontsize=6)
        ax.set_title(f"learned task correlation, {layer}")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle("Relation prior (seed 0); * = low-data task", fontsize=9)
    fig.tight_layout()
    return fig
