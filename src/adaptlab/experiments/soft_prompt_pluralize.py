"""Prompt tuning a frozen LM to pluralize (the seed notebook's task, HW 4b v-vi), against hard prompts and PEFT.

Data: single-word WordNet nouns with ``inflect`` plurals that are one token after a space (" wolves"); the
irregular nouns foot, man, person, self, wife, wolf, woman are the test set, ``n_val`` others the validation
set and ``n_train`` others the training set (disjoint, drawn with the seed). Each example is
``"The plural of {noun} is"`` followed by the target token ``" {plural}"``, the only token with loss.

Stages (each checkpointed; ``--resume`` continues inside a stage):

1. ``hard``: the zero-shot hard prompt and hard prompts with k = ``demos`` demonstrations from the training set
   (``demo_draws`` draws for k > 0), greedy next token vs the target.
2. ``soft``: a ``train.prompt_len``-token soft prompt (``init``), Adam at ``train.lr``, ``train.epochs`` epochs
   of batches of ``train.batch_size``, through :func:`adaptlab.engine.fit`; every ``eval_every`` steps the
   validation accuracy and what the model predicts when it fails (share of uninformative tokens, their unigram
   rank in WordNet's glosses).
3. ``notebook``: the seed notebook's own setting (``notebook.*``: 100 tokens, lr 1e-4, 2 epochs), if
   ``run_notebook``.
4. ``peft``: HuggingFace PEFT's prompt tuning at stage 2's settings from the same initial prompt, if ``peft``.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from adaptlab.config import BaseConfig, check
from adaptlab.engine import derive_seed
from adaptlab.errors import DataError
from adaptlab.io import save_figure
from adaptlab.lm.softprompt import INITS
from adaptlab.runner import Experiment, Stages

from . import _softprompt_common as common


@dataclass
class TrainConfig:
    prompt_len: int = 20  # soft tokens P
    epochs: int = 1  # passes over the training nouns (38 steps of batch 8 each)
    lr: float = 1e-3  # Adam learning rate
    batch_size: int = 8  # training examples per step


@dataclass
class NotebookConfig(TrainConfig):
    prompt_len: int = 100  # soft tokens of the seed notebook
    epochs: int = 2  # epochs: the notebook's bar is > 0.6 within 2
    lr: float = 1e-4  # the notebook's Adam learning rate


IRREGULAR = ("foot", "man", "person", "self", "wife", "wolf", "woman")
TEMPLATE = "The plural of {} is"


@dataclass
class PluralizeConfig(BaseConfig):
    model: str = "smollm2-135m-instruct"  # HF name, local folder, 'smollm2-135m-instruct' or 'tiny-random'
    n_train: int = 304  # training nouns (38 steps of batch 8 per epoch)
    n_val: int = 200  # validation nouns (disjoint from training and the 7 irregular test nouns)
    init: str = "vocab"  # soft prompt init: uniform, vocab (sampled token embeddings) or text (init_text)
    init_text: str = "Give the plural form of the noun."  # text whose embeddings start the prompt (init=text)
    train: TrainConfig = field(default_factory=TrainConfig)  # the soft prompt (and PEFT at the same settings)
    eval_every: int = 8  # steps between validation evaluations (and failure statistics)
    demos: list[int] = field(default_factory=lambda: list(range(10)))  # demonstration counts of hard prompts
    demo_draws: int = 3  # demonstration draws per k > 0
    run_notebook: bool = True  # also train at the seed notebook's setting (notebook.*)
    notebook: NotebookConfig = field(default_factory=NotebookConfig)  # the seed notebook's setting
    peft: bool = True  # also train with PEFT's prompt tuning at the train.* settings (needs peft)
    glosses: int = 20000  # WordNet glosses counted for the unigram ranks of failure tokens
    cache_prefix: bool = True  # prefix caching of the soft prompt during training

    def __post_init__(self) -> None:
        super().__post_init__()
        check(8 <= self.n_train <= 5000, "n_train", self.n_train, "an integer in 8..5000")
        check(4 <= self.n_val <= 2000, "n_val", self.n_val, "an integer in 4..2000")
        check(self.init in INITS, "init", self.init, f"one of {INITS}")
        check(self.init != "text" or bool(self.init_text), "init_text", self.init_text, "a non-empty text")
        check(isinstance(self.train.prompt_len, int) and 1 <= self.train.prompt_len <= 512, "train.prompt_len",
              self.train.prompt_len, "an integer in 1..512 (soft tokens; 0 or less is no prompt)")
        check(1 <= self.train.epochs <= 100, "train.epochs", self.train.epochs, "an integer in 1..100")
        check(0 < self.train.lr <= 1.0, "train.lr", self.train.lr, "a number in (0, 1]")
        check(1 <= self.train.batch_size <= self.n_train, "train.batch_size", self.train.batch_size,
              "an integer in 1..n_train")
        check(isinstance(self.notebook.prompt_len, int) and 1 <= self.notebook.prompt_len <= 512, "notebook.prompt_len",
              self.notebook.prompt_len, "an integer in 1..512 (soft tokens; 0 or less is no prompt)")
        check(1 <= self.notebook.epochs <= 100, "notebook.epochs", self.notebook.epochs, "an integer in 1..100")
        check(0 < self.notebook.lr <= 1.0, "notebook.lr", self.notebook.lr, "a number in (0, 1]")
        check(1 <= self.notebook.batch_size <= self.n_train, "notebook.batch_size", self.notebook.batch_size,
              "an integer in 1..n_train")
        check(0 <= self.eval_every <= 10000, "eval_every", self.eval_every, "0 (start and end only) or a step count")
        check(len(self.demos) > 0 and all(0 <= k <= 32 for k in self.demos), "demos", self.demos,
              "a non-empty list of demonstration counts in 0..32")
        check(1 <= self.demo_draws <= 20, "demo_draws", self.demo_draws, "an integer in 1..20")
        check(0 <= self.glosses <= 200000, "glosses", self.glosses, "an integer in 0..200000")


def single_token(lm, word: str) -> int | None:
    """The id of ``" " + word`` if it is one token, else None. The tiny random model's character tokenizer has
    no single-token words, so there (quick forms only) the first character stands for the word."""
    ids = lm.encode(" " + word)
    return ids[0] if len(ids) == 1 or lm.name == "tiny-random-gpt2" else None


def nouns(cfg: PluralizeConfig, lm) -> dict:
    """{"train", "val", "test"}: lists of (noun, plural, target id) with single-token plurals."""
    from adaptlab.data.text import plural_pairs

    need = cfg.n_train + cfg.n_val
    pairs = plural_pairs(n=min(12 * need, 30000), seed=cfg.seed)  # ~13% of SmolLM2's plurals are one token
    rows = [(s, p, t) for s, p in pairs if s not in IRREGULAR and (t := single_token(lm, p)) is not None]
    if len(rows) < need:
        raise DataError(f"only {len(rows)} nouns have a single-token plural for {lm.name}; lower n_train + n_val "
                        f"(= {need})")
    return {"train": rows[:cfg.n_train], "val": rows[cfg.n_train:need], "test": test_nouns(lm)}


def test_nouns(lm) -> list[tuple[str, str, int]]:
    """The 7 irregulars as (noun, plural, target id); a plural that is not one token is a DataError."""
    import inflect

    eng = inflect.engine()
    test = []
    for w in IRREGULAR:
        p = eng.plural_noun(w)
        t = single_token(lm, p)
        if t is None:
            raise DataError(f"the irregular plural {p!r} is not a single token for {lm.name} (it is "
                            f"{len(lm.encode(' ' + p))} tokens); the target must be one token: use a model whose "
                            "tokenizer has these plurals as one token (SmolLM2 does)")
        test.append((w, p, t))
    return test


def check_inputs(cfg: PluralizeConfig) -> None:
    lm = common.check_model(cfg.model)
    if lm is not None:
        test_nouns(lm)
    if cfg.peft:
        common.check_peft()
    from adaptlab.data.text import wordnet_dir

    wordnet_dir()
    try:
        import inflect  # noqa: F401
    except ModuleNotFoundError:
        raise DataError("plurals need inflect; run: pip install inflect  (or 'adaptlab[lm]')") from None


def _contexts(lm, rows, prefix: str = "") -> list[list[int]]:
    return [lm.encode(prefix + TEMPLATE.format(s)) for s, _, _ in rows]


def _accuracy(preds, rows) -> float:
    return sum(p == t for p, (_, _, t) in zip(preds, rows)) / len(rows)


def hard_prompts(cfg, lm, data) -> dict:
    out = {}
    for k in cfg.demos:
        accs, tests = [], []
        for d in range(1 if k == 0 else cfg.demo_draws):
            demo = random.Random(derive_seed(cfg.seed, 10 + d)).sample(data["train"], k)
            prefix = common.hard_prompt("".join(f"{TEMPLATE.format(s)} {p}.\n" for s, p, _ in demo), lm)
            accs.append(_accuracy(common.predict_next(lm, prefix, _contexts(lm, data["val"])), data["val"]))
            tests.append(round(_accuracy(common.predict_next(lm, prefix, _contexts(lm, data["test"])),
                                         data["test"]) * len(data["test"])))
        out[str(k)] = {"val_accuracy": statistics.fmean(accs), "val_accuracy_draws": accs, "test_correct": tests}
    return out


def _batches(cfg, lm, rows, batch_size):
    from adaptlab.lm.softprompt import make_batch

    ctx = _contexts(lm, rows)

    def batches(step):
        idx = common.order(len(rows), batch_size, cfg.seed, step)
        return make_batch(lm, [[("question", ctx[i]), ("answer", [rows[i][2]])] for i in idx], ["answer"])
    return batches


def _evaluator(cfg, lm, data, ranks):
    vctx, tctx = _contexts(lm, data["val"]), _contexts(lm, data["test"])

    def evaluate(prompt):
        pv = common.predict_next(lm, prompt, vctx)
        pt = common.predict_next(lm, prompt, tctx)
        return {"val_accuracy": _accuracy(pv, data["val"]), "test_correct": sum(
                    p == t for p, (_, _, t) in zip(pt, data["test"])),
                "test_predictions": [lm.tokenizer.decode([p]) for p in pt],
                "failures": common.failure_stats(lm, pv, [t for _, _, t in data["val"]], ranks)}
    return evaluate


def soft(cfg, lm, data, ranks, ckpt, *, P, lr, epochs, batch_size=None, use_peft=False) -> dict:
    import torch

    from adaptlab.lm.softprompt import init_prompt

    g = torch.Generator().manual_seed(derive_seed(cfg.seed, 1))
    prompt0 = init_prompt(lm, P, cfg.init, text=cfg.init_text, generator=g)
    bs = batch_size or cfg.train.batch_size
    steps = epochs * common.steps_per_epoch(len(data["train"]), bs)
    kw = dict(steps=steps, lr=lr, evaluate=_evaluator(cfg, lm, data, ranks), eval_every=cfg.eval_every,
              checkpoint=ckpt)
    t0 = time.perf_counter()
    if use_peft:
        _, hist = common.peft_train(lm, prompt0, _batches(cfg, lm, data["train"], bs), **kw)
    else:
        _, hist = common.train_prompt(lm, prompt0, _batches(cfg, lm, data["train"], bs),
                                      cache_prefix=cfg.cache_prefix, **kw)
    final = hist["eval"][-1]
    return {"prompt_len": P, "lr": lr, "epochs": epochs, "steps": steps, "loss": hist["loss"], "eval": hist["eval"],
            "val_accuracy": final["val_accuracy"], "test_correct": final["test_correct"],
            "timings": {"train_seconds": hist["seconds"], "seconds_per_step": hist["seconds"] / max(1, steps),
                        "stage_seconds": time.perf_counter() - t0}}


def run(cfg: PluralizeConfig, out_dir: Path, resume: bool = False) -> dict:
    stages = Stages(out_dir, resume)
    t0 = time.perf_counter()
    lm = common.load_model(cfg.model, cfg.seed, cfg.device)
    timings = {"load_model_seconds": time.perf_counter() - t0}
    data = nouns(cfg, lm)
    from adaptlab.data.text import load_wordnet_nouns

    ranks = common.unigram_ranks(lm, [w.gloss for w in load_wordnet_nouns()[:cfg.glosses]]) if cfg.glosses else {}
    results: dict = {"model": cfg.model, "n_train": len(data["train"]), "n_val": len(data["val"]),
                     "test_nouns": [f"{s} -> {p}" for s, p, _ in data["test"]]}
    results["hard"] = stages.run("hard", lambda ckpt: hard_prompts(cfg, lm, data))
    t, nb = cfg.train, cfg.notebook
    runs = {"soft": dict(P=t.prompt_len, lr=t.lr, epochs=t.epochs)}
    if cfg.run_notebook:
        runs["notebook"] = dict(P=nb.prompt_len, lr=nb.lr, epochs=nb.epochs, batch_size=nb.batch_size)
    if cfg.peft:
        runs["peft"] = dict(P=t.prompt_len, lr=t.lr, epochs=t.epochs, use_peft=True)
    for name, kw in runs.items():
        r = stages.run(name, lambda ckpt, kw=kw: soft(cfg, lm, data, ranks, ckpt, **kw))
        r = dict(r)
        for k, v in r.pop("timings").items():
            timings[f"{name}_{k}"] = v
        results[name] = r
    if "peft" in results:
        a, b = results["soft"]["loss"], results["peft"]["loss"]
        results["peft_loss_max_abs_diff"] = max(abs(x - y) for x, y in zip(a, b))
    timings["cpu_seconds"] = time.process_time()  # this process's CPU (one thread: an idle core)
    results["timings"] = timings
    return results


def figures(results: dict, cfg: PluralizeConfig, out_dir: Path) -> list[str]:
    from adaptlab.viz.softprompt import failure_figure, hard_vs_soft_figure, training_figure

    names = []
    for name, fn in (("training.png", training_figure), ("hard_vs_soft.png", hard_vs_soft_figure),
                     ("failures.png", failure_figure)):
        save_figure(fn(results), out_dir / name)
        names.append(name)
    return names


def summary(results: dict, cfg: PluralizeConfig) -> str:
    n_test = len(results["test_nouns"])
    lines = [f"Model `{results['model']}`" + (" (random tiny GPT-2: a smoke test, chance numbers)" if
             results["model"] == common.TINY else "") + f"; {results['n_train']} training nouns, "
             f"{results['n_val']} validation nouns, test: the {n_test} irregulars.", "",
             "| method | validation accuracy | irregulars right |", "|---|---|---|"]
    for k, v in results["hard"].items():
        lines.append(f"| hard prompt, {k} demos | {v['val_accuracy']:.3f} | "
                     f"{'/'.join(map(str, v['test_correct']))} of {n_test} |")
    for name in ("soft", "notebook", "peft"):
        if name in results:
            r = results[name]
            lines.append(f"| {'PEFT prompt tuning' if name == 'peft' else 'soft prompt'}, P={r['prompt_len']}, "
                         f"lr {r['lr']:g}, {r['epochs']} epoch(s) = {r['steps']} steps | {r['val_accuracy']:.3f} | "
                         f"{r['test_correct']} of {n_test} |")
    if "peft_loss_max_abs_diff" in results:
        lines += ["", f"PEFT vs ours, same init and batches: largest per-step loss difference "
                  f"{results['peft_loss_max_abs_diff']:.2e}."]
    f0 = results["soft"]["eval"][0]["failures"]
    f1 = results["soft"]["eval"][-1]["failures"]
    lines += ["", "Failures on validation (soft prompt, before -> after training): wrong "
              f"{f0['n_wrong']} -> {f1['n_wrong']}; uninformative-token share {f0['uninformative_share']:.2f} -> "
              f"{f1['uninformative_share']:.2f}; share among the 20 most frequent gloss tokens "
              f"{f0['top20_share']:.2f} -> {f1['top20_share']:.2f}; median unigram rank of the wrong prediction "
              f"{f0['median_rank_wrong']} vs of the target {f0['median_rank_target']} (before). Top wrong tokens "
              f"before: {f0['top_wrong']}.", ""]
    return "\n".join(lines)


EXPERIMENTS = [
    Experiment("soft-prompt-pluralize", "Prompt tuning a frozen LM to pluralize: soft prompt vs 0-9-shot hard "
               "prompts vs PEFT, failure tokens during training", PluralizeConfig, run, figures, summary,
               quick={"model": common.TINY, "n_train": 16, "n_val": 8, "train.prompt_len": 3, "train.batch_size": 4,
                      "eval_every": 2, "demos": [0, 1], "demo_draws": 1, "notebook.prompt_len": 4,
                      "notebook.epochs": 1, "notebook.batch_size": 4, "glosses": 200},
               check=check_inputs),
]
