"""Chain-of-thought targets for a soft prompt (HW 5(a)-(b)): loss on reasoning + answer vs on the answer only.

Arithmetic word problems come from templates in the style of HW 5 ("You split a dozen apples among yourself
and three friends. How many apples does each person get?"), each with a worked reasoning line and
``"Final answer: N"``. Every sequence is ``"Question: {q}\\nAnswer: {reasoning} Final answer: {N}\\n"``; two
soft prompts are trained on the same sequences with different loss masks (:func:`adaptlab.lm.softprompt.make_batch`):
``reasoning+answer`` (every token after "Answer:", through the number) and ``answer`` (the number's tokens only).

Held-out problems are read two ways: *generated*: greedy continuation of ``"Question: {q}\\nAnswer:"`` up to the
newline, the answer parsed from "Final answer: N" (anything else is invalid); *given the reasoning*: the gold
reasoning is in the input and the number is scored token by token (teacher forced): does the prompt read the
answer off the reasoning?
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from adaptlab.config import BaseConfig, check
from adaptlab.engine import derive_seed
from adaptlab.io import save_figure
from adaptlab.lm.softprompt import INITS
from adaptlab.runner import Experiment, Stages

from . import _softprompt_common as common

WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine"}
ITEMS = ("apples", "pencils", "cookies", "marbles", "stickers", "oranges", "books", "coins")
FINAL = re.compile(r"Final answer:\s*(-?\d+)")
MASKS = ("reasoning+answer", "answer")


def problem(rng: random.Random) -> tuple[str, str, int]:
    """(question, reasoning, answer) from one of five templates, numbers drawn by ``rng``."""
    item = rng.choice(ITEMS)
    kind = rng.randrange(5)
    if kind == 0:  # sharing dozens among yourself and friends (12 splits evenly among 2, 3, 4 or 6 people)
        friends, dozens = rng.choice([1, 2, 3, 5]), rng.choice([1, 2, 3])
        total, people = 12 * dozens, friends + 1
        what = "a dozen" if dozens == 1 else f"{WORDS[dozens]} dozen"
        friend_s = "friend" if friends == 1 else "friends"
        return (f"You split {what} {item} equally among yourself and {WORDS.get(friends, 'one')} {friend_s}. "
                f"How many {item} does each person get?",
                f"{what[0].upper() + what[1:]} is {total}. There are 1 + {friends} = {people} people. "
                f"{total} / {people} = {total // people}.", total // people)
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    if kind == 1:
        return (f"Sam has {a} {item} and buys {b} more. How many {item} does Sam have now?",
                f"Sam starts with {a}. {a} + {b} = {a + b}.", a + b)
    if kind == 2:
        return (f"There are {a} boxes with {b} {item} in each box. How many {item} are there in all?",
                f"{a} boxes of {b} is {a} * {b} = {a * b}.", a * b)
    if kind == 3:
        c = a + b
        return (f"Mia had {c} {item} and gave {b} to a friend. How many {item} does Mia have left?",
                f"Mia starts with {c}. {c} - {b} = {a}.", a)
    c = rng.randint(1, 5)
    return (f"Leo has {a} bags with {b} {item} each and finds {c} more. How many {item} does Leo have?",
            f"{a} bags of {b} is {a} * {b} = {a * b}. {a * b} + {c} = {a * b + c}.", a * b + c)


def problems(n: int, seed: int) -> list[tuple[str, str, int]]:
    """``n`` distinct problems drawn with ``seed``."""
    rng, seen, out = random.Random(seed), set(), []
    for _ in range(100 * n):
        p = problem(rng)
        if p[0] not in seen:
            seen.add(p[0])
            out.append(p)
            if len(out) == n:
                return out
    raise ValueError(f"only {len(out)} distinct problems could be drawn; lower the counts")


@dataclass
class TrainConfig:
    prompt_len: int = 20  # soft tokens P
    epochs: int = 2  # passes over the training problems
    lr: float = 1e-3  # Adam learning rate
    batch_size: int = 8  # problems per step


@dataclass
class CoTConfig(BaseConfig):
    model: str = "smollm2-135m-instruct"  # HF name, local folder, 'smollm2-135m-instruct' or 'tiny-random'
    n_train: int = 160  # training problems
    n_test: int = 30  # held-out problems (disjoint from training)
    init: str = "vocab"  # soft prompt init: uniform, vocab or text
    train: TrainConfig = field(default_factory=TrainConfig)  # both soft prompts (one per loss mask)
    max_new_tokens: int = 40  # greedy tokens generated per held-out problem (a reasoning line and the answer)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(4 <= self.n_train <= 2000, "n_train", self.n_train, "an integer in 4..2000")
        check(2 <= self.n_test <= 500, "n_test", self.n_test, "an integer in 2..500")
        check(self.init in INITS, "init", self.init, f"one of {INITS}")
        check(isinstance(self.train.prompt_len, int) and 1 <= self.train.prompt_len <= 512, "train.prompt_len",
              self.train.prompt_len, "an integer in 1..512 (soft tokens; 0 or less is no prompt)")
        check(1 <= self.train.epochs <= 100, "train.epochs", self.train.epochs, "an integer in 1..100")
        check(0 < self.train.lr <= 1.0, "train.lr", self.train.lr, "a number in (0, 1]")
        check(1 <= self.train.batch_size <= self.n_train, "train.batch_size", self.train.batch_size,
              "an integer in 1..n_train")
        check(4 <= self.max_new_tokens <= 256, "max_new_tokens", self.max_new_tokens, "an integer in 4..256")


def _segments(lm, q, reasoning, n):
    return [("question", lm.encode(f"Question: {q}\nAnswer:")), ("reasoning", lm.encode(f" {reasoning}")),
            ("final", lm.encode(" Final answer:")), ("answer", lm.encode(f" {n}")), ("newline", lm.encode("\n"))]


def evaluate(lm, prompt, rows, max_new_tokens) -> dict:
    import torch

    from adaptlab.lm.scoring import _head
    from adaptlab.lm.softprompt import loss_positions, make_batch, prompt_generate, prompt_hidden

    texts = prompt_generate(prompt, lm, [lm.encode(f"Question: {q}\nAnswer:") for q, _, _ in rows],
                            max_new_tokens, stop="\n")
    parsed = [int(m.group(1)) if (m := FINAL.search(t)) else None for t in texts]
    batch = make_batch(lm, [_segments(lm, *r) for r in rows], ["answer"])
    with torch.no_grad():  # teacher forced: every answer token the argmax after the gold reasoning
        P = 0 if prompt is None else prompt.shape[0]
        h = prompt_hidden(prompt, lm, batch["input_ids"], batch["attention_mask"])
        r, pos, target = loss_positions(batch["labels"], P)
        hit = (_head(lm, h[r, pos]).argmax(-1) == target).float()  # (N,)
        ok = torch.zeros(len(rows)).index_add_(0, r.cpu(), 1 - hit.cpu()) == 0  # (B,): every answer token right
    n = len(rows)
    return {"accuracy": sum(p == a for p, (_, _, a) in zip(parsed, rows)) / n,
            "valid_rate": sum(p is not None for p in parsed) / n,
            "given_reasoning_accuracy": float(ok.float().mean()), "examples": texts[:3]}


def train(cfg, lm, data, mask, ckpt) -> dict:
    import torch

    from adaptlab.lm.softprompt import init_prompt, make_batch

    loss_on = ["reasoning", "final", "answer"] if mask == "reasoning+answer" else ["answer"]
    segs = [_segments(lm, *r) for r in data["train"]]

    def batches(step):
        return make_batch(lm, [segs[i] for i in common.order(len(segs), cfg.train.batch_size, cfg.seed, step)], loss_on)

    g = torch.Generator().manual_seed(derive_seed(cfg.seed, 1))
    prompt0 = init_prompt(lm, cfg.train.prompt_len, cfg.init, text="Solve the problem step by step.", generator=g)
    steps = cfg.train.epochs * common.steps_per_epoch(len(segs), cfg.train.batch_size)
    prompt, hist = common.train_prompt(lm, prompt0, batches, steps=steps, lr=cfg.train.lr, checkpoint=ckpt)
    return {"steps": steps, "loss": hist["loss"], **evaluate(lm, prompt, data["test"], cfg.max_new_tokens),
            "timings": {"seconds": hist["seconds"]}}


def check_inputs(cfg: CoTConfig) -> None:
    common.check_model(cfg.model)


def run(cfg: CoTConfig, out_dir: Path, resume: bool = False) -> dict:
    stages = Stages(out_dir, resume)
    t0 = time.perf_counter()
    lm = common.load_model(cfg.model, cfg.seed, cfg.device)
    timings = {"load_model_seconds": time.perf_counter() - t0}
    rows = problems(cfg.n_train + cfg.n_test, derive_seed(cfg.seed, 2))
    data = {"train": rows[:cfg.n_train], "test": rows[cfg.n_train:]}
    res: dict = {"model": cfg.model, "n_train": cfg.n_train, "n_test": cfg.n_test,
                 "example": "Question: {}\nAnswer: {} Final answer: {}".format(*rows[0])}
    res["no_prompt"] = stages.run("no prompt", lambda ckpt: evaluate(lm, None, data["test"], cfg.max_new_tokens))
    res["masks"] = {}
    for mask in MASKS:
        r = dict(stages.run(mask, lambda ckpt, mask=mask: train(cfg, lm, data, mask, ckpt)))
        timings[f"{mask}_seconds"] = r.pop("timings")["seconds"]
        res["masks"][mask] = r
    timings["cpu_seconds"] = time.process_time()  # this process's CPU (one thread: an idle core)
    res["timings"] = timings
    return res


def figures(results: dict, cfg: CoTConfig, out_dir: Path) -> list[str]:
    from adaptlab.viz.softprompt import cot_figure

    save_figure(cot_figure(results), out_dir / "cot.png")
    return ["cot.png"]


def summary(results: dict, cfg: CoTConfig) -> str:
    lines = [f"Model `{results['model']}`" + (" (random tiny GPT-2: a smoke test, chance numbers)" if
             results["model"] == common.TINY else "") + f"; {results['n_train']} training and {results['n_test']} "
             f"held-out problems; soft prompt P={cfg.train.prompt_len}, lr {cfg.train.lr:g}, "
             f"{cfg.train.epochs} epochs.", "",
             "Example: `" + results["example"].replace("\n", " / ") + "`", "",
             "| prompt | generated accuracy | valid rate | answer right given the gold reasoning |",
             "|---|---|---|---|"]
    rows = [("no prompt", results["no_prompt"])] + [(f"soft, loss on {m}", r) for m, r in results["masks"].items()]
    for name, r in rows:
        lines.append(f"| {name} | {r['accuracy']:.2f} | {r['valid_rate']:.2f} | {r['given_reasoning_accuracy']:.2f} |")
    return "\n".join(lines + [""])


EXPERIMENTS = [
    Experiment("soft-prompt-cot", "Chain-of-thought targets for a soft prompt: loss on reasoning + answer vs "
               "answer only, templated arithmetic word problems", CoTConfig, run, figures, summary,
               quick={"model": common.TINY, "n_train": 8, "n_test": 4, "train.prompt_len": 2, "train.batch_size": 4,
                      "train.epochs": 1, "max_new_tokens": 4},
               check=check_inputs),
]
