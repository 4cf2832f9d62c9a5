"""The soft-prompt experiments' pieces on the tiny random GPT-2: PEFT's prompt tuning trains the same curve as
ours (the peer as oracle), resume equals an uninterrupted run, the data splits are disjoint, every generated
arithmetic problem's reasoning computes its answer, and bad input is one line with exit 2 and no run folder."""

from __future__ import annotations

import importlib.util
import re

import pytest
import torch

from adaptlab.errors import DataError

from helpers import cli

pytest.importorskip("transformers", reason="transformers is not installed (pip install -e '.[lm]')")

from adaptlab.experiments import _softprompt_common as common  # noqa: E402
from adaptlab.lm.load import tiny_random_lm  # noqa: E402
from adaptlab.lm.softprompt import freeze, init_prompt, make_batch  # noqa: E402


def _task(lm):
    rows = [(lm.encode(f"q{i}: {i}+1="), lm.encode(str((i + 1) % 10))) for i in range(12)]

    def batches(step):
        idx = common.order(len(rows), 4, 0, step)
        return make_batch(lm, [[("q", rows[i][0]), ("a", rows[i][1])] for i in idx], ["a"])
    return batches


def test_order_is_a_permutation_per_epoch():
    seen = [i for s in range(3) for i in common.order(12, 4, 5, s)]
    assert sorted(seen) == list(range(12))
    assert common.order(12, 4, 5, 3) != common.order(12, 4, 5, 0) or common.order(12, 4, 5, 4) != \
        common.order(12, 4, 5, 1)  # the next epoch is another permutation
    assert common.order(12, 4, 5, 7) == common.order(12, 4, 5, 7)


@pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason="pip install 'adaptlab[softprompt]' (peft)")
def test_peft_prompt_tuning_trains_the_same_curve():
    lm = freeze(tiny_random_lm())
    p0 = init_prompt(lm, 3, "vocab", generator=torch.Generator().manual_seed(0))
    ours, h1 = common.train_prompt(lm, p0, _task(lm), steps=6, lr=1e-2)
    peer, h2 = common.peft_train(lm, p0, _task(lm), steps=6, lr=1e-2)
    assert type(lm.model).__name__ == "GPT2LMHeadModel"  # unwrapped again
    torch.testing.assert_close(torch.tensor(h1["loss"]), torch.tensor(h2["loss"]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours, peer, rtol=1e-4, atol=1e-5)
    assert float((ours - p0).abs().max()) > 1e-3  # it trained


def test_resumed_training_equals_uninterrupted(tmp_path):
    from adaptlab.runner import Stages

    lm = freeze(tiny_random_lm())
    p0 = init_prompt(lm, 2, "uniform", generator=torch.Generator().manual_seed(1))
    full, hf = common.train_prompt(lm, p0, _task(lm), steps=6, lr=1e-2)
    normal = _task(lm)

    class Stop(Exception):
        pass

    def failing(step):
        if step == 5:
            raise Stop  # after the checkpoint of step 4 (every=2)
        return normal(step)

    with pytest.raises(Stop):
        Stages(tmp_path, resume=False, every=2).run("soft", lambda ckpt: common.train_prompt(
            lm, p0, failing, steps=6, lr=1e-2, checkpoint=ckpt))
    resumed, hr = Stages(tmp_path, resume=True, every=2).run("soft", lambda ckpt: common.train_prompt(
        lm, p0, normal, steps=6, lr=1e-2, checkpoint=ckpt))
    torch.testing.assert_close(resumed, full, rtol=0, atol=0)
    assert hr["loss"] == hf["loss"]


def test_cot_reasoning_computes_the_answer():
    from adaptlab.experiments.soft_prompt_cot import FINAL, problems

    rows = problems(300, 0)
    assert len({q for q, _, _ in rows}) == 300
    for q, reasoning, n in rows:
        last = re.findall(r"= (-?\d+)\.", reasoning)[-1]
        assert int(last) == n, (q, reasoning)
        for expr in re.findall(r"(\d+) ([-+*/]) (\d+) = (\d+)", reasoning):
            a, op, b, c = int(expr[0]), expr[1], int(expr[2]), int(expr[3])
            assert {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op] == c and (op != "/" or a % b == 0)
        assert int(FINAL.search(f"{reasoning} Final answer: {n}\n").group(1)) == n


def test_pluralize_splits_are_disjoint_and_exclude_the_irregulars():
    pytest.importorskip("inflect")
    from adaptlab.data.text import wordnet_dir
    from adaptlab.experiments.soft_prompt_pluralize import IRREGULAR, PluralizeConfig, nouns

    try:
        wordnet_dir()
    except DataError:
        pytest.skip("WordNet is not installed (apt-get install wordnet-base)")
    lm = tiny_random_lm()
    lm.name = "tiny-random-gpt2"
    d = nouns(PluralizeConfig(n_train=20, n_val=10), lm)
    tr, va = {s for s, _, _ in d["train"]}, {s for s, _, _ in d["val"]}
    assert len(tr) == 20 and len(va) == 10 and not tr & va and not (tr | va) & set(IRREGULAR)
    assert [s for s, _, _ in d["test"]] == list(IRREGULAR)


def test_a_target_that_is_not_one_token_is_refused():
    from adaptlab.experiments.soft_prompt_pluralize import test_nouns
    from adaptlab.experiments.soft_prompt_qa import letter_ids

    lm = tiny_random_lm()
    lm.name = "char-gpt2"  # a character tokenizer: " feet" is 5 tokens, " A" is 2
    with pytest.raises(DataError, match=r"the irregular plural 'feet' is not a single token .* 5 tokens"):
        test_nouns(lm)
    with pytest.raises(DataError, match=r"' A' is 2 tokens\); the target must be one token"):
        letter_ids(lm)


@pytest.mark.parametrize("name, override, message", [
    ("soft-prompt-pluralize", "train.prompt_len=0", "train.prompt_len=0 is invalid; expected an integer in 1..512"),
    ("soft-prompt-pluralize", "notebook.prompt_len=-2", "notebook.prompt_len=-2 is invalid"),
    ("soft-prompt-pluralize", "init=zeros", "init='zeros' is invalid; expected one of"),
    ("soft-prompt-qa", "K=-1", "K=-1 is invalid; expected an integer in 1..64"),
    ("soft-prompt-qa", "variants=0:vocab", "variants=['0:vocab'] is invalid"),
    ("soft-prompt-cot", "train.prompt_len=-5", "train.prompt_len=-5 is invalid"),
    ("soft-prompt-cot", "model=no/such/folder", "is neither a local folder nor a reachable HuggingFace model"),
])
def test_bad_input_is_one_line_and_leaves_nothing(tmp_path, name, override, message):
    out = tmp_path / "run"
    code, _, err = cli("run", name, "--quick", "--out", str(out), "--set", override)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_a_model_folder_with_multi_token_letters_fails_before_the_run(tmp_path):
    lm = tiny_random_lm()
    lm.model.save_pretrained(tmp_path / "m")
    lm.tokenizer.save_pretrained(tmp_path / "m")
    out = tmp_path / "run"
    code, _, err = cli("run", "soft-prompt-qa", "--quick", "--out", str(out), "--set", f"model={tmp_path / 'm'}")
    assert code == 2 and "the target must be one token" in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_hard_prompt_as_embeddings_equals_the_tokens_in_the_context():
    from adaptlab.lm.softprompt import next_token_logits

    lm = freeze(tiny_random_lm(seed=2))
    lm.model.double()
    pre = "The plural of cat is cats.\n"
    ctx = ["The plural of dog is", "x"]
    got = next_token_logits(common.hard_prompt(pre, lm), lm, [lm.encode(c) for c in ctx])
    ref = next_token_logits(None, lm, [lm.encode(pre + c) for c in ctx])
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)


def test_qa_read_out_counts_every_scored_letter_once():
    from adaptlab.experiments.soft_prompt_qa import evaluate, letter_ids
    from adaptlab.lm.softprompt import next_token_logits

    lm = freeze(tiny_random_lm(seed=3))
    lm.name = "tiny-random-gpt2"
    letters = letter_ids(lm)
    rows = [(lm.encode(f"q{i} A. x B. y\nAnswer:"), i % 5) for i in range(7)]
    r = evaluate(lm, None, rows, letters)
    one = [int(next_token_logits(None, lm, [c])[0, letters].argmax()) for c, _ in rows]  # row by row
    assert r["letter_counts"] == [one.count(k) for k in range(5)] and sum(r["letter_counts"]) == 7
    assert r["accuracy"] == sum(k == a for k, (_, a) in zip(one, rows)) / 7


def test_qa_without_search_and_finetuning_runs_only_the_prompts(tmp_path):
    import json

    out = tmp_path / "run"
    code, _, err = cli("run", "soft-prompt-qa", "--quick", "--out", str(out), "--set", "search=false",
                       "--set", "finetune.sizes=[]")
    assert code == 0, err
    res = json.loads((out / "results.json").read_text())
    assert "search" not in res and res["finetune"] == {} and list(res["variants"]) == ["2:letters"]
    assert (out / "curves.png").is_file() and not (out / "finetune.png").exists()
