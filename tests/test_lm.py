"""adaptlab.lm on a tiny randomly initialised GPT-2 with a character tokenizer (no download).

Oracles: batched, padded, prefix-cached scores equal one-sequence-at-a-time unpadded forward passes of the full
model (for both padding sides); batched greedy generation equals transformers' own greedy ``generate`` per
prompt; top-p filtering equals a brute-force search over subsets.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from adaptlab.errors import ConfigError

pytest.importorskip("transformers", reason="transformers is not installed (pip install -e '.[lm]')")

from adaptlab.lm.decode import generate, generate_ids, generate_scored, next_token, top_p_filter  # noqa: E402
from adaptlab.lm.load import tiny_random_lm  # noqa: E402
from adaptlab.lm.scoring import continuation_logprobs, score_options  # noqa: E402

PROMPTS = ["Q: 1+1=", "Question: what is the capital of France?\nAnswer:", "x", "a much longer prompt here, ok"]
OPTIONS = [[" 2", " 3", " 22"], [" Paris", " Rome", " B"], [" yy", " z", " abc d"], ["!", " no", "  two  "]]
PREFIX = "Answer each question.\n"


def _reference(lm, prefix, prompts, options):
    """Sum of log-probs of each option from one unpadded forward pass of the whole LM per sequence."""
    out = []
    for p, opts in zip(prompts, options):
        row = []
        for o in opts:
            ctx, tgt = lm.encode(prefix) + lm.encode(p), lm.encode(o)
            ids = torch.tensor([ctx + tgt])
            with torch.no_grad():
                lp = lm.model(ids).logits[0].double().log_softmax(-1)  # (L, V)
            row.append(sum(float(lp[len(ctx) - 1 + t, tgt[t]]) for t in range(len(tgt))))
        out.append(row)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("cache_prefix", [True, False])
@pytest.mark.parametrize("batch_size", [1, 5, 64])
def test_batched_scores_equal_one_at_a_time(side, cache_prefix, batch_size):
    lm = tiny_random_lm(side)
    got = score_options(lm, PROMPTS, OPTIONS, prefix=PREFIX, cache_prefix=cache_prefix, batch_size=batch_size)
    ref = _reference(lm, PREFIX, PROMPTS, OPTIONS)
    # fp32 forward passes of different shapes agree to ~1e-6 per token here; 1e-4 leaves room for BLAS order
    torch.testing.assert_close(got["logprob"], ref, atol=1e-4, rtol=0)
    assert got["n_tokens"].tolist() == [[len(lm.encode(o)) for o in opts] for opts in OPTIONS]


@pytest.mark.parametrize("side", ["left", "right"])
def test_letter_scores_from_one_pass_per_question(side):
    lm = tiny_random_lm(side)
    letters = [[" A", " B", " C"]] * len(PROMPTS)
    got = score_options(lm, PROMPTS, letters, prefix=PREFIX, batch_size=4)["logprob"]
    torch.testing.assert_close(got, _reference(lm, PREFIX, PROMPTS, letters), atol=1e-4, rtol=0)


@pytest.mark.parametrize("side", ["left", "right"])
def test_prefix_cached_generation_equals_full_prompts(side):
    lm = tiny_random_lm(side, seed=2)
    prompts = ["abc", "hello world, this is", "z"]
    a = generate(lm, prompts, prefix="Shared prefix: ", max_new_tokens=6)
    b = generate(lm, ["Shared prefix: " + p for p in prompts], max_new_tokens=6)
    assert a == b


def test_padding_really_changes_something():
    """The oracle can fail: without the position ids a left-padded row scores differently."""
    lm = tiny_random_lm("left")
    short, long_ = lm.encode("ab"), lm.encode("a long context string")
    tgt = lm.encode(" xy")
    ids = torch.tensor([[0] * (len(long_) - len(short)) + short + tgt, long_ + tgt])
    mask = (torch.arange(ids.shape[1]) >= len(long_) - len(short)).long()[None].repeat(2, 1)
    mask[1] = 1
    with torch.no_grad():
        naive = lm.model(ids, attention_mask=mask, position_ids=torch.arange(ids.shape[1])[None]).logits
    ref = continuation_logprobs(lm, [short], [tgt])[0]
    lp = naive[0].log_softmax(-1)
    o = len(long_) - len(short)
    wrong = torch.stack([lp[o + len(short) - 1 + t, tgt[t]] for t in range(len(tgt))])
    assert (wrong - ref).abs().max() > 1e-3


@pytest.mark.parametrize("side", ["left", "right"])
def test_prefix_cache_with_empty_context(side):
    lm = tiny_random_lm(side)
    ctx, tgt = [[], lm.encode("abc"), []], [lm.encode("xy"), lm.encode("q"), lm.encode("long target")]
    a = continuation_logprobs(lm, ctx, tgt, prefix_ids=lm.encode("hello "), batch_size=8)
    b = continuation_logprobs(lm, ctx, tgt, prefix_ids=lm.encode("hello "), cache_prefix=False, batch_size=1)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=0)


def test_scoring_refuses_bad_input():
    lm = tiny_random_lm()
    with pytest.raises(ConfigError, match="longer than the model's context of 128"):
        score_options(lm, ["x" * 200], [[" a"]])
    with pytest.raises(ConfigError, match="empty"):
        continuation_logprobs(lm, [lm.encode("a")], [[]])
    with pytest.raises(ConfigError, match="no token before it"):
        continuation_logprobs(lm, [[]], [lm.encode("a")])
    with pytest.raises(ConfigError, match="same number of options"):
        score_options(lm, ["a", "b"], [[" x"], [" x", " y"]])


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_generate_scored_equals_generate_plus_one_at_a_time_scores(side, batch_size):
    """The one-pass read of a lettered strategy: texts equal generate's, scores equal unpadded full forwards."""
    lm = tiny_random_lm(side, seed=3)
    letters = ["A", "B", "C"]  # one character = one token of the character tokenizer
    texts, lp = generate_scored(lm, PROMPTS, letters, prefix=PREFIX, max_new_tokens=3, batch_size=batch_size)
    assert texts == generate(lm, PROMPTS, prefix=PREFIX, max_new_tokens=3, batch_size=batch_size)
    torch.testing.assert_close(lp, _reference(lm, PREFIX, PROMPTS, [letters] * len(PROMPTS)), atol=1e-4, rtol=0)
    with pytest.raises(ConfigError, match="not one token"):
        generate_scored(lm, PROMPTS, [" A", "B"])


@pytest.mark.parametrize("side", ["left", "right"])
def test_batched_greedy_equals_transformers_generate(side):
    lm = tiny_random_lm(side, seed=3)
    prompts = ["abc", "hello world, this is", "z"]
    enc = [lm.encode(p) for p in prompts]
    ours = generate_ids(lm, enc, max_new_tokens=7, stop_at_eos=False)
    for ids, got in zip(enc, ours):
        hf = lm.model.generate(torch.tensor([ids]), max_new_tokens=7, min_new_tokens=7, do_sample=False,
                               pad_token_id=0)[0, len(ids):].tolist()
        assert got == hf


def test_temperature_to_zero_equals_greedy():
    lm = tiny_random_lm(seed=1)
    prompts = ["abc", "hello world", "q: "]
    greedy = generate(lm, prompts, max_new_tokens=6)
    cold = generate(lm, prompts, max_new_tokens=6, do_sample=True, temperature=1e-4,
                    generator=torch.Generator().manual_seed(0))
    assert cold == greedy
    hot = [generate(lm, prompts, max_new_tokens=6, do_sample=True, temperature=2.0,
                    generator=torch.Generator().manual_seed(s)) for s in range(3)]
    assert any(h != greedy for h in hot)  # sampling at T = 2 on a near-uniform random model does differ


def test_top_p_keeps_smallest_set_with_mass_p():
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        probs = torch.rand(6, generator=g, dtype=torch.float64) ** 3
        probs /= probs.sum()
        p = float(torch.rand(1, generator=g))
        best = None  # brute force: the smallest subset with mass >= p (its mass the largest among equals)
        for r in range(1, 7):
            sets = [s for s in itertools.combinations(range(6), r) if probs[list(s)].sum() >= p]
            if sets:
                best = max(sets, key=lambda s: float(probs[list(s)].sum()))
                break
        kept = top_p_filter(probs, p)
        assert set(torch.nonzero(kept).flatten().tolist()) == set(best)
        torch.testing.assert_close(kept.sum(), torch.tensor(1.0, dtype=torch.float64))
        torch.testing.assert_close(kept[list(best)], probs[list(best)] / probs[list(best)].sum())


def test_sampling_frequencies_follow_the_nucleus():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).repeat(20000, 1)
    draws = next_token(logits, do_sample=True, temperature=1.0, top_p=0.8, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=4).double() / len(draws)
    want = top_p_filter(torch.softmax(logits[0].double(), -1), 0.8)
    assert freq[3] == 0 and (freq - want).abs().max() < 0.015  # 20000 draws: binomial SE <= 0.0036


def test_generation_refuses_bad_input():
    lm = tiny_random_lm()
    with pytest.raises(ConfigError, match="temperature=0.0 is invalid with sampling"):
        generate(lm, ["a"], do_sample=True, temperature=0.0)
    with pytest.raises(ConfigError, match="top_p"):
        generate(lm, ["a"], do_sample=True, top_p=0.0)
    with pytest.raises(ConfigError, match="longer than the model's context of 128"):
        generate(lm, ["x" * 120], max_new_tokens=16)
