"""WordNet gloss supersense classification with a local language model (``lm-supersense``).

Inputs are the definitions of WordNet 3.0 noun synsets (Debian ``wordnet-base``, read by
:func:`adaptlab.data.text.load_wordnet_glosses`; the gloss up to its first quoted example), ``per_class`` drawn
per supersense for the test set and ``pool_per_class`` more for the demonstration pool. The 26 classes are
WordNet's noun lexicographer files under their real names (``act``, ``animal``, ..., ``time``; ``noun.Tops``
is written ``tops``, so every name is one SmolLM2 token).

Each question is ``Definition: GLOSS\\nCategory:`` and every class name is scored as its continuation (cloze
over 26 options: the model never has to produce a letter); the prediction is the argmax. Settings:
``plain`` (no instruction, k = 0), ``instruction`` (a line listing the 26 names first, k = 0), and
``instruction`` + k demonstrations (``Definition: ...\\nCategory: NAME``) for every k in ``ks``, over ``draws``
seeded demonstration draws (mean ± 95% CI over draws). Metrics: accuracy (Wilson 95% interval; chance 1/26),
the probability of the right class, the share of the most predicted class (collapse), per-class accuracy and a
confusion matrix of the best setting.

``model=tiny-random`` (the quick form) is a random 2-layer GPT-2: chance numbers by construction.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from adaptlab.config import BaseConfig, check
from adaptlab.io import save_figure
from adaptlab.runner import Experiment

TINY = "tiny-random"


def class_names() -> list[str]:
    """The 26 noun supersenses as shown to the model (``Tops`` lowercased, like the other 25).

    >>> names = class_names()
    >>> len(names), names[:3], names[-1]
    (26, ['tops', 'act', 'animal'], 'time')
    """
    from adaptlab.data.text import NOUN_SUPERSENSES

    return [n.lower() for n in NOUN_SUPERSENSES]


def instruction() -> str:
    """The instruction line of the ``instruction`` setting: the task and the 26 names."""
    return ("Each definition below comes from a dictionary. Name its category, one of: "
            + ", ".join(class_names()) + ".\n\n")


@dataclass
class SupersenseConfig(BaseConfig):
    model: str = "smollm2-135m-instruct"  # HF name, local folder, 'smollm2-135m-instruct' or 'tiny-random'
    per_class: int = 6  # test glosses per supersense (26 classes: 156 questions)
    pool_per_class: int = 1  # demonstration glosses per supersense (disjoint from the test glosses)
    ks: list[int] = field(default_factory=lambda: [26])  # demonstrations after the instruction (26: the pool)
    draws: int = 2  # demonstration draws per k (CIs over draws)
    batch_size: int = 32  # questions per forward pass

    def __post_init__(self) -> None:
        super().__post_init__()
        check(1 <= self.per_class <= 40, "per_class", self.per_class, "an integer in 1..40 (noun.Tops has 51 "
              "synsets)")
        check(1 <= self.pool_per_class <= 10, "pool_per_class", self.pool_per_class, "an integer in 1..10")
        pool = 26 * self.pool_per_class
        check(all(0 <= k <= pool for k in self.ks), "ks", self.ks,
              f"a list of integers in 0..26 * pool_per_class ({pool}); k larger than the pool cannot be drawn")
        check(1 <= self.draws <= 20, "draws", self.draws, "an integer in 1..20")
        check(self.batch_size >= 1, "batch_size", self.batch_size, "a positive integer")


def _definition(gloss: str) -> str:
    """The gloss up to its first quoted example (``'a dog; "the dog barked"'`` -> ``'a dog'``)."""
    return gloss.split('; "')[0].strip()


def load_glosses(cfg: SupersenseConfig) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """``(test, pool)`` lists of (definition, class index 0..25), drawn per class with the seed."""
    from adaptlab.data.text import load_wordnet_glosses

    by_class: dict[int, list[str]] = {c: [] for c in range(26)}
    for s in load_wordnet_glosses(("noun",)):
        by_class[s.lexfile - 3].append(_definition(s.gloss))
    rng = random.Random(cfg.seed)
    test, pool = [], []
    for c, gl in by_class.items():
        pick = rng.sample(gl, cfg.per_class + cfg.pool_per_class)
        test += [(g, c) for g in pick[:cfg.per_class]]
        pool += [(g, c) for g in pick[cfg.per_class:]]
    return test, pool


def prompts(test, pool, *, instructed: bool, k: int, seed: int) -> tuple[str, list[str]]:
    """``(prefix, prompts)``: optional instruction and k demonstrations drawn from the pool, then the glosses."""
    names = class_names()
    shots = random.Random(seed).sample(pool, k) if k else []
    prefix = (instruction() if instructed else "") + "".join(
        f"Definition: {g}\nCategory: {names[c]}\n\n" for g, c in shots)
    return prefix, [f"Definition: {g}\nCategory:" for g, _ in test]


def evaluate(lm, test, prefix: str, texts: list[str], batch_size: int) -> dict:
    """Cloze scores of the 26 names after each prompt: accuracy, confidence, collapse, per-class, confusion."""
    import torch

    from adaptlab.lm.prompts import _wilson
    from adaptlab.lm.scoring import score_options

    names = class_names()
    lp = score_options(lm, texts, [[" " + n for n in names]] * len(texts), prefix=prefix,
                       batch_size=batch_size)["logprob"]  # (Q, 26)
    probs = torch.softmax(lp, 1)
    pred = lp.argmax(1).tolist()
    y = [c for _, c in test]
    right = sum(p == c for p, c in zip(pred, y))
    conf = [[0] * 26 for _ in range(26)]
    for p, c in zip(pred, y):
        conf[c][p] += 1
    per_class = {names[c]: conf[c][c] / max(sum(conf[c]), 1) for c in range(26)}
    counts = [sum(p == j for p in pred) for j in range(26)]
    return {"accuracy": right / len(y), "accuracy_ci": list(_wilson(right, len(y))),
            "prob_right": float(probs[torch.arange(len(y)), torch.tensor(y)].mean()),
            "top_class": names[counts.index(max(counts))], "top_class_share": max(counts) / len(y),
            "per_class": per_class, "confusion": conf}


def _mean_ci(x: list[float]) -> tuple[float, float]:
    m = sum(x) / len(x)
    if len(x) < 2:
        return m, 0.0
    return m, 1.96 * math.sqrt(sum((v - m) ** 2 for v in x) / (len(x) - 1)) / math.sqrt(len(x))


def _model(cfg: SupersenseConfig):
    from adaptlab.lm.load import load_causal_lm, tiny_random_lm

    return tiny_random_lm(n_positions=4096, seed=cfg.seed) if cfg.model == TINY else \
        load_causal_lm(cfg.model, device=cfg.device)


def check_inputs(cfg: SupersenseConfig) -> None:
    """WordNet and the model are there (one line naming the install before any run folder exists)."""
    from adaptlab.data.text import wordnet_dir

    wordnet_dir()
    if cfg.model == "smollm2-135m-instruct":
        from adaptlab.lm.load import smollm2_gguf

        smollm2_gguf()
    elif cfg.model != TINY:
        _model(cfg)


def run(cfg: SupersenseConfig, out_dir: Path, resume: bool = False) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    test, pool = load_glosses(cfg)
    lm = _model(cfg)
    settings = {}
    for name, instructed in (("plain", False), ("instruction", True)):
        settings[name] = evaluate(lm, test, *prompts(test, pool, instructed=instructed, k=0, seed=cfg.seed),
                                  cfg.batch_size)
    sweep = {}
    for k in [k for k in cfg.ks if k > 0]:
        runs = [evaluate(lm, test, *prompts(test, pool, instructed=True, k=k, seed=cfg.seed + 1000 * (d + 1)),
                         cfg.batch_size) for d in range(cfg.draws)]
        accs = [r["accuracy"] for r in runs]
        m, h = _mean_ci(accs)
        sweep[str(k)] = {"accuracy": m, "accuracy_ci": h, "accuracy_draws": accs,
                         "prob_right": sum(r["prob_right"] for r in runs) / len(runs),
                         "top_class_share": max(r["top_class_share"] for r in runs), "first_draw": runs[0]}
    cands = {**settings, **{f"k={k}": r["first_draw"] for k, r in sweep.items()}}
    best = max(cands, key=lambda s: (cands[s]["accuracy"], s))
    return {"model": cfg.model, "n_questions": len(test), "n_classes": 26, "chance": 1 / 26, "settings": settings,
            "sweep": sweep, "best": best,
            "examples": [[g, class_names()[c]] for g, c in test[::max(len(test) // 4, 1)]],
            "timings": {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}}


def _best(results: dict) -> dict:
    b = results["best"]
    return results["settings"][b] if b in results["settings"] else results["sweep"][b[2:]]["first_draw"]


def figures(results: dict, cfg: SupersenseConfig, out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    labels, acc, lo, hi = [], [], [], []
    for s, r in results["settings"].items():
        labels.append(s)
        acc.append(r["accuracy"])
        lo.append(r["accuracy"] - r["accuracy_ci"][0])
        hi.append(r["accuracy_ci"][1] - r["accuracy"])
    for k, r in results["sweep"].items():
        labels.append(f"instruction + {k} shots")
        acc.append(r["accuracy"])
        lo.append(r["accuracy_ci"])
        hi.append(r["accuracy_ci"])
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.bar(range(len(acc)), acc, yerr=[lo, hi], capsize=3)
    ax.axhline(results["chance"], color="k", ls=":", lw=1, label="chance (1/26)")
    ax.set_xticks(range(len(acc)), labels, rotation=15, fontsize=8)
    ax.set(ylabel="accuracy", ylim=(0, 1), title=f"supersense of {results['n_questions']} WordNet noun glosses "
           "(Wilson 95% CI; k: ± 95% CI over draws)")
    ax.title.set_fontsize(8)
    ax.legend(fontsize=7)
    save_figure(fig, out_dir / "accuracy.png")
    conf = _best(results)["confusion"]
    names = class_names()
    fig, ax = plt.subplots(figsize=(8, 7))
    ax.imshow(conf, cmap="Blues")
    ax.set_xticks(range(26), names, rotation=90, fontsize=7)
    ax.set_yticks(range(26), names, fontsize=7)
    draw = " (first draw)" if results["best"] not in results["settings"] else ""
    ax.set(xlabel="predicted", ylabel="true", title=f"confusion, best setting: {results['best']}{draw}")
    save_figure(fig, out_dir / "confusion.png")
    return ["accuracy.png", "confusion.png"]


def summary(results: dict, cfg: SupersenseConfig) -> str:
    tiny = " (a random tiny GPT-2: chance numbers, a smoke test)" if results["model"] == TINY else ""
    lines = [f"Model `{results['model']}`{tiny}. {results['n_questions']} WordNet noun glosses, {cfg.per_class} "
             f"per supersense; the 26 names scored as the continuation of `Definition: ...\\nCategory:` "
             f"(chance {results['chance']:.3f}; `accuracy.png`).", "",
             "| setting | accuracy | p(right class) | most predicted class (share) |", "|---|---|---|---|"]
    for s, r in results["settings"].items():
        lines.append(f"| {s} | {r['accuracy']:.3f} [{r['accuracy_ci'][0]:.3f}, {r['accuracy_ci'][1]:.3f}] | "
                     f"{r['prob_right']:.3f} | {r['top_class']} ({r['top_class_share']:.2f}) |")
    for k, r in results["sweep"].items():
        lines.append(f"| instruction + {k} demonstrations ({cfg.draws} draws) | {r['accuracy']:.3f} ± "
                     f"{r['accuracy_ci']:.3f} | {r['prob_right']:.3f} | max share {r['top_class_share']:.2f} |")
    best = _best(results)
    pc = sorted(best["per_class"].items(), key=lambda kv: (-kv[1], kv[0]))
    lines += ["", f"Best setting `{results['best']}` (`confusion.png`): easiest classes "
              + ", ".join(f"{n} {a:.2f}" for n, a in pc[:4]) + "; hardest " +
              ", ".join(f"{n} {a:.2f}" for n, a in pc[-4:]) + "."]
    return "\n".join(lines)


EXPERIMENTS = [
    Experiment("lm-supersense", "WordNet gloss supersense classification (26 noun classes) with a local LM: cloze "
               "scoring of the class names, zero-shot, instructed and few-shot", SupersenseConfig, run, figures,
               summary, quick={"model": TINY, "per_class": 1, "ks": [2], "draws": 1},
               check=check_inputs),
]
