"""The report of the Omniglot experiments: figure files (drawn by :mod:`adaptlab.viz.omniglot`) and summary."""

from __future__ import annotations

from pathlib import Path

from adaptlab.io import save_figure
from adaptlab.viz.omniglot import LABELS as _LABELS
from adaptlab.viz.omniglot import episodic_figure, error_vs_time_figure, oneshot20_figure
from adaptlab.viz.omniglot import rows as _rows


def figures(results: dict, cfg, out_dir: Path) -> list[str]:
    names = ["error_vs_time.png", "oneshot20_error.png"]
    save_figure(error_vs_time_figure(results), out_dir / names[0])
    save_figure(oneshot20_figure(results), out_dir / names[1])
    fig = episodic_figure(results)
    if fig is not None:
        save_figure(fig, out_dir / "episodic_accuracy.png")
        names.append("episodic_accuracy.png")
    return names


def summary(results: dict, cfg) -> str:
    lines = [f"Method: {results['method']}. 20-run error = mean % error over the 20 runs of all_runs.zip "
             "(20-way 1-shot within an evaluation alphabet; chance 95%).", "",
             "| trained on | row | classes | train s | 20-run error % |", "|---|---|---|---|---|"]
    for bg, name, r in _rows(results):
        res = results["backgrounds"][bg]
        lines.append(f"| {_LABELS[bg]} | {name} | {res['classes']} | {res['train_seconds']:.0f} | "
                     f"{r['error']:.1f} |")
    if "mhd" in results:
        lines.append(f"| (no training) | modified Hausdorff distance | - | 0 | {results['mhd']['error']:.2f} |")
    lines += ["", "N-way K-shot accuracy (%) +- 95% CI on held-out alphabets:", ""]
    for bg, res in results["backgrounds"].items():
        for name, rows in res["episodic"].items():
            cells = ", ".join(f"{s}: {100 * v['accuracy']:.1f} +- {100 * v['ci95']:.1f}" for s, v in rows.items())
            lines.append(f"- {name}, trained on {_LABELS[bg]} (test alphabets "
                         f"{', '.join(res['held_out_alphabets'])}; {next(iter(rows.values()))['episodes']} "
                         f"episodes each): {cells}")
    lines += ["", "Published (Lake et al. 2015): " + "; ".join(f"{k} {v}%" for k, v in results["published"].items())]
    return "\n".join(lines)
