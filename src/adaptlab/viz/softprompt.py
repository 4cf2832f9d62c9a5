"""Figures of the soft-prompt experiments (soft-prompt-pluralize, soft-prompt-qa), drawn from results.json only.

Example::

    >>> r = {"soft": {"prompt_len": 2, "loss": [2.0, 1.0], "eval": [{"step": 0, "val_accuracy": 0.1},
    ...      {"step": 2, "val_accuracy": 0.9}]}}
    >>> len(training_figure(r).axes)
    2
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

RUNS = {"soft": "soft prompt", "notebook": "soft prompt, notebook setting", "peft": "PEFT prompt tuning"}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def training_figure(results: dict, key: str = "val_accuracy", ylabel: str = "validation accuracy") -> Figure:
    """Training loss and ``key`` over steps for every soft-prompt run in ``results`` (soft, notebook, peft)."""
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for name, label in RUNS.items():
        r = results.get(name)
        if not r:
            continue
        a.plot(range(1, len(r["loss"]) + 1), r["loss"], label=f"{label} (P={r['prompt_len']})", lw=1)
        b.plot([e["step"] for e in r["eval"]], [e[key] for e in r["eval"]], "-o", ms=3, label=label)
    a.set(xlabel="step", ylabel="training loss", yscale="log", title="loss on the target token(s)")
    b.set(xlabel="step", ylabel=ylabel, ylim=(-0.02, 1.02), title=ylabel)
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def hard_vs_soft_figure(results: dict) -> Figure:
    """Validation accuracy of hard prompts with k demonstrations, with the soft prompts as horizontal lines."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    ks = [int(k) for k in results["hard"]]
    ax.plot(ks, [v["val_accuracy"] for v in results["hard"].values()], "-o", label="hard prompt, k demos")
    for (name, label), color in zip(RUNS.items(), ("tab:green", "tab:orange", "tab:red")):
        if name in results:
            ax.axhline(results[name]["val_accuracy"], color=color, ls="--", label=label)
    ax.set(xlabel="demonstrations k", ylabel="validation accuracy", ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def failure_figure(results: dict) -> Figure:
    """During training: wrong answers, and the share of them that are uninformative / top-20 frequent tokens."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    ev = results["soft"]["eval"]
    steps = [e["step"] for e in ev]
    n = max(1, results.get("n_val", 1))
    ax.plot(steps, [e["failures"]["n_wrong"] / n for e in ev], "-o", ms=3, label="wrong / validation nouns")
    ax.plot(steps, [e["failures"]["uninformative_share"] for e in ev], "-o", ms=3,
            label="uninformative share of wrong ('the', ',', '.', newline)")
    ax.plot(steps, [e["failures"]["top20_share"] for e in ev], "-o", ms=3,
            label="share of wrong among the 20 most frequent tokens")
    ax.set(xlabel="step", ylim=(-0.02, 1.02), title="what the model predicts when it fails")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def qa_curve_figure(results: dict) -> Figure:
    """soft-prompt-qa: test accuracy and valid rate per epoch for every soft-prompt variant."""
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for r in results["variants"].values():
        steps = [e["step"] / r["steps_per_epoch"] for e in r["eval"]]
        a.plot(steps, [e["accuracy"] for e in r["eval"]], "-o", ms=3, label=f"P={r['P']}, {r['init']}")
        b.plot(steps, [e["valid_rate"] for e in r["eval"]], "-o", ms=3, label=f"P={r['P']}, {r['init']}")
    for ax, key, title in ((a, "accuracy", "test accuracy (5 letters)"), (b, "valid_rate", "valid-letter rate")):
        ax.axhline(results["hard"][key], color="k", ls=":", label="question only")
        ax.set(xlabel="epoch", ylim=(-0.02, 1.02), title=title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    a.axhline(0.2, color="gray", ls="--", lw=0.8, label="chance")
    fig.tight_layout()
    return fig


def qa_finetune_figure(results: dict) -> Figure:
    """soft-prompt-qa: train and test accuracy of full fine-tuning vs a soft prompt by training-set size."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    ns = [int(n) for n in results["finetune"]]
    for who, color in (("full", "tab:red"), ("soft", "tab:green")):
        rs = list(results["finetune"].values())
        ax.plot(ns, [r[who]["train"]["accuracy"] for r in rs], "--o", color=color, label=f"{who}: train")
        ax.plot(ns, [r[who]["accuracy"] for r in rs], "-o", color=color, label=f"{who}: test")
    ax.set(xscale="log", xlabel="training questions n", ylabel="accuracy (5 letters)", ylim=(-0.02, 1.02),
           title="full fine-tuning vs soft prompt")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def cot_figure(results: dict) -> Figure:
    """soft-prompt-cot: held-out accuracy by loss mask (generated and given the gold reasoning), and the loss."""
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    rows = [("no prompt", results["no_prompt"])] + list(results["masks"].items())
    xs = range(len(rows))
    a.bar([x - 0.2 for x in xs], [r["accuracy"] for _, r in rows], 0.4, label="generated (parsed answer)")
    a.bar([x + 0.2 for x in xs], [r["given_reasoning_accuracy"] for _, r in rows], 0.4,
          label="given the gold reasoning")
    a.set_xticks(list(xs), [n for n, _ in rows])
    a.set(ylim=(0, 1.02), ylabel="held-out accuracy", title="loss on reasoning + answer vs answer only")
    a.legend(fontsize=7)
    for m, r in results["masks"].items():
        b.plot(range(1, len(r["loss"]) + 1), r["loss"], label=f"loss on {m}")
    b.set(xlabel="step", ylabel="training loss (masked tokens)", yscale="log")
    b.legend(fontsize=7)
    fig.tight_layout()
    return fig
