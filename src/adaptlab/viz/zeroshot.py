"""Figures of the zero-shot experiments (zsl-wordnet, zsl-animals), drawn from their results dicts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def zsl_methods_figure(results: dict, methods: Sequence[str], zsl_title: str = "ZSL top-1") -> Figure:
    """ZSL top-1 and GZSL harmonic mean (mean ± 95% CI over splits), one bar per method, grouped by label kind."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ks = list(results["summary"])
    w = 0.8 / len(methods)
    for j, m in enumerate(methods):
        for a, key in enumerate(("zsl", "gzsl_h")):
            vals = [results["summary"][k][m][key]["mean"] for k in ks]
            errs = [results["summary"][k][m][key]["ci95"] for k in ks]
            axes[a].bar([i + j * w for i in range(len(ks))], vals, w, yerr=errs, label=m, capsize=3)
    for a, title in enumerate((zsl_title, "GZSL harmonic mean")):
        axes[a].set_xticks([i + 0.4 - w / 2 for i in range(len(ks))], [f"labels: {k}" for k in ks])
        axes[a].set(title=title, ylim=(0, 1))
    axes[0].axhline(results["chance_zsl"], color="k", ls=":", lw=1, label="chance")
    axes[0].legend(fontsize=8)
    return fig


def zsl_table(summary: dict, methods: Sequence[str]) -> list[str]:
    """The markdown rows (header included) of ZSL / GZSL mean ± 95% CI per label kind and method (in ``methods``
    order); with calibrated stacking in the summary (``gzsl_h_cal``) its seen / unseen / H columns follow."""
    keys = ["zsl", "gzsl_seen", "gzsl_unseen", "gzsl_h"]
    head = ["ZSL top-1", "GZSL seen", "GZSL unseen", "GZSL H"]
    if any("gzsl_h_cal" in r for d in summary.values() for r in d.values()):
        keys += ["gzsl_seen_cal", "gzsl_unseen_cal", "gzsl_h_cal"]
        head += ["calibrated seen", "calibrated unseen", "calibrated H"]
    lines = ["| labels | method | " + " | ".join(head) + " |", "|---|---|" + "---|" * len(head)]
    for k, d in summary.items():
        for m, r in ((m, d[m]) for m in methods if m in d):
            cell = [f"{r[key]['mean']:.3f} ± {r[key]['ci95']:.3f}" if key in r else "" for key in keys]
            lines.append(f"| {k} | {m} | " + " | ".join(cell) + " |")
    return lines
