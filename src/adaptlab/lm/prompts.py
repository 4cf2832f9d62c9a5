"""Prompt strategies for multiple-choice questions and the metrics of the seed notebook (HW 4b, part 1).

Strategies (``prefix`` is shared by every question and encoded once; ``prompt`` is per question):

- ``simple``: the question, its lettered options and ``Answer:``.
- ``simple_qa``: the same as ``Question: ... Answer:``.
- ``qa_instruction``: an instruction ("answer with the letter"), then ``simple_qa``.
- ``few_shot``: the instruction and ``k`` demonstrations with their correct letters, then the question.
- ``incorrect_few_shot``: the same demonstrations, each labelled with a random wrong letter.
- ``cloze``: ``Question: ... Answer:`` without options; each option's own text is scored as the continuation.

Each lettered strategy is read two ways: **scored** (the log-probability of each letter `` A``.. as the next
token; argmax = prediction, softmax over the letters = probabilities) and **generated** (greedy decoding of a
few tokens, parsed for a letter; an unparseable answer is invalid). Cloze is scored only.

Metrics: accuracy (with a 95% Wilson interval), valid-answer rate, the distribution of predicted letters, the
mean probability of the chosen option when right vs when wrong (normal 95% CIs), and a failure taxonomy:
invalid output, collapse onto one letter, and right fact / wrong letter (the generated text contains the right
option's text but not its letter).

Example (a tiny random model: scores near chance)::

    >>> from adaptlab.data.text import MCQuestion
    >>> from adaptlab.lm.load import tiny_random_lm
    >>> qs = [MCQuestion("2+2?", ("3", "4"), 1), MCQuestion("1+2?", ("3", "5"), 0)]
    >>> r = evaluate_mc(tiny_random_lm(n_positions=512), qs, "few_shot", demos=qs, k=1, max_new_tokens=2)
    >>> sorted(r["metrics"])[:4]
    ['accuracy', 'accuracy_ci', 'conf_correct', 'conf_correct_ci']
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence

import torch

from adaptlab.data.text import LETTERS, MCQuestion
from adaptlab.errors import ConfigError

STRATEGIES = ("simple", "simple_qa", "qa_instruction", "few_shot", "incorrect_few_shot", "cloze")
INSTRUCTION = ("The following are multiple choice questions. Answer each with the letter of the correct "
               "option.\n\n")
_LETTER = re.compile(r"^\W*([A-J])(?![a-z])")


def _options(q: MCQuestion) -> str:
    return "".join(f"{LETTERS[i]}. {o}\n" for i, o in enumerate(q.options))


def question_block(q: MCQuestion, style: str) -> str:
    """``style`` = ``"simple"`` (question, options, Answer:), ``"qa"`` (Question: ...) or ``"cloze"``."""
    if style == "simple":
        return f"{q.question}\n{_options(q)}Answer:"
    if style == "qa":
        return f"Question: {q.question}\n{_options(q)}Answer:"
    if style == "cloze":
        return f"Question: {q.question}\nAnswer:"
    raise ConfigError(f"style={style!r} is invalid; expected 'simple', 'qa' or 'cloze'")


def build_prompts(strategy: str, questions: Sequence[MCQuestion], demos: Sequence[MCQuestion] = (), k: int = 0,
                  seed: int = 0) -> tuple[str, list[str]]:
    """``(prefix, prompts)`` for ``strategy`` (see the module docstring).

    Args:
        demos: the demonstration pool (disjoint from ``questions``); the first ``k`` of a seeded shuffle are used
            by ``few_shot``/``incorrect_few_shot`` (and by ``cloze`` with their answer text, when k > 0).
        seed: the demonstration draw and, for ``incorrect_few_shot``, the wrong letters.

    Raises:
        ConfigError: an unknown strategy, or ``k`` larger than the pool.
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy={strategy!r} is invalid; expected one of {STRATEGIES}")
    if not 0 <= k <= len(demos):
        raise ConfigError(f"k={k!r} demonstrations requested but the pool holds {len(demos)}; expected 0..{len(demos)}")
    rng = random.Random(seed)
    chosen = rng.sample(list(demos), k) if k else []
    if strategy == "simple":
        return "", [question_block(q, "simple") for q in questions]
    if strategy == "simple_qa":
        return "", [question_block(q, "qa") for q in questions]
    if strategy == "cloze":
        shots = "".join(f"{question_block(d, 'cloze')} {d.options[d.answer]}\n\n" for d in chosen)
        return shots, [question_block(q, "cloze") for q in questions]
    prefix = INSTRUCTION
    for d in chosen if strategy in ("few_shot", "incorrect_few_shot") else []:
        label = d.answer
        if strategy == "incorrect_few_shot":
            label = rng.choice([i for i in range(len(d.options)) if i != d.answer])
        prefix += f"{question_block(d, 'qa')} {LETTERS[label]}\n\n"
    return prefix, [question_block(q, "qa") for q in questions]


def chat_wrap(tokenizer, prefix: str, prompts: Sequence[str]) -> tuple[str, list[str]]:
    """Put ``prefix + prompt`` in the user turn of the tokenizer's chat template, the assistant turn opened.

    The template is rendered once around a sentinel and split there, so the shared part before the user's text
    joins ``prefix`` (still cached once per batch) and the part after it (end of turn, assistant header) ends
    every prompt: ``head + prefix + prompt + tail`` is exactly what ``apply_chat_template`` renders for that
    user message. Instruct models (SmolLM2-Instruct) answer in their own format only inside it.

    Raises:
        ConfigError: the tokenizer has no chat template (a base model).
    """
    if getattr(tokenizer, "chat_template", None) is None:
        raise ConfigError("chat=true needs a model whose tokenizer has a chat template (an instruct model); "
                          "this one has none")
    mark = "\x00ADAPTLAB-USER-TEXT\x00"
    text = tokenizer.apply_chat_template([{"role": "user", "content": mark}], tokenize=False,
                                         add_generation_prompt=True)
    if text.count(mark) != 1:
        raise ConfigError("the tokenizer's chat template does not place the user text verbatim once; use chat=false")
    head, tail = text.split(mark)
    return head + prefix, [p + tail for p in prompts]


def parse_letter(text: str, n_options: int) -> int:
    """The option index of the first letter answer in ``text`` (``" C."``, ``"(B)"``, ``"A"``), or -1."""
    m = _LETTER.match(text)
    if not m or LETTERS.index(m.group(1)) >= n_options:
        return -1
    return LETTERS.index(m.group(1))


def _wilson(k: int, n: int) -> tuple[float, float]:
    if n == 0:
        return 0.0, 0.0
    z, p = 1.96, k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, c - h), min(1.0, c + h)


def _mean_ci(x: list[float]) -> tuple[float, float]:
    if not x:
        return 0.0, 0.0
    m = sum(x) / len(x)
    if len(x) < 2:
        return m, 0.0
    sd = math.sqrt(sum((v - m) ** 2 for v in x) / (len(x) - 1))
    return m, 1.96 * sd / math.sqrt(len(x))


def mc_metrics(pred: Sequence[int], answer: Sequence[int], n_options: int,
               confidence: Sequence[float] | None = None) -> dict:
    """Accuracy, valid rate, letter distribution and confidence when right vs wrong.

    Args:
        pred: predicted option index per question, -1 = invalid. answer: the right index.
        confidence: probability of the predicted option per question (ignored where invalid).
    """
    n = len(pred)
    right = [int(p == a) for p, a in zip(pred, answer)]
    valid = [p >= 0 for p in pred]
    lo, hi = _wilson(sum(right), n)
    dist = {LETTERS[i]: sum(p == i for p in pred) / max(n, 1) for i in range(n_options)}
    dist["invalid"] = sum(not v for v in valid) / max(n, 1)
    out = {"n": n, "accuracy": sum(right) / max(n, 1), "accuracy_ci": [lo, hi],
           "valid_rate": sum(valid) / max(n, 1), "letters": dist,
           "top_letter_share": max(dist[LETTERS[i]] for i in range(n_options))}
    conf = list(confidence) if confidence is not None else [0.0] * n
    for key, want in (("conf_correct", 1), ("conf_incorrect", 0)):
        m, h = _mean_ci([c for c, r, v in zip(conf, right, valid) if v and r == want])
        out[key], out[key + "_ci"] = m, h
    return out


def failure_taxonomy(questions: Sequence[MCQuestion], pred: Sequence[int], texts: Sequence[str] | None = None,
                     collapse_share: float = 0.5) -> dict:
    """Fractions of questions by failure: invalid output, right fact / wrong letter, other wrong letter; and
    whether predictions collapse onto one letter (its share > ``collapse_share``)."""
    n = max(len(questions), 1)
    inv = fact = other = 0
    for i, (q, p) in enumerate(zip(questions, pred)):
        if p == q.answer:
            continue
        said = (texts[i] if texts is not None else "").lower()
        if q.options[q.answer].lower() in said:
            fact += 1
        elif p < 0:
            inv += 1
        else:
            other += 1
    counts = [sum(p == i for p in pred) for i in range(len(questions[0].options))] if questions else [0]
    top = max(counts) / n
    return {"invalid": inv / n, "right_fact_wrong_letter": fact / n, "wrong_letter": other / n,
            "collapsed": top > collapse_share, "collapse_letter": LETTERS[counts.index(max(counts))],
            "collapse_share": top}


def evaluate_mc(lm, questions: Sequence[MCQuestion], strategy: str, *, demos: Sequence[MCQuestion] = (),
                k: int = 0, seed: int = 0, generate_answers: bool = True, max_new_tokens: int = 4,
                batch_size: int = 32, chat: bool = False) -> dict:
    """Run one strategy on ``questions``: scored (and, for lettered strategies, generated) predictions.

    Returns:
        ``{"metrics": scored metrics, "generated": generated-answer metrics or None, "taxonomy": ...,
        "pred": [...], "probs": (Q, O) list, "texts": generated strings or None}``.
    """
    from adaptlab.lm.decode import generate, generate_scored
    from adaptlab.lm.scoring import score_options

    if not questions:
        raise ConfigError("questions is empty; expected at least one question")
    prefix, prompts = build_prompts(strategy, questions, demos, k, seed)
    if chat:  # ``chat``: inside the model's chat template (user turn, then the assistant's answer is scored)
        prefix, prompts = chat_wrap(lm.tokenizer, prefix, prompts)
    O = len(questions[0].options)
    # After "Answer:" the answer follows a space; in the chat template it opens the assistant's turn, after a
    # newline, with no space (SmolLM2 answers "A." there), so the scored tokens are the ones it would write.
    sep = "" if chat else " "
    if strategy == "cloze":
        opts = [[sep + o for o in q.options] for q in questions]
    else:
        opts = [[sep + LETTERS[i] for i in range(O)]] * len(questions)
    texts = None
    if strategy != "cloze" and generate_answers and all(len(lm.encode(o)) == 1 for o in opts[0]):
        # one pass per prompt for both reads: the letters are scored from the first greedy step's logits
        texts, lp = generate_scored(lm, prompts, opts[0], prefix=prefix, max_new_tokens=max_new_tokens,
                                    batch_size=batch_size)  # (Q, O)
    else:
        lp = score_options(lm, prompts, opts, prefix=prefix, batch_size=batch_size)["logprob"]  # (Q, O)
    probs = torch.softmax(lp, 1)
    pred = lp.argmax(1).tolist()
    conf = probs.max(1).values.tolist()
    answer = [q.answer for q in questions]
    out = {"metrics": mc_metrics(pred, answer, O, conf), "pred": pred, "probs": probs.tolist(),
           "prob_correct": [float(probs[i, a]) for i, a in enumerate(answer)], "generated": None, "texts": None}
    gen_pred = pred
    if strategy != "cloze" and generate_answers:
        if texts is None:
            texts = generate(lm, prompts, prefix=prefix, max_new_tokens=max_new_tokens, batch_size=batch_size)
        gen_pred = [parse_letter(t, O) for t in texts]
        gconf = [float(probs[i, p]) if p >= 0 else 0.0 for i, p in enumerate(gen_pred)]
        out["generated"] = mc_metrics(gen_pred, answer, O, gconf)
        out["texts"] = texts
        out["gen_pred"] = gen_pred
    out["taxonomy"] = failure_taxonomy(questions, gen_pred, out["texts"])
    return out
