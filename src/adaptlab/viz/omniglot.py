"""Figures of the Omniglot experiments (omniglot-*), drawn from their results dicts.

Each function returns a matplotlib Figure; save it with :func:`adaptlab.io.save_figure` (which closes it).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Display names of the background sets.
LABELS = {"small1": "minimal set 1", "small2": "minimal set 2", "small": "union of both"}


def rows(results: dict) -> list[tuple[str, str, dict]]:
    """(background, row name, 20-run result) for every trained row."""
    return [(bg, name, r) for bg, res in results["backgrounds"].items() for name, r in res["oneshot20"].items()]


def error_vs_time_figure(results: dict) -> Figure:
    """20-run error against wall-clock training time, one line per background, published references."""
    import matplotlib.pyplot as plt

    pub = results["published"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for bg, res in results["backgrounds"].items():
        h = res["history"]
        ax.plot([s / 60 for s in h["curve_seconds"]], h["curve_error"], marker="o", ms=3,
                label=f"{results['method']}, {LABELS[bg]}")
    for key, style in (("deep convnet (minimal 1)", ":"), ("deep convnet (minimal 2)", "-."),
                       ("modified Hausdorff distance", "--")):
        ax.axhline(pub[key], color="gray", ls=style, lw=1, label=f"{key} (published) {pub[key]}%")
    ax.axhline(20, color="red", lw=0.8, label="target 20%")
    ax.set(xlabel="training wall-clock time (min)", ylabel="20-run one-shot error (%)", ylim=(0, 100),
           title="Omniglot 20-way 1-shot (20 runs) during training")
    ax.legend(fontsize=7)
    return fig


def oneshot20_figure(results: dict) -> Figure:
    """Final 20-run errors, one bar per row (and the MHD baseline when present), with published references."""
    import matplotlib.pyplot as plt

    pub = results["published"]
    trained = rows(results)
    labels = [f"{n}\n{LABELS[bg]}" for bg, n, _ in trained] + ["MHD\n(ours)"] * ("mhd" in results)
    vals = [r["error"] for _, _, r in trained] + ([results["mhd"]["error"]] if "mhd" in results else [])
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(vals) + 2), 4.2))
    bars = ax.bar(range(len(vals)), vals, color="tab:blue")
    ax.bar_label(bars, fmt="%.1f", fontsize=7)
    used = {bg for bg, _, _ in trained}
    refs = [("deep convnet (minimal 1)", ":", "small1"), ("deep convnet (minimal 2)", "-.", "small2"),
            ("modified Hausdorff distance", "--", None)]
    for key, style, bg in refs:  # each minimal set's published convnet, the line its own bars compare with
        if bg is None or bg in used or not used & {"small1", "small2"}:
            ax.axhline(pub[key], color="gray", ls=style, lw=1, label=f"{key}, published: {pub[key]}%")
    ax.axhline(20, color="red", lw=0.8, label="target 20%")
    ax.set_xticks(range(len(vals)), labels, fontsize=7)
    ax.set(ylabel="20-run error (%)", ylim=(0, 100), title="Omniglot one-shot benchmark (lower is better)")
    ax.legend(fontsize=7)
    return fig


def episodic_figure(results: dict) -> Figure | None:
    """Episodic N-way K-shot accuracy with 95% CIs on held-out alphabets; None when nothing was evaluated."""
    import matplotlib.pyplot as plt

    ep = [(bg, n, setting, v) for bg, res in results["backgrounds"].items()
          for n, rows_ in res["episodic"].items() for setting, v in rows_.items()]
    if not ep:
        return None
    settings = sorted(dict.fromkeys(setting for *_, setting, _ in ep),
                      key=lambda st: [int(t) for t in re.findall(r"\d+", st)])  # 5-way before 20-way
    series = list(dict.fromkeys((bg, n) for bg, n, *_ in ep))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(settings) * max(1, len(series)) ** 0.5 + 3), 4.4))
    cmap = plt.get_cmap("tab10")
    for j, (bg, n) in enumerate(series):  # one colour per trained row, grouped by N-way K-shot setting
        vals = {setting: v for b, m, setting, v in ep if (b, m) == (bg, n)}
        xs = [i + (j - (len(series) - 1) / 2) * width for i, st in enumerate(settings) if st in vals]
        ax.bar(xs, [100 * vals[st]["accuracy"] for st in settings if st in vals], width,
               yerr=[100 * vals[st]["ci95"] for st in settings if st in vals], capsize=2, color=cmap(j % 10),
               label=f"{n}, {LABELS.get(bg, bg)}")
    ax.set_xticks(range(len(settings)), settings)
    ax.set(xlabel="episode setting (N-way K-shot)", ylabel="accuracy (%) with 95% CI", ylim=(0, 100),
           title="N-way K-shot on alphabets unseen in training")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    return fig
