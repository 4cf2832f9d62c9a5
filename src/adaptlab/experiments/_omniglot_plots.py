"""Figures and the markdown summary of the Omniglot experiments (drawn from results.json only)."""

from __future__ import annotations

from pathlib import Path

from adaptlab.io import save_figure

_LABELS = {"small1": "minimal set 1", "small2": "minimal set 2", "small": "union of both"}


def _rows(results) -> list[tuple[str, str, dict]]:
    """(background, row name, 20-run result) for every trained row."""
    return [(bg, name, r) for bg, res in results["backgrounds"].items() for name, r in res["oneshot20"].items()]


def figures(results: dict, cfg, out_dir: Path) -> list[str]:
    import matplotlib.pyplot as plt

    names = []
    pub = results["published"]
    # 1. 20-run error against wall-clock training time
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for bg, res in results["backgrounds"].items():
        h = res["history"]
        ax.plot([s / 60 for s in h["curve_seconds"]], h["curve_error"], marker="o", ms=3,
                label=f"{results['method']}, {_LABELS[bg]}")
    for key, style in (("deep convnet (minimal 1)", ":"), ("deep convnet (minimal 2)", "-."),
                       ("modified Hausdorff distance", "--")):
        ax.axhline(pub[key], color="gray", ls=style, lw=1, label=f"{key} (published) {pub[key]}%")
    ax.axhline(20, color="red", lw=0.8, label="target 20%")
    ax.set(xlabel="training wall-clock time (min)", ylabel="20-run one-shot error (%)", ylim=(0, 100),
           title="Omniglot 20-way 1-shot (20 runs) during training")
    ax.legend(fontsize=7)
    save_figure(fig, out_dir / "error_vs_time.png")
    names.append("error_vs_time.png")
    # 2. final 20-run errors, one bar per row, with published references
    rows = _rows(results)
    labels = [f"{n}\n{_LABELS[bg]}" for bg, n, _ in rows] + ["MHD\n(ours)"] * ("mhd" in results)
    vals = [r["error"] for _, _, r in rows] + ([results["mhd"]["error"]] if "mhd" in results else [])
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(vals) + 2), 4.2))
    bars = ax.bar(range(len(vals)), vals, color="tab:blue")
    ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.axhline(pub["deep convnet (minimal 1)"], color="gray", ls=":", lw=1, label="deep convnet, minimal 1 (24.0)")
    ax.axhline(pub["modified Hausdorff distance"], color="gray", ls="--", lw=1, label="published MHD (38.8)")
    ax.axhline(20, color="red", lw=0.8, label="target 20%")
    ax.set_xticks(range(len(vals)), labels, fontsize=7)
    ax.set(ylabel="20-run error (%)", ylim=(0, 100), title="Omniglot one-shot benchmark (lower is better)")
    ax.legend(fontsize=7)
    save_figure(fig, out_dir / "oneshot20_error.png")
    names.append("oneshot20_error.png")
    # 3. episodic accuracy with 95% CIs on held-out alphabets
    ep = [(bg, n, setting, v) for bg, res in results["backgrounds"].items()
          for n, rows_ in res["episodic"].items() for setting, v in rows_.items()]
    if ep:
        fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * len(ep) + 2), 4.2))
        ax.bar(range(len(ep)), [100 * v["accuracy"] for *_, v in ep],
               yerr=[100 * v["ci95"] for *_, v in ep], capsize=2, color="tab:green")
        ax.set_xticks(range(len(ep)), [f"{n} {bg}\n{s}" for bg, n, s, _ in ep], fontsize=6, rotation=90)
        ax.set(ylabel="accuracy (%) with 95% CI", ylim=(0, 100),
               title="N-way K-shot on alphabets unseen in training")
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
