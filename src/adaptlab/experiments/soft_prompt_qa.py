"""Does a soft prompt teach a frozen LM the letter format of 5-way capitals questions? (HW 4b v, HW 5(c)).

The questions are the 246 GeoNames countries, ``"{question}\\nA. ..\\nE. ..\\nAnswer:"`` with the letter token
(" A".." E") as the only target; ``n_test`` are held out, the rest train. Read-outs on the test questions after
``prompt + question``: *valid rate* (the greedy next token is one of the 5 letters), *accuracy* (the highest of the
5 letter logits is the right one) and *greedy accuracy* (the greedy token is the right letter).

Stages (each checkpointed; ``--resume`` continues inside the training stages):

1. ``hard``: the question alone (zero-shot hard prompt).
2. ``variants``: soft prompts (``variants``: name -> prompt length and init) trained ``train.epochs`` epochs, with
   the test curve every epoch: prompt length, init from the letter tokens, and the longer training curve.
3. ``search`` (HW 5(c)(ii)): the best ``K``-token hard prompt found by greedy coordinate search over the
   vocabulary (per position, the ``candidates`` tokens with the most negative linearised loss change, each tried
   on ``search_rows`` training questions, the best kept; ``search_rounds`` sweeps), vs a ``K``-vector soft prompt
   trained for ``train.epochs`` epochs; both start from the letter tokens (``search=false`` leaves both out).
4. ``finetune`` (HW 5(c)(iii)): full fine-tuning of every weight (Adam, ``finetune.lr``) vs a soft prompt
   on ``finetune.sizes`` training questions (``[]``: none) for ``finetune.steps`` steps each: train and test
   accuracy. The fine-tuned copy is not checkpointed (its weights and Adam state would be 1.6 GB): an
   interrupted stage starts over.
"""

from __future__ import annotations

import copy
import dataclasses
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from adaptlab.config import BaseConfig, check
from adaptlab.engine import derive_seed, fit, make_optimizer
from adaptlab.errors import DataError
from adaptlab.io import save_figure
from adaptlab.runner import Experiment, Stages

from . import _softprompt_common as common

LETTER_TEXT = " A B C D E"


@dataclass
class TrainConfig:
    epochs: int = 3  # epochs per soft prompt (the curve is read every epoch); 3 x 18 steps keeps the default
    # run under 20 minutes of one-thread CPU (6 epochs measured ~37 min in a timed probe, docs/softprompt.md)
    lr: float = 3e-3  # Adam learning rate of the soft prompts
    batch_size: int = 8  # questions per step


@dataclass
class FinetuneConfig:
    sizes: list[int] = field(default_factory=lambda: [8, 32])  # training-set sizes of full FT vs soft prompt
    steps: int = 12  # steps of each at every size (batch min(8, n): 12 steps are 12 epochs at n = 8, 3 at n = 32)
    lr: float = 1e-5  # Adam learning rate of full fine-tuning


@dataclass
class QAConfig(BaseConfig):
    model: str = "smollm2-135m-instruct"  # HF name, local folder, 'smollm2-135m-instruct' or 'tiny-random'
    n_test: int = 50  # held-out questions (each read-out of 50 costs ~8 s CPU; the curve reads it every epoch)
    n_train: int = 146  # training questions (disjoint from the test ones; n_test + n_train <= 246)
    variants: list[str] = field(default_factory=lambda: ["20:vocab", "20:letters"])  # P:init
    train: TrainConfig = field(default_factory=TrainConfig)  # every soft prompt of the run
    K: int = 5  # tokens of the searched hard prompt and vectors of its soft counterpart
    candidates: int = 8  # tokens tried per position and round of the greedy coordinate search
    search_rows: int = 16  # training questions the search scores candidates on (a candidate costs ~2 s CPU)
    search_rounds: int = 1  # sweeps over the K positions
    search: bool = True  # run the search stages (coordinate-searched hard prompt vs K-vector soft prompt)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)  # full fine-tuning vs soft prompt

    def __post_init__(self) -> None:
        super().__post_init__()
        check(10 <= self.n_test <= 200, "n_test", self.n_test, "an integer in 10..200 (246 questions in all)")
        check(4 <= self.n_train <= 246 - self.n_test, "n_train", self.n_train,
              f"an integer in 4..{246 - self.n_test} (246 - n_test)")
        check(len(self.variants) > 0 and all(_variant_ok(v) for v in self.variants), "variants", self.variants,
              "a non-empty list of 'P:init' with P in 1..512 and init in uniform, vocab, letters")
        t, f = self.train, self.finetune
        check(1 <= t.epochs <= 100, "train.epochs", t.epochs, "an integer in 1..100")
        check(0 < t.lr <= 1.0, "train.lr", t.lr, "a number in (0, 1]")
        check(1 <= t.batch_size <= 64, "train.batch_size", t.batch_size, "an integer in 1..64")
        check(1 <= self.K <= 64, "K", self.K, "an integer in 1..64 (prompt tokens; 0 or less is no prompt)")
        check(1 <= self.candidates <= 512, "candidates", self.candidates, "an integer in 1..512")
        check(1 <= self.search_rows <= self.n_train, "search_rows", self.search_rows,
              f"an integer in 1..{self.n_train} (the training questions)")
        check(0 <= self.search_rounds <= 10, "search_rounds", self.search_rounds, "an integer in 0..10")
        check(all(1 <= n <= self.n_train for n in f.sizes), "finetune.sizes", f.sizes,
              f"a list of training-set sizes in 1..n_train ({self.n_train})")
        check(1 <= f.steps <= 10000, "finetune.steps", f.steps, "an integer in 1..10000")
        check(0 < f.lr <= 1.0, "finetune.lr", f.lr, "a number in (0, 1]")


def _variant_ok(v: str) -> bool:
    p, _, init = v.partition(":")
    return p.isdigit() and 1 <= int(p) <= 512 and init in ("uniform", "vocab", "letters")


def check_inputs(cfg: QAConfig) -> None:
    lm = common.check_model(cfg.model)
    if lm is not None:
        letter_ids(lm)
    from adaptlab.data.text import load_capitals

    load_capitals(5, seed=cfg.seed)


def letter_ids(lm) -> list[int]:
    """Token ids of " A".." E" (the tiny random model's characters "A".."E": it has no " A" token)."""
    ids = [lm.encode(("" if lm.name == "tiny-random-gpt2" else " ") + c) for c in "ABCDE"]
    if any(len(i) != 1 for i in ids):
        raise DataError(f"the answer letters ' A'..' E' are not single tokens for {lm.name} (' A' is "
                        f"{len(ids[0])} tokens); the target must be one token: use a model whose tokenizer has them")
    return [i[0] for i in ids]


def questions(cfg, lm) -> dict:
    from adaptlab.data.text import load_capitals
    from adaptlab.lm.prompts import question_block

    qs = random.Random(cfg.seed).sample(load_capitals(5, seed=cfg.seed), 246)
    rows = [(lm.encode(question_block(q, "simple")), q.answer) for q in qs]
    return {"test": rows[:cfg.n_test], "train": rows[cfg.n_test:cfg.n_test + cfg.n_train]}


def evaluate(lm, prompt, rows, letters) -> dict:
    """Valid rate, accuracy over the 5 letters, greedy accuracy, and how often each letter is the scored answer
    (``letter_counts``, A..E: a prompt at chance either spreads its answers or collapses onto one letter)."""
    import torch

    from adaptlab.lm.softprompt import next_token_logits

    greedy, scored = [], []
    ids = torch.tensor(letters, device=lm.device)
    with torch.no_grad():
        for b in range(0, len(rows), 32):
            logits = next_token_logits(prompt, lm, [c for c, _ in rows[b:b + 32]])  # (B, V)
            greedy += logits.argmax(-1).tolist()
            scored += ids[logits[:, ids].argmax(-1)].tolist()
    n = len(rows)
    return {"valid_rate": sum(g in letters for g in greedy) / n,
            "accuracy": sum(s == letters[a] for s, (_, a) in zip(scored, rows)) / n,
            "greedy_accuracy": sum(g == letters[a] for g, (_, a) in zip(greedy, rows)) / n,
            "letter_counts": [scored.count(t) for t in letters]}


def _batches(cfg, lm, rows, letters, size=None):
    from adaptlab.lm.softprompt import make_batch

    bs = min(cfg.train.batch_size, len(rows)) if size is None else size

    def batches(step):
        idx = common.order(len(rows), bs, cfg.seed, step)
        return make_batch(lm, [[("question", rows[i][0]), ("answer", [letters[rows[i][1]]])] for i in idx],
                          ["answer"])
    return batches


def _init(cfg, lm, P: int, init: str, index: int):
    import torch

    from adaptlab.lm.softprompt import init_prompt

    g = torch.Generator().manual_seed(derive_seed(cfg.seed, index))
    return init_prompt(lm, P, "text" if init == "letters" else init, text=LETTER_TEXT, generator=g)


def train_soft(cfg, lm, data, letters, P, init, ckpt, *, rows=None, steps=None, index=1) -> dict:
    """A soft prompt on ``rows`` (default: all training questions); the test read-out every epoch, or, when
    ``steps`` is given (the fine-tuning comparison, where an epoch can be one step), at the start and the end."""
    rows = data["train"] if rows is None else rows
    per = common.steps_per_epoch(len(rows), min(cfg.train.batch_size, len(rows)))
    every = per if steps is None else steps
    steps = cfg.train.epochs * per if steps is None else steps
    prompt, hist = common.train_prompt(
        lm, _init(cfg, lm, P, init, index), _batches(cfg, lm, rows, letters), steps=steps, lr=cfg.train.lr,
        evaluate=lambda p: evaluate(lm, p, data["test"], letters), eval_every=every, checkpoint=ckpt)
    return {"P": P, "init": init, "steps": steps, "steps_per_epoch": per, "loss": hist["loss"],
            "eval": hist["eval"], "train": evaluate(lm, prompt, rows, letters), **hist["eval"][-1],
            "timings": {"seconds": hist["seconds"]}}


def coordinate_search(cfg, lm, data, letters) -> dict:
    """Greedy coordinate search for a K-token hard prompt, candidates from the gradient w.r.t. the one-hot."""
    import torch

    from adaptlab.lm.softprompt import input_embedding, make_batch, prompt_loss

    W = input_embedding(lm).weight  # (V, D)
    rows = data["train"][:cfg.search_rows]
    batch = make_batch(lm, [[("q", c), ("a", [letters[a]])] for c, a in rows], ["a"])
    ids = [lm.encode(LETTER_TEXT)[i % 5] for i in range(cfg.K)]
    best = float(prompt_loss(W[ids], lm, batch).detach())
    trace = [best]
    for _ in range(cfg.search_rounds):
        for i in range(cfg.K):
            e = W[ids].detach().clone().requires_grad_()
            g, = torch.autograd.grad(prompt_loss(e, lm, batch), e)  # (K, D)
            cand = (-(W.detach() @ g[i])).topk(cfg.candidates).indices.tolist()  # linearised loss decrease
            for c in cand:
                trial = ids[:i] + [c] + ids[i + 1:]
                with torch.no_grad():
                    loss = float(prompt_loss(W[trial], lm, batch))
                if loss < best:
                    best, ids = loss, trial
            trace.append(best)
    with torch.no_grad():
        return {"ids": ids, "tokens": [lm.tokenizer.decode([t]) for t in ids], "search_loss": trace,
                **evaluate(lm, W[ids].detach(), data["test"], letters)}


def full_finetune(cfg, lm, data, letters, n: int) -> dict:
    from adaptlab.lm.softprompt import prompt_loss

    model = copy.deepcopy(lm.model)
    for p in model.parameters():
        p.requires_grad_(True)
    ft = dataclasses.replace(lm, model=model.train(False))
    rows = data["train"][:n]
    opt = make_optimizer([p for p in model.parameters()], "adam", cfg.finetune.lr)
    hist = fit(lambda b: prompt_loss(None, ft, b), _batches(cfg, ft, rows, letters), steps=cfg.finetune.steps,
               optimizer=opt)
    out = {"train": evaluate(ft, None, rows, letters), **evaluate(ft, None, data["test"], letters),
           "loss": hist["loss"]}
    del model, opt
    return out


def run(cfg: QAConfig, out_dir: Path, resume: bool = False) -> dict:
    stages = Stages(out_dir, resume)
    t0 = time.perf_counter()
    lm = common.load_model(cfg.model, cfg.seed, cfg.device)
    timings = {"load_model_seconds": time.perf_counter() - t0}
    letters = letter_ids(lm)
    data = questions(cfg, lm)
    res: dict = {"model": cfg.model, "n_train": len(data["train"]), "n_test": len(data["test"])}
    res["hard"] = stages.run("hard", lambda ckpt: evaluate(lm, None, data["test"], letters))
    res["variants"] = {}
    for j, v in enumerate(cfg.variants):
        P, _, init = v.partition(":")
        r = dict(stages.run(f"variant {v}", lambda ckpt, P=int(P), init=init, j=j: train_soft(
            cfg, lm, data, letters, P, init, ckpt, index=1 + j)))
        timings[f"variant_{v}_seconds"] = r.pop("timings")["seconds"]
        res["variants"][v] = r
    if cfg.search:
        t1 = time.perf_counter()
        res["search"] = {"hard": stages.run("search", lambda ckpt: coordinate_search(cfg, lm, data, letters))}
        timings["search_seconds"] = time.perf_counter() - t1
        soft_k = dict(stages.run("search soft", lambda ckpt: train_soft(cfg, lm, data, letters, cfg.K,
                                                                        "letters", ckpt, index=50)))
        soft_k.pop("timings")
        res["search"]["soft"] = soft_k
    res["finetune"] = {}
    for n in cfg.finetune.sizes:
        t1 = time.perf_counter()
        full = stages.run(f"finetune {n}", lambda ckpt, n=n: full_finetune(cfg, lm, data, letters, n))
        sp = dict(stages.run(f"finetune soft {n}", lambda ckpt, n=n: train_soft(
            cfg, lm, data, letters, 20, "letters", ckpt, rows=data["train"][:n], steps=cfg.finetune.steps, index=60)))
        sp.pop("timings")
        res["finetune"][str(n)] = {"full": full, "soft": sp}
        timings[f"finetune_{n}_seconds"] = time.perf_counter() - t1
    timings["cpu_seconds"] = time.process_time()  # this process's CPU (one thread: an idle core)
    res["timings"] = timings
    return res


def figures(results: dict, cfg: QAConfig, out_dir: Path) -> list[str]:
    from adaptlab.viz.softprompt import qa_curve_figure, qa_finetune_figure

    save_figure(qa_curve_figure(results), out_dir / "curves.png")
    if not results["finetune"]:
        return ["curves.png"]
    save_figure(qa_finetune_figure(results), out_dir / "finetune.png")
    return ["curves.png", "finetune.png"]


def summary(results: dict, cfg: QAConfig) -> str:
    def row(name, r):
        return (f"| {name} | {r['valid_rate']:.2f} | {r['accuracy']:.2f} | {r['greedy_accuracy']:.2f} | "
                f"{' / '.join(map(str, r['letter_counts']))} |")

    lines = [f"Model `{results['model']}`" + (" (random tiny GPT-2: a smoke test, chance numbers)" if
             results["model"] == common.TINY else "") + f"; 5-way capitals, {results['n_train']} training and "
             f"{results['n_test']} test questions; chance accuracy 0.20.", "",
             "| prompt | valid rate | accuracy (5 letters) | greedy accuracy | scored answers A / B / C / D / E |",
             "|---|---|---|---|---|",
             row("question only (hard, zero-shot)", results["hard"])]
    for r in results["variants"].values():
        lines.append(row(f"soft P={r['P']}, init {r['init']}, {r['steps']} steps", r))
    if "search" in results:
        s = results["search"]
        lines.append(row(f"hard, K={len(s['hard']['ids'])} by coordinate search: "
                         f"{''.join(s['hard']['tokens'])!r}", s["hard"]))
        lines.append(row(f"soft, K={s['soft']['P']} vectors, init letters", s["soft"]))
    if results["finetune"]:
        lines += ["", "Full fine-tuning vs soft prompt (P=20, letters init) on n training questions "
                  f"({cfg.finetune.steps} steps each): train / test accuracy", "", "| n | full FT | soft prompt |",
                  "|---|---|---|"]
    for n, r in results["finetune"].items():
        lines.append(f"| {n} | {r['full']['train']['accuracy']:.2f} / {r['full']['accuracy']:.2f} | "
                     f"{r['soft']['train']['accuracy']:.2f} / {r['soft']['accuracy']:.2f} |")
    return "\n".join(lines + [""])


EXPERIMENTS = [
    Experiment("soft-prompt-qa", "Soft prompts on 5-way capitals with letter answers: length, letter init, "
               "training curve; coordinate-searched hard prompt vs soft; full fine-tuning vs soft at small n",
               QAConfig, run, figures, summary,
               quick={"model": common.TINY, "n_test": 10, "n_train": 8, "variants": ["2:letters"], "train.epochs": 1,
                      "train.batch_size": 4, "K": 2, "candidates": 2, "search_rows": 4, "finetune.sizes": [4],
                      "finetune.steps": 2},
               check=check_inputs),
]
