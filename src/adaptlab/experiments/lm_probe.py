"""Probing a local language model (HW 4a): sampling temperature, and few-shot pluralization.

(ii) **Temperature.** For each T in ``temperatures`` the model writes ``samples`` continuations of "100 random
digits from 0 to 9" (T = 0 is greedy decoding). The first ``digits`` digits of each are pooled and tested for
uniformity with Pearson's chi-square (9 degrees of freedom); diversity is the entropy of the pooled digit
distribution (bits; 3.32 is uniform), the share of distinct digit bigrams among all bigrams, and the share of
distinct samples; validity is the share of samples that reach ``digits`` digits.

**Validity of other prompts.** At the same temperatures the model answers ``validity_samples`` times each of
four prompts whose answers can be checked: a number from 1 to 100, a capital letter, an English noun (a
WordNet noun lemma) and a country (a GeoNames country name). Per prompt and T: the share of valid answers, the
share of distinct answers among the valid ones, and the entropy (bits) of the valid answers.

(v) **Few-shot beats zero-shot.** WordNet nouns (Debian ``wordnet-base``) with plurals from ``inflect``: the
model completes ``singular: W\\nplural:`` greedily after k demonstrations in the same format (k in ``plural_ks``,
k = 0 = zero-shot); accuracy is an exact match of the first word.

(iii) **Where the larger model wins** and (iv) **where both fail** compare ``model`` with ``compare_model``
(off by default; ``--set compare_model=gemma-3-270m`` is the offline Gemma-3-270M base, under the Gemma Terms
of Use) on the same questions: 5-way capitals by cloze scoring (the option's own text), the same questions with
letter answers (letter binding), and ``arith_n`` sums of two 3-digit numbers answered greedily (exact match),
each with a Wilson 95% interval.

``model=tiny-random`` (the quick form) is a random 2-layer GPT-2: chance numbers by construction.
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
#: prompts whose answers can be checked (kind -> prompt); see :func:`parse_answer`
VALIDITY_PROMPTS = {"number": "Here is a random number from 1 to 100:",
                    "letter": "Here is a random capital letter from A to Z:",
                    "noun": "Here is a random English noun:",
                    "country": "Here is the name of a random country:"}
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
    compare_model: str = ""  # second model for (iii)/(iv): '' (skip), 'gemma-3-270m', HF name, folder, 'tiny-random'
    capitals_n: int = 100  # capitals questions for (iii)/(iv) (5 options each)
    arith_n: int = 50  # 3-digit additions for (iv)
    validity_samples: int = 16  # answers per (checkable prompt, temperature); 0 skips the validity study

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
        check(1 <= self.capitals_n <= 240, "capitals_n", self.capitals_n, "an integer in 1..240")
        check(1 <= self.arith_n <= 1000, "arith_n", self.arith_n, "an integer in 1..1000")
        check(0 <= self.validity_samples <= 256, "validity_samples", self.validity_samples,
              "an integer in 0..256 (0 = skip)")


def _model(cfg: ProbeConfig, name: str | None = None):
    from adaptlab.lm.load import load_causal_lm, tiny_random_lm

    name = cfg.model if name is None else name
    if name == TINY:
        return tiny_random_lm(n_positions=4096, seed=cfg.seed if name == cfg.model else cfg.seed + 1)
    return load_causal_lm(name, device=cfg.device)


def check_inputs(cfg: ProbeConfig) -> None:
    """WordNet and inflect are there (a missing Debian package is one line before any run folder)."""
    from adaptlab.data.text import plural_pairs

    plural_pairs(1, seed=cfg.seed)
    if cfg.model == "smollm2-135m-instruct":
        from adaptlab.lm.load import smollm2_gguf

        smollm2_gguf()
    elif cfg.model != TINY:
        _model(cfg)
    if cfg.compare_model == "gemma-3-270m":
        from adaptlab.lm.load import gemma3_gguf

        gemma3_gguf()  # the chunk wheels are there (assembled once into the cache)
    elif cfg.compare_model not in ("", TINY):
        _model(cfg, cfg.compare_model)


def arithmetic_questions(n: int, seed: int) -> list[tuple[str, int]]:
    """``n`` sums of two 3-digit numbers, ``("What is 347 + 589? Answer:", 936)``, drawn with ``seed``.

    >>> arithmetic_questions(1, 0)[0][0].startswith("What is ")
    True
    """
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.randint(100, 999), rng.randint(100, 999)
        out.append((f"What is {a} + {b}? Answer:", a + b))
    return out


def compare_tasks(lm, cfg: ProbeConfig) -> dict:
    """HW 4a (iii)/(iv) on one model: capitals by cloze and by letter, 3-digit addition."""
    from adaptlab.data.text import load_capitals
    from adaptlab.lm.decode import generate
    from adaptlab.lm.prompts import _wilson, evaluate_mc

    qs = load_capitals(5, seed=cfg.seed)[:cfg.capitals_n]
    cloze = evaluate_mc(lm, qs, "cloze", batch_size=cfg.batch_size)["metrics"]
    letters = evaluate_mc(lm, qs, "simple_qa", generate_answers=False, batch_size=cfg.batch_size)["metrics"]
    arith = arithmetic_questions(cfg.arith_n, cfg.seed)
    outs = generate(lm, [q for q, _ in arith], max_new_tokens=6, batch_size=cfg.batch_size)
    said = [(re.findall(r"-?\d+", o) or [""])[0] for o in outs]
    right = sum(a == str(v) for a, (_, v) in zip(said, arith))
    pick = ("accuracy", "accuracy_ci", "top_letter_share")
    return {"capitals_cloze": {k: cloze[k] for k in pick}, "capitals_letters": {k: letters[k] for k in pick},
            "arithmetic": {"accuracy": right / len(arith), "accuracy_ci": list(_wilson(right, len(arith))),
                           "examples": [[q, v, a] for (q, v), a in zip(arith[:4], said[:4])]}}


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


def answer_vocab() -> dict[str, set[str]]:
    """What counts as valid for :data:`VALIDITY_PROMPTS`: WordNet noun lemmas and GeoNames country names."""
    from adaptlab.data.text import load_capitals, load_wordnet_nouns

    nouns = {w.lower() for n in load_wordnet_nouns() for w in n.lemmas}
    return {"noun": nouns, "country": {q.meta["country"].lower() for q in load_capitals()}}


def parse_answer(kind: str, text: str, vocab: dict[str, set[str]]) -> str | None:
    """The valid answer at the start of ``text`` for prompt ``kind``, normalised, or None.

    ``number``: an integer 1..100 as the first word; ``letter``: one capital letter A-Z as the first word;
    ``noun``: the first word, lowercased, a WordNet noun lemma; ``country``: the first line, lowercased, up to
    its first period or comma, a GeoNames country name.

    >>> parse_answer("number", " 42.", {}), parse_answer("number", " 420", {}), parse_answer("letter", " Q", {})
    ('42', None, 'Q')
    >>> parse_answer("country", " France. It is", {"country": {"france"}})
    'france'
    """
    words = text.split()
    first = words[0].strip(".,;:!?\"'()") if words else ""
    if kind == "number":
        return first if first.isdigit() and 1 <= int(first) <= 100 and first == str(int(first)) else None
    if kind == "letter":
        return first if len(first) == 1 and "A" <= first <= "Z" else None
    if kind == "noun":
        return first.lower() if first.lower() in vocab["noun"] else None
    if kind == "country":
        line = (text.strip().splitlines() or [""])[0]
        name = re.split(r"[.,;:!?]", line)[0].strip().strip("\"'").lower()
        return name if name in vocab["country"] else None
    raise ValueError(f"kind={kind!r} is invalid; expected one of {sorted(VALIDITY_PROMPTS)}")


def validity_stats(answers: list[str | None]) -> dict:
    """Valid share, distinct share among the valid answers, and the entropy (bits) of the valid answers.

    >>> r = validity_stats(["a", "a", "b", None])
    >>> r["valid"], r["distinct"], round(r["entropy_bits"], 3)
    (0.75, 0.6666666666666666, 0.918)
    """
    ok = [a for a in answers if a is not None]
    n = len(ok)
    counts = {a: ok.count(a) for a in set(ok)}
    ent = -sum(c / n * math.log2(c / n) for c in counts.values()) if n else 0.0
    return {"valid": n / max(len(answers), 1), "distinct": len(counts) / n if n else 0.0, "entropy_bits": ent,
            "top": sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:3]}


def validity_study(lm, cfg: ProbeConfig) -> dict:
    """:func:`validity_stats` of every :data:`VALIDITY_PROMPTS` prompt at every temperature."""
    import torch

    from adaptlab.lm.decode import generate

    vocab = answer_vocab()
    out: dict = {}
    for j, (kind, prompt) in enumerate(VALIDITY_PROMPTS.items()):
        out[kind] = {}
        for i, T in enumerate(cfg.temperatures):
            g = torch.Generator().manual_seed(cfg.seed * 1000 + 100 * (j + 1) + i)
            texts = generate(lm, [prompt] * cfg.validity_samples, max_new_tokens=8, do_sample=T > 0,
                             temperature=T if T > 0 else 1.0, top_p=cfg.top_p, generator=g,
                             batch_size=cfg.batch_size)
            out[kind][str(T)] = {**validity_stats([parse_answer(kind, t, vocab) for t in texts]),
                                 "examples": texts[:3]}
    return out


def run(cfg: ProbeConfig, out_dir: Path, resume: bool = False) -> dict:
    import time

    import torch

    from adaptlab.data.text import plural_pairs
    from adaptlab.lm.decode import generate

    t0, c0 = time.perf_counter(), time.process_time()
    lm = _model(cfg)
    temps = {}
    for i, T in enumerate(cfg.temperatures):
        g = torch.Generator().manual_seed(cfg.seed * 1000 + i)
        texts = generate(lm, [DIGITS_PROMPT] * cfg.samples, max_new_tokens=2 * cfg.digits + 8, do_sample=T > 0,
                         temperature=T if T > 0 else 1.0, top_p=cfg.top_p, generator=g, batch_size=cfg.batch_size)
        temps[str(T)] = {**digit_stats(texts, cfg.digits), "example": texts[0][:200]}
    validity = validity_study(lm, cfg) if cfg.validity_samples else None
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
    compare = None
    if cfg.compare_model:
        first = compare_tasks(lm, cfg)
        del lm
        second = compare_tasks(_model(cfg, cfg.compare_model), cfg)
        b = cfg.compare_model if cfg.compare_model != cfg.model else f"{cfg.model} (seed {cfg.seed + 1})"
        compare = {cfg.model: first, b: second}
    return {"model": cfg.model, "temperature": temps, "validity": validity, "plural": plural, "compare": compare,
            "timings": {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}}


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
    names = ["temperature.png", "plural.png"]
    if results.get("validity"):
        va = results["validity"]
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for kind, rows in va.items():
            Ts = [float(t) for t in rows]
            axes[0].plot(Ts, [r["valid"] for r in rows.values()], "-o", label=kind)
            axes[1].plot(Ts, [r["distinct"] for r in rows.values()], "-o", label=kind)
        axes[0].set(title=f"valid answers ({cfg.validity_samples} samples per point)", xlabel="temperature",
                    ylabel="share", ylim=(-0.02, 1.02))
        axes[1].set(title="distinct answers among the valid ones", xlabel="temperature", ylim=(-0.02, 1.02))
        for ax in axes:
            ax.legend(fontsize=7)
        save_figure(fig, out_dir / "validity.png")
        names.append("validity.png")
    if not results.get("compare"):
        return names
    comp = results["compare"]
    tasks = [("capitals_cloze", "capitals, cloze"), ("capitals_letters", "capitals, letters"),
             ("arithmetic", "3-digit sums")]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    w = 0.8 / len(comp)
    for j, (name, r) in enumerate(comp.items()):
        xs = [i + (j - (len(comp) - 1) / 2) * w for i in range(len(tasks))]
        acc = [r[t]["accuracy"] for t, _ in tasks]
        err = [[a - r[t]["accuracy_ci"][0] for (t, _), a in zip(tasks, acc)],
               [r[t]["accuracy_ci"][1] - a for (t, _), a in zip(tasks, acc)]]
        ax.bar(xs, acc, w, yerr=err, capsize=3, label=name)
    ax.axhline(0.2, color="k", ls=":", lw=1, label="chance (5 options)")
    ax.set_xticks(range(len(tasks)), [lab for _, lab in tasks])
    ax.set(ylabel="accuracy (Wilson 95% CI)", ylim=(0, 1),
           title="model size: where the larger model wins, where both fail")
    ax.legend(fontsize=7)
    save_figure(fig, out_dir / "compare.png")
    return names + ["compare.png"]


def summary(results: dict, cfg: ProbeConfig) -> str:
    tiny = " (a random tiny GPT-2: chance numbers, a smoke test)" if results["model"] == TINY else ""
    lines = [f"Model `{results['model']}`{tiny}. {cfg.samples} samples of \"{DIGITS_PROMPT}\" per temperature, "
             f"first {cfg.digits} digits of each pooled (`temperature.png`).", "",
             "| T | digits | chi-square (9 df) | p | entropy bits | distinct bigrams | distinct samples | valid |",
             "|---|---|---|---|---|---|---|---|"]
    for t, r in results["temperature"].items():
        lines.append(f"| {t} | {r['n_digits']} | {r['chi2']:.1f} | {r['p_value']:.3g} | {r['entropy_bits']:.2f} | "
                     f"{r['distinct_bigrams']:.2f} | {r['distinct_samples']:.2f} | {r['valid']:.2f} |")
    if results.get("validity"):
        va = results["validity"]
        Ts = list(next(iter(va.values())))
        lines += ["", f"Validity of other prompts ({cfg.validity_samples} answers per cell; valid share / distinct "
                  "share of the valid answers, `validity.png`):", "",
                  "| prompt | " + " | ".join(f"T = {t}" for t in Ts) + " |", "|---" * (len(Ts) + 1) + "|"]
        for kind, rows in va.items():
            lines.append(f"| {VALIDITY_PROMPTS[kind]} | " + " | ".join(
                f"{rows[t]['valid']:.2f} / {rows[t]['distinct']:.2f}" for t in Ts) + " |")
    lines += ["", f"Pluralization of {cfg.plural_n} WordNet nouns (exact match of the first word, `plural.png`): "
              + ", ".join(f"k = {k}: {r['accuracy']:.2f}" for k, r in results["plural"].items()) + "."]
    comp = results.get("compare")
    if not comp:
        lines += ["", "(iii)/(iv), the model-size questions, need a second model: `--set compare_model=gemma-3-270m`."]
        return "\n".join(lines)

    def cell(r):
        return f"{r['accuracy']:.2f} [{r['accuracy_ci'][0]:.2f}, {r['accuracy_ci'][1]:.2f}]"

    lines += ["", f"Model size (`compare.png`; {cfg.capitals_n} capitals questions, {cfg.arith_n} 3-digit sums):", "",
              "| model | capitals, cloze | capitals, letters (top-letter share) | 3-digit sums |", "|---|---|---|---|"]
    for name, r in comp.items():
        lines.append(f"| {name} | {cell(r['capitals_cloze'])} | {cell(r['capitals_letters'])} "
                     f"({r['capitals_letters']['top_letter_share']:.2f}) | {cell(r['arithmetic'])} |")
    (a, ra), (b, rb) = list(comp.items())[:2]
    ca, cb = ra["capitals_cloze"], rb["capitals_cloze"]
    big, small = (b, a) if cb["accuracy"] >= ca["accuracy"] else (a, b)
    apart = ca["accuracy_ci"][1] < cb["accuracy_ci"][0] or cb["accuracy_ci"][1] < ca["accuracy_ci"][0]
    lines += ["", f"- (iii) Capitals by cloze: {big} {max(ca['accuracy'], cb['accuracy']):.2f} vs {small} "
              f"{min(ca['accuracy'], cb['accuracy']):.2f} (the intervals {'do not ' if apart else ''}overlap).",
              f"- (iv) Letter binding: {ra['capitals_letters']['accuracy']:.2f} and "
              f"{rb['capitals_letters']['accuracy']:.2f} (chance 0.20); 3-digit sums: "
              f"{ra['arithmetic']['accuracy']:.2f} and {rb['arithmetic']['accuracy']:.2f}."]
    return "\n".join(lines)


EXPERIMENTS = [
    Experiment("lm-probe", "Probing a local LM: temperature vs uniformity/diversity of random digits, few-shot "
               "pluralization, model size (where a larger model wins, where both fail)", ProbeConfig, run, figures,
               summary,
               quick={"model": TINY, "temperatures": [0.0, 1.0], "samples": 2, "digits": 10, "plural_n": 4,
                      "validity_samples": 2,
                      "plural_ks": [0, 1], "compare_model": TINY, "capitals_n": 6,
                      "arith_n": 4},
               check=check_inputs),
]
