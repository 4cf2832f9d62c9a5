"""lm-supersense: balanced, disjoint gloss draws; prompts; metrics equal a by-hand recount; missing WordNet."""

from __future__ import annotations

import os
from collections import Counter

import pytest

from adaptlab.experiments.lm_supersense import SupersenseConfig, class_names, evaluate, load_glosses, prompts

from helpers import cli

needs_wn = pytest.mark.skipif(not os.path.isfile("/usr/share/wordnet/data.noun"), reason="apt-get install wordnet-base")


@needs_wn
def test_glosses_are_balanced_disjoint_definitions():
    test, pool = load_glosses(SupersenseConfig(per_class=3, pool_per_class=2))
    assert Counter(c for _, c in test) == {c: 3 for c in range(26)}
    assert Counter(c for _, c in pool) == {c: 2 for c in range(26)}
    assert not {g for g, _ in test} & {g for g, _ in pool}
    assert all('; "' not in g and g for g, _ in test + pool)  # examples cut off, never empty
    again, _ = load_glosses(SupersenseConfig(per_class=3, pool_per_class=2))
    assert again == test  # the draw is the seed's


def test_prompts_hold_k_demonstrations_and_the_instruction():
    test = [("a small dog", 2), ("a sad mood", 9)]
    pool = [(f"gloss {i}", i) for i in range(26)]
    prefix, ps = prompts(test, pool, instructed=True, k=5, seed=1)
    assert prefix.count("Definition: ") == 5 and prefix.startswith("Each definition")
    assert all(n in prefix for n in class_names())  # the instruction lists every class name
    assert ps == ["Definition: a small dog\nCategory:", "Definition: a sad mood\nCategory:"]
    assert prompts(test, pool, instructed=False, k=0, seed=1)[0] == ""
    with pytest.raises(ValueError):
        prompts(test, pool, instructed=True, k=27, seed=1)


def test_metrics_equal_a_recount_of_the_scores():
    pytest.importorskip("transformers")
    from adaptlab.lm.load import tiny_random_lm
    from adaptlab.lm.scoring import score_options

    lm = tiny_random_lm(n_positions=1024, seed=4)
    test = [(f"definition number {i}", i % 26) for i in range(30)]
    prefix, ps = prompts(test, [], instructed=True, k=0, seed=0)
    r = evaluate(lm, test, prefix, ps, batch_size=7)
    lp = score_options(lm, ps, [[" " + n for n in class_names()]] * len(ps), prefix=prefix)["logprob"]
    pred = lp.argmax(1).tolist()
    assert r["accuracy"] == sum(p == c for p, (_, c) in zip(pred, test)) / 30
    assert sum(map(sum, r["confusion"])) == 30
    assert all(r["confusion"][c][p] >= 1 for p, (_, c) in zip(pred, test))
    top, n = Counter(pred).most_common(1)[0]
    assert r["top_class_share"] == n / 30 and 0 < r["prob_right"] < 1


def test_missing_wordnet_is_one_line_exit_2(tmp_path, monkeypatch):
    import adaptlab.data.text as text

    def missing(root=None):
        raise text.DataError("WordNet 3.0 not found; install it: " + text.WORDNET_INSTALL)

    monkeypatch.setattr(text, "wordnet_dir", missing)
    out = tmp_path / "run"
    code, _, err = cli("run", "lm-supersense", "--quick", "--out", str(out))
    assert code == 2 and "apt-get install wordnet-base" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
