"""Monolingual English and Spanish corpora from Debian packages, tokenized and cached.

Four sources, each a pair of Debian packages holding the same documents in both languages (so the two corpora
are translations of each other, which makes their embedding spaces more alike than independent text would):

==================  =======================================  =================================================
source              English / Spanish package                what is read
==================  =======================================  =================================================
``bible``           ``sword-text-kjv`` / ``sword-text-sparv``  King James / Reina-Valera 1909, through pysword
``libreoffice``     ``libreoffice-help-en-us`` / ``-es``       the HTML help pages
``debian-reference``  ``debian-reference-en`` / ``-es``        ``debian-reference.LANG.txt.gz``
``manpages``        ``manpages`` / ``manpages-es``             the troff pages the package lists, macros dropped
==================  =======================================  =================================================

:func:`load_corpus` returns sentences (lists of lowercase word tokens) and caches them under
``cache_dir()/bli`` as one text file written atomically next to a manifest with its SHA-256; a cached file is
used only when its hash matches, so a rerun reads it in about a second.

Example::

    >>> tokenize("¡Él dijo: 'Hello, world' 3 times!")
    ['él', 'dijo', 'hello', 'world', 'times']
"""

from __future__ import annotations

import gzip
import hashlib
import html.parser
import json
import re
from collections.abc import Iterator
from pathlib import Path

from adaptlab.errors import DataError

SOURCES = ("bible", "libreoffice", "debian-reference", "manpages")
LANGS = ("en", "es")
PACKAGES = {
    ("bible", "en"): "sword-text-kjv", ("bible", "es"): "sword-text-sparv",
    ("libreoffice", "en"): "libreoffice-help-en-us", ("libreoffice", "es"): "libreoffice-help-es",
    ("debian-reference", "en"): "debian-reference-en", ("debian-reference", "es"): "debian-reference-es",
    ("manpages", "en"): "manpages", ("manpages", "es"): "manpages-es",
}
SWORD_MODULES = {"en": "engKJV2006eb", "es": "spaRV1909eb"}
LIBREOFFICE_DIRS = {"en": "en-US", "es": "es"}
CACHE_VERSION = 1  # bump when tokenization or reading changes: old cache files are then rebuilt
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")  # letters (accents included), an inner apostrophe kept
_SENTENCE_MAX = 1000  # tokens per sentence handed to word2vec (gensim truncates at 10,000)


def install_hint(source: str, lang: str) -> str:
    return f"install the Debian package: apt-get install {PACKAGES[(source, lang)]}"


def cache_dir() -> Path:
    """``$ADAPTLAB_CACHE/bli`` or ``~/.cache/adaptlab/bli``."""
    from adaptlab.io import cache_root

    return cache_root() / "bli"


def tokenize(text: str) -> list[str]:
    """Lowercase word tokens (letters only; numbers and punctuation dropped)."""
    return [m.group(0).replace("’", "'") for m in _WORD.finditer(text.lower())]


# ------------------------------------------------------------------------------------------- readers


def _package_files(package: str, root: str = "/var/lib/dpkg/info") -> list[str]:
    """The files a Debian package installed (from dpkg's list), sorted; DataError when it is not installed."""
    lst = Path(root) / f"{package}.list"
    if not lst.is_file():
        raise DataError(f"Debian package {package} is not installed; run: apt-get install {package}")
    return sorted(p for p in lst.read_text(encoding="utf-8").splitlines() if Path(p).is_file())


class _HTMLText(html.parser.HTMLParser):
    """Visible text of an HTML page, one paragraph per block element."""

    SKIP = {"script", "style", "head", "title"}
    BLOCK = {"p", "div", "li", "h1", "h2", "h3", "h4", "h5", "h6", "td", "th", "br", "pre", "dt", "dd", "tr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.depth = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.depth += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if not self.depth:
            self.parts.append(data)


def html_text(page: str) -> str:
    """Visible text of an HTML page."""
    p = _HTMLText()
    p.feed(page)
    return "".join(p.parts)


_TROFF_ESC = re.compile(r"\\(?:f(?:\[[^\]]*\]|\(..|.)|\(..|\[[^\]]*\]|\*(?:\(..|\[[^\]]*\]|.)|s[-+]?\d+|.)")


def troff_text(src: str) -> str:
    """Plain text of a troff man page: comments and macro names dropped, a macro's text arguments kept."""
    out = []
    for line in src.splitlines():
        if line.startswith(('.\\"', "'\\\"", '\\"')):
            continue
        if line.startswith((".", "'")):
            name, _, rest = line[1:].partition(" ")
            if name in ("SH", "SS", "B", "I", "BI", "IB", "BR", "RB", "IR", "RI", "TP", "IP", "Nm", "Nd"):
                line = rest.replace('"', " ")
            else:
                continue
        out.append(_TROFF_ESC.sub(" ", line))
    return "\n".join(out)


def _sword_conf(root: Path, module: str) -> bool:
    return any(p.stem.lower() == module.lower() for p in (root / "mods.d").glob("*.conf"))


def _bible(lang: str) -> Iterator[str]:
    try:
        from pysword.modules import SwordModules
    except ModuleNotFoundError:
        raise DataError("the Bible corpora are read with pysword; run: pip install pysword  "
                        "(or 'adaptlab[bli]')") from None
    root = Path("/usr/share/sword")
    module = SWORD_MODULES[lang]
    if not _sword_conf(root, module):
        raise DataError(f"SWORD module {module} not found in {root}/mods.d; {install_hint('bible', lang)}")
    modules = SwordModules(str(root))
    modules.parse_modules()
    bible = modules.get_bible_from_module(module)
    for testament in bible.get_structure().get_books().values():
        for book in testament:
            for chapter in range(1, len(book.chapter_lengths) + 1):
                yield bible.get(books=[book.name], chapters=[chapter], clean=True, join="\n")


def _libreoffice(lang: str) -> Iterator[str]:
    marker = f"/usr/share/libreoffice/help/{LIBREOFFICE_DIRS[lang]}/"
    for f in _package_files(PACKAGES[("libreoffice", lang)]):
        if f.startswith(marker) and f.endswith(".html"):
            yield html_text(Path(f).read_text(encoding="utf-8", errors="replace"))


def _debian_reference(lang: str) -> Iterator[str]:
    path = Path(f"/usr/share/debian-reference/debian-reference.{lang}.txt.gz")
    if not path.is_file():
        raise DataError(f"{path} not found; {install_hint('debian-reference', lang)}")
    yield gzip.open(path, "rt", encoding="utf-8", errors="replace").read()


def _manpages(lang: str) -> Iterator[str]:
    for f in _package_files(PACKAGES[("manpages", lang)]):
        if "/man/" in f and f.endswith(".gz") and "/man3" not in f:  # man3 (C library) is in manpages-dev
            text = gzip.open(f, "rt", encoding="utf-8", errors="replace").read()
            if not text.startswith(".so "):  # a page that only includes another one
                yield troff_text(text)


READERS = {"bible": _bible, "libreoffice": _libreoffice, "debian-reference": _debian_reference,
           "manpages": _manpages}


def check_sources(lang: str, sources: tuple[str, ...] | list[str] = SOURCES) -> None:
    """Raise DataError naming the package to install for the first source of ``lang`` that is missing."""
    for s in sources:
        if s == "bible":
            try:
                import pysword  # noqa: F401
            except ModuleNotFoundError:
                raise DataError("the Bible corpora are read with pysword; run: pip install pysword  "
                                "(or 'adaptlab[bli]')") from None
            if not _sword_conf(Path("/usr/share/sword"), SWORD_MODULES[lang]):
                raise DataError(f"the {lang} Bible is missing; {install_hint(s, lang)}")
        elif s == "debian-reference":
            if not Path(f"/usr/share/debian-reference/debian-reference.{lang}.txt.gz").is_file():
                raise DataError(f"the {lang} Debian Reference is missing; {install_hint(s, lang)}")
        else:
            _package_files(PACKAGES[(s, lang)])


def read_sentences(source: str, lang: str) -> Iterator[list[str]]:
    """Token lists of one source, one per non-empty line (longer lines cut into pieces of 1000 tokens)."""
    if source not in READERS or lang not in LANGS:
        raise DataError(f"unknown corpus {source!r}/{lang!r}; expected a source in {SOURCES} and lang in {LANGS}")
    for doc in READERS[source](lang):
        for line in doc.splitlines():
            toks = tokenize(line)
            for i in range(0, len(toks), _SENTENCE_MAX):
                yield toks[i:i + _SENTENCE_MAX]


# --------------------------------------------------------------------------------------------- cache


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_corpus(lang: str, sources: tuple[str, ...] | list[str] = SOURCES, cache: bool = True
                ) -> list[list[str]]:
    """Sentences (lists of tokens) of ``lang`` from ``sources``, in source order; cached and verified.

    The cache holds one file per (lang, source): ``corpus-LANG-SOURCE.txt`` (a sentence per line) and its
    manifest ``.json`` (SHA-256, token count, cache version). A file whose hash or version does not match is
    rebuilt; both are written through a temporary file and ``os.replace``.
    """
    from adaptlab.io import atomic_write_json, atomic_write_text

    check_sources(lang, sources)
    out: list[list[str]] = []
    for s in sources:
        path = cache_dir() / f"corpus-{lang}-{s}.txt"
        meta = path.with_suffix(".json")
        if cache and path.is_file() and meta.is_file():
            try:
                m = json.loads(meta.read_text())
            except ValueError:
                m = {}
            if m.get("version") == CACHE_VERSION and m.get("sha256") == _sha256(path):
                out.extend(line.split() for line in path.read_text(encoding="utf-8").splitlines())
                continue
        sents = [t for t in read_sentences(s, lang) if t]
        out.extend(sents)
        if cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, "".join(" ".join(t) + "\n" for t in sents))
            atomic_write_json(meta, {"version": CACHE_VERSION, "sha256": _sha256(path), "source": s, "lang": lang,
                                     "tokens": sum(map(len, sents)), "sentences": len(sents)})
    return out
