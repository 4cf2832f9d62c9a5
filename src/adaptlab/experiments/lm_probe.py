"""Probing a local language model (HW 4a): sampling temperature, and few-shot pluralization.

(ii) **Temperature.** For each T in ``temperatures`` the model writes ``samples`` continuations of "100 random
digits from 0 to 9" (T = 0 is greedy decoding). The first ``digits`` digits of each are pooled and tested for
uniformity with Pearson's chi-square (9 degrees of freedom); diversity is the entropy of the pooled digit
distribution (bits; 3.32 is uniform), the share of distinct digit bigrams among all bigrams, and the share of
distinct samples; validity is the share of samples that reach ``digits`` digits.

(v) **Few-shot beats zero-shot.** WordNet nouns (Debian ``wordnet-base``) with plurals from ``inflect``: the
model completes ``singular: W\\nplural:`` greedily after k demonstrations in the same format (k in ``plural_ks``,
k = 0 = zero-shot); accuracy is an exact match of the first word.

The larger-model and both-fail questions of HW 4a (iii, iv) need the second model (Gemma-3-270M) and are not
here yet. ``model=tiny-random`` (the quick form) is a random 2-layer GPT-2: chance numbers by construction.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from adaptlab.config import BaseConfig, check
from adaptlab.io import save_figure
from adaptlab.runner import Experiment

DIGITS_PROMPT = "Here are 100 random digits from 0 to 9, separated by spaces:"
TINY = "tiny-random"


@dataclass
class ProbeConfig(BaseConfig):
    model: str = "smollm2-135m-instruct"  # HF name, local folder, 'smollm2-135m-instruct' or 'tiny-random'
    temperatures: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0, 1.5, 2.0])  # T = 0: greedy
    samples: int = 8  # continuations per temperature
    digits: int = 100  # digits read from each continuation
    top_p: float = 1.0  # nucleus of the sampled temperatures (1 = plain temperature sampling)
    plural_n: int = 40  # test nouns for pluralization
    plural_ks: list[int] = field(default_factory=lambda: [0, 4])  # demonstrations (0 = zero-shot)
    batch_size: int = 16  # sequences per batch

    def __post_init__(self) -> None:
        super().__post_init__()
        check(len(self.temperatures) > 0 and all(0 <= t <= 10 for t in self.temperatures), "temperatures",
              self.temperatures, "a non-empty list of numbers in 0..10 (0 = greedy)")
        check(1 <= self.samples <= 256, "samples", self.samples, "an integer in 1..256")
        check(10 <= self.digits <= 500, "digits", self.digits, "an integer in 10..500")
        check(0 < self.top_p <= 1, "top_p", self.top_p, "a number in (0, 1]")
        check(1 <= self.plural_n <= 2000, "plural_n", self.plural_n, "an integer in 1..2000")
        check(len(self.plural_ks) > 0 and all(0 <= k <= 32 for k in self.plural_ks), "plural_ks", self.plural_ks,
              "a non-empty list of integers in 0..32")
        check(self.batch_size >= 1, "batch_size", self.batch_size, "a positive integer")


def _model(cfg: ProbeConfig):
    from adaptlab.lm.load import load_causal_lm, tiny_random_lm

    if cfg.model == TINY:
        return tiny_random_lm(n_positions=4096, seed=cfg.seed)
    return load_causal_lm(cfg.model, device=cfg.device)


def check_inputs(cfg: ProbeConfig) -> None:
    """WordNet and inflect are there (a missing Debian package is one line before any run folder)."""
    from adaptlab.data.text import plural_pairs

    plural_pairs(1, seed=cfg.seed)
    if cfg.model == "smollm2-135m-instruct":
        from adaptlab.lm.load import smollm2_gguf

        smollm2_gguf()
    elif cfg.model != TINY:
        _model(cfg)


def digit_stats(texts: list[str], digits: int) -> dict:
    """Chi-square uniformity test, entropy, distinct bigrams and validity of digit sequences."""
    from scipy.stats import chi2

    seqs = [re.findall(r"\d", t)[:digits] for t in texts]
    pooled = [d for s in seqs for d in s]
    n = len(pooled)
    counts = [pooled.count(str(d)) for d in range(10)]
    stat = sum((c - n / 10) ** 2 / (n / 10) for c in counts) if n else 0.0
    ent = -sum(c / n * math.log2(c / n) for c in counts if c) if n else 0.0
    bigrams = [a + b for s in seqs for a, b in zip(s, s[1:])]
    return {"n_digits": n, "counts": counts, "chi2": stat, "p_value": float(chi2.sf(stat, 9)) if n else 0.0,
            "entropy_bits": ent, "distinct_bigrams": len(set(bigrams)) / max(len(bigrams), 1),
            "distinct_samples": len(set(texts)) / max(len(texts), 1),
            "valid": sum(len(s) >= digits for s in seqs) / max(len(seqs), 1)}


def run(cfg: ProbeConfig, out_dir: Path, resume: bool = False) -> dict:
    import time

    import torch

    from adaptlab.data.text import plural_pairs
    from adaptlab.lm.decode import generate

    t0 = time.perf_counter()
    lm = _model(cfg)
    temps = {}
    for i, T in enumerate(cfg.temperatures):
        g = torch.Generator().manual_seed(cfg.seed * 1000 + i)
        texts = generate(lm, [DIGITS_PROMPT] * cfg.samples, max_new_tokens=2 * cfg.digits + 8, do_sample=T > 0,
                         temperature=T if T > 0 else 1.0, top_p=cfg.top_p, generator=g, batch_size=cfg.batch_size)
        temps[str(T)] = {**digit_stats(texts, cfg.digits), "example": texts[0][:200]}
    pairs = plural_pairs(cfg.plural_n + max(cfg.plural_ks), seed=cfg.seed)
    test, demos = pairs[:cfg.plural_n], pairs[cfg.plural_n:]
    plural = {}
    for k in cfg.plural_ks:
        prefix = "".join(f"singular: {s}\nplural: {p}\n\n" for s, p in demos[:k])
        outs = generate(lm, [f"singular: {s}\nplural:" for s, _ in test], prefix=prefix, max_new_tokens=6,
                        batch_size=cfg.batch_size)
        said = [(o.split() or [""])[0].strip(".,;") for o in outs]
        right = [int(a == p) for a, (_, p) in zip(said, test)]
        plural[str(k)] = {"accuracy": sum(right) / len(right), "examples": [[s, p, a] for (s, p), a in
                                                                           zip(test[:6], said[:6])]}
    return {"model": cfg.model, "temperature": temps, "plural": plural,
            "timings": {"seconds": time.perf_counter() - t0}}


def figures(results: dict, cfg: ProbeConfig, out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    tr = results["temperature"]
    Ts = [float(t) for t in tr]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for t, r in tr.items():
        tot = max(sum(r["counts"]), 1)
        axes[0].plot(range(10), [c / tot for c in r["counts"]], "-o", label=f"T = {t}")
    axes[0].axhline(0.1, color="k", ls=":", lw=1)
    axes[0].set(title="digit frequencies", xlabel="digit", ylabel="share")
    axes[0].legend(fontsize=7)
    axes[1].plot(Ts, [r["entropy_bits"] for r in tr.values()], "-o", label="entropy (bits; uniform 3.32)")
    axes[1].plot(Ts, [r["distinct_bigrams"] * 3.32 for r in tr.values()], "-s", label="distinct bigrams × 3.32")
    axes[1].set(title="diversity", xlabel="temperature")
    axes[1].legend(fontsize=7)
    axes[2].plot(Ts, [r["valid"] for r in tr.values()], "-o", label="valid samples")
    axes[2].plot(Ts, [r["p_value"] for r in tr.values()], "-s", label="chi-square p-value")
    axes[2].set(title="validity and uniformity", xlabel="temperature", ylim=(-0.02, 1.02))
    axes[2].legend(fontsize=7)
    save_figure(fig, out_dir / "temperature.png")
    fig, ax = plt.subplots(figsize=(5, 4))
    ks = list(results["plural"])
    ax.bar(ks, [results["plural"][k]["accuracy"] for k in ks])
    ax.set(title=f"pluralization, {cfg.plural_n} WordNet nouns", xlabel="demonstrations k", ylabel="exact match",
           ylim=(0, 1))
    save_figure(fig, out_dir / "plural.png")
    return ["temperature.png", "plural.png"]


def summary(results: dict, cfg: ProbeConfig) -> str:
    tiny = " (a random tiny GPT-2: chance numbers, a smoke test)" if results["model"] == TINY else ""
    lines = [f"Model `{results['model']}`{tiny}. {cfg.samples} samples of \"{DIGITS_PROMPT}\" per temperature, "
             f"first {cfg.digits} digits of each pooled (`temperature.png`).", "",
             "| T | digits | chi-square (9 df) | p | entropy bits | distinct bigrams | distinct samples | valid |",
             "|---|---|---|---|---|---|---|---|"]
    for t, r in results["temperature"].items():
        lines.append(f"| {t} | {r['n_digits']} | {r['chi2']:.1f} | {r['p_value']:.3g} | {r['entropy_bits']:.2f} | "
                     f"{r['distinct_bigrams']:.2f} | {r['distinct_samples']:.2f} | {r['valid']:.2f} |")
    lines += ["", f"Pluralization of {cfg.plural_n} WordNet nouns (exact match of the first word, `plural.png`): "
              + ", ".join(f"k = {k}: {r['accuracy']:.2f}" for k, r in results["plural"].items()) + "."]
    return "\n".join(lines)


EXPERIMENTS = [
    Experiment("lm-probe", "Probing a local LM: temperature vs uniformity/diversity of random digits, few-shot "
               "pluralization", ProbeConfig, run, figures, summary,
               quick={"model": TINY, "temperatures": [0.0, 1.0], "samples": 2, "digits": 10, "plural_n": 4,
                      "plural_ks": [0, 1]},
               check=check_inputs),
]
