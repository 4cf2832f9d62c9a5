"""Figure of mtl-tagging: chunk F1 per test domain for each supervision setting, with 95% CIs over seeds.

Example::

    >>> res = {"domains": ["a", "b"], "settings": ["chunk", "pos@1"], "n_train": 10,
    ...        "chunk_f1": {"a": {"chunk": [80.0, 1.0], "pos@1": [82.0, 0.5]},
    ...                     "b": {"chunk": [70.0, 2.0], "pos@1": [71.0, 1.5]}}}
    >>> fig = layer_supervision_figure(res)
    >>> len(fig.axes)
    1
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_COLORS = {"chunk": "0.55", "pos@top": "tab:blue", "pos@1": "tab:red"}


def layer_supervision_figure(results: dict) -> Figure:
    """Grouped bars: one group per test domain, one bar per setting (mean chunk F1, CI as error bar)."""
    import matplotlib.pyplot as plt

    doms, ms = results["domains"], results["settings"]
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(doms), 4.2))
    w = 0.8 / len(ms)
    lo = min(results["chunk_f1"][d][m][0] - results["chunk_f1"][d][m][1] for d in doms for m in ms)
    for j, m in enumerate(ms):
        xs = [i + (j - (len(ms) - 1) / 2) * w for i in range(len(doms))]
        ys = [results["chunk_f1"][d][m][0] for d in doms]
        es = [results["chunk_f1"][d][m][1] for d in doms]
        ax.bar(xs, ys, w, yerr=es, capsize=3, label=m, color=_COLORS.get(m))
    ax.set_xticks(range(len(doms)), doms)
    ax.set_ylim(max(0.0, lo - 5), 100)
    ax.set_ylabel("chunk span F1 (%)")
    ax.set_title(f"Chunking across domains (trained on {results['n_train']} sentences of one domain)")
    ax.legend(title="POS supervision", fontsize=8)
    fig.tight_layout()
    return fig
