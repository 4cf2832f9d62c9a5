"""English-Spanish gold translation pairs from the FreeDict dictionaries (Debian ``dict-freedict-eng-spa`` and
``dict-freedict-spa-eng``), read from their dictd files.

A dictd dictionary is an ``.index`` of ``headword<TAB>offset<TAB>length`` lines, the two numbers written in
base 64 over ``A-Z a-z 0-9 + /``, and a ``.dict.dz`` (gzip-readable) holding the entries at those byte offsets.
An entry is a headword line (``abandon /əbændən/``) followed by senses, numbered (``1. calmarse, sosegarse``)
or not; the translations of a sense are separated by commas or semicolons.

Every dictd dictionary of the project (these two, and the word tasks' ones in :mod:`adaptlab.data.wordtasks`)
is looked up by :func:`dictd_dir` in one place: ``root``, then ``$ADAPTLAB_DATA/dictd``, then Debian's
``/usr/share/dictd``. ``$ADAPTLAB_DATA/freedict`` (the BLI reader's folder before the two lookups were merged)
is still read, with a warning saying to rename it.

Example::

    >>> b64_decode("EGh"), b64_decode("BG")
    (16801, 70)
    >>> parse_entry("abate /əbeit/\\n1. calmarse, sosegarse\\n2. amainar\\n")
    ['calmarse', 'sosegarse', 'amainar']
"""

from __future__ import annotations

import gzip
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

from adaptlab.errors import DataError

SYSTEM_DIR = Path("/usr/share/dictd")  # where Debian's dictd dictionaries install
DICTS = {"eng-spa": "dict-freedict-eng-spa", "spa-eng": "dict-freedict-spa-eng"}
_B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}
_SENSE = re.compile(r"^\s*\d+\.\s*")
_SINGLE = re.compile(r"^[^\W\d_]+$")  # one word of letters (accents included)


def b64_decode(s: str) -> int:
    """A dictd base-64 number (most significant digit first)."""
    n = 0
    for c in s:
        if c not in _B64:
            raise DataError(f"{s!r} is not a dictd base-64 number; expected the characters A-Z a-z 0-9 + /")
        n = 64 * n + _B64[c]
    return n


def parse_entry(entry: str) -> list[str]:
    """The translations of a dictd entry, in order: every comma/semicolon-separated item of each sense line."""
    out = []
    for line in entry.splitlines()[1:]:  # line 0: headword and pronunciation
        line = _SENSE.sub("", line).strip()
        out.extend(t.strip() for t in re.split(r"[,;]", line) if t.strip())
    return out


def dictd_dir(names, root: str | os.PathLike | None = None, install: str = "") -> Path:
    """The first folder holding ``{name}.index`` and ``{name}.dict.dz`` for every name of ``names``: ``root``,
    ``$ADAPTLAB_DATA/dictd``, the legacy ``$ADAPTLAB_DATA/freedict`` (read with a warning) or /usr/share/dictd;
    a DataError listing the folders and ``install`` otherwise."""
    names = [names] if isinstance(names, str) else list(names)
    cands = [Path(root)] if root else []
    data = os.environ.get("ADAPTLAB_DATA")
    legacy = Path(data) / "freedict" if data else None
    if data:
        cands += [Path(data) / "dictd", legacy]
    cands.append(SYSTEM_DIR)
    for c in cands:
        if all((c / f"{n}.index").is_file() and (c / f"{n}.dict.dz").is_file() for n in names):
            if c == legacy and not root:
                warnings.warn(f"dictd files found in {c}, the old folder; move them to {Path(data) / 'dictd'} "
                              "(the one dictd folder under $ADAPTLAB_DATA)", DeprecationWarning, stacklevel=2)
            return c
    raise DataError(f"dictionar{'y' if len(names) == 1 else 'ies'} {', '.join(names)} not found (looked in "
                    f"{', '.join(map(str, cands))}); install {'it' if len(names) == 1 else 'them'}: {install}")


def freedict_dir(root: str | os.PathLike | None = None) -> Path:
    """The folder holding both FreeDict English-Spanish directions (:func:`dictd_dir`)."""
    return dictd_dir([f"freedict-{d}" for d in DICTS], root, f"apt-get install {' '.join(DICTS.values())}")


def dictd_entries(index: str | os.PathLike, dz: str | os.PathLike) -> Iterator[tuple[str, str]]:
    """``(headword, entry text)`` for every entry of a dictd dictionary, in index order (database entries
    skipped); a malformed index line or an entry past the end of the data is a DataError naming it."""
    data = gzip.open(dz, "rb").read()
    for n, line in enumerate(Path(index).read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split("\t")
        if len(parts) != 3:
            raise DataError(f"{index}:{n}: {line!r} is not 'word<TAB>offset<TAB>length'")
        word, off, length = parts[0], b64_decode(parts[1]), b64_decode(parts[2])
        if word.startswith("00database") or word.startswith("00-database"):
            continue
        if off + length > len(data):
            raise DataError(f"{index}:{n}: entry {word!r} ends at byte {off + length}, past the end of {dz} "
                            f"({len(data)} bytes); reinstall the dictionary")
        yield word, data[off:off + length].decode("utf-8", errors="replace")


def read_dictd(index: str | os.PathLike, dz: str | os.PathLike) -> dict[str, list[str]]:
    """``{headword: translations}`` of a dictd dictionary (headwords that appear twice are merged)."""
    out: dict[str, list[str]] = {}
    for word, entry in dictd_entries(index, dz):
        out.setdefault(word, []).extend(parse_entry(entry))
    return out


def load_en_es_pairs(root: str | os.PathLike | None = None) -> list[tuple[str, str]]:
    """Sorted unique single-word lowercase (english, spanish) pairs from both FreeDict directions."""
    d = freedict_dir(root)
    pairs = set()
    for name in DICTS:
        for head, trans in read_dictd(d / f"freedict-{name}.index", d / f"freedict-{name}.dict.dz").items():
            head = head.strip().lower()
            for t in trans:
                t = t.lower()
                if _SINGLE.match(head) and _SINGLE.match(t):
                    pairs.add((head, t) if name == "eng-spa" else (t, head))
    return sorted(pairs)
