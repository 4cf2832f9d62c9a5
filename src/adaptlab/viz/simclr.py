"""Figures of the simclr-omniglot experiment, drawn from its results dict.

Each function returns a matplotlib Figure; save it with :func:`adaptlab.io.save_figure` (which closes it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Display names of the rows.
LABELS = {"pixels": "pixels", "random": "random encoder", "simclr": "SimCLR (frozen)",
          "protonet": "ProtoNet (scratch)", "simclr+protonet": "ProtoNet from SimCLR"}


def simclr_curve_figure(results: dict) -> Figure:
    """20-run error against training step of each trained row, with the untrained rows and references."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, h in results["history"].items():
        ax.plot(h["curve_step"], h["curve_error"], marker="o", ms=3, label=LABELS.get(name, name))
    for name, style in (("pixels", "--"), ("random", ":")):
        ax.axhline(results["oneshot20"][name]["error"], color="gray", ls=style, lw=1, label=LABELS[name])
    ax.axhline(results["protonet_small1_reference"], color="red", lw=0.8,
               label=f"ProtoNet, minimal set 1, 800 steps ({results['protonet_small1_reference']}%)")
    ax.axhline(results["published"]["deep convnet (full)"], color="black", ls="-.", lw=0.8,
               label=f"deep convnet, full background ({results['published']['deep convnet (full)']}%, published)")
    ax.set(xlabel="training step (SimCLR: images x 2 views; ProtoNet: episodes)", ylabel="20-run error (%)",
           ylim=(0, 100), title=f"Omniglot 20 runs during training ({results['background']})")
    ax.legend(fontsize=7)
    return fig


def simclr_accuracy_figure(results: dict) -> Figure:
    """Grouped bars: accuracy of every row on the 20 runs and on each N-way K-shot setting."""
    import matplotlib.pyplot as plt

    settings = ["20 runs"] + list(next(iter(results["episodic"].values()), {}))
    rows = results["rows"]
    fig, ax = plt.subplots(figsize=(max(6.4, 1.6 * len(settings) + 2), 4.2))
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        vals = [100 - results["oneshot20"][row]["error"]]
        vals += [100 * results["episodic"][row][s]["accuracy"] for s in settings[1:]] if results["episodic"] else []
        bars = ax.bar([j + (i - (len(rows) - 1) / 2) * width for j in range(len(vals))], vals, width,
                      label=LABELS.get(row, row))
        ax.bar_label(bars, fmt="%.0f", fontsize=6)
    ax.set_xticks(range(len(settings)), settings, fontsize=8)
    ax.set(ylabel="accuracy (%)", ylim=(0, 125), title="Frozen features vs trained ProtoNet (higher is better)")
    ax.legend(fontsize=7, loc="upper left", ncol=3)
    return fig
