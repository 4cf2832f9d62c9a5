"""lm-probe's digit statistics against hand-computed values, and its missing-WordNet refusal."""

from __future__ import annotations

import math

import pytest

from helpers import cli

pytest.importorskip("scipy")
from adaptlab.experiments.lm_probe import digit_stats  # noqa: E402


def test_uniform_digits_pass_and_constant_digits_fail():
    uniform = digit_stats([" ".join("0123456789" * 10)] * 3, 100)
    assert uniform["chi2"] == 0.0 and uniform["p_value"] == pytest.approx(1.0)
    assert uniform["entropy_bits"] == pytest.approx(math.log2(10)) and uniform["valid"] == 1.0
    assert uniform["distinct_samples"] == pytest.approx(1 / 3)
    assert uniform["distinct_bigrams"] == pytest.approx(10 / 297)  # 10 distinct of 3 x 99 bigrams
    const = digit_stats(["7 " * 100, "7 " * 20], 100)
    assert const["chi2"] == pytest.approx(9 * 120)  # sum (o - e)^2 / e with o = (120, 0, ...), e = 12
    assert const["p_value"] < 1e-100 and const["entropy_bits"] == 0.0 and const["valid"] == 0.5


def test_missing_wordnet_is_one_line_exit_2(tmp_path, monkeypatch):
    import adaptlab.data.text as text

    def missing(root=None):
        raise text.DataError("WordNet 3.0 not found; install it: " + text.WORDNET_INSTALL)

    monkeypatch.setattr(text, "wordnet_dir", missing)
    out = tmp_path / "run"
    code, _, err = cli("run", "lm-probe", "--quick", "--out", str(out))
    assert code == 2 and "apt-get install wordnet-base" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_validity_parsing_and_stats_by_hand():
    from adaptlab.experiments.lm_probe import parse_answer, validity_stats

    vocab = {"noun": {"dog", "ice"}, "country": {"france", "united states"}}
    assert [parse_answer("number", t, vocab) for t in [" 7", " 100!", " 0", " 101", " 07", " seven", ""]] == \
        ["7", "100", None, None, None, None, None]
    assert [parse_answer("letter", t, vocab) for t in [" Q", " q", " QR", " (B)"]] == ["Q", None, None, "B"]
    assert [parse_answer("noun", t, vocab) for t in [" Dog.", " cats", " ice cream"]] == ["dog", None, "ice"]
    assert [parse_answer("country", t, vocab) for t in [" United States, of course", " Paris", "\nFrance"]] == \
        ["united states", None, "france"]
    with pytest.raises(ValueError, match="kind="):
        parse_answer("color", "red", vocab)
    r = validity_stats(["a", "b", "b", "b", None, None, None, None])
    assert r["valid"] == 0.5 and r["distinct"] == 0.5 and r["top"][0] == ("b", 3)
    assert r["entropy_bits"] == pytest.approx(-(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75)))
    assert validity_stats([None, None]) == {"valid": 0.0, "distinct": 0.0, "entropy_bits": 0.0, "top": []}
