"""Skip-gram word vectors trained with gensim's word2vec, cached as word vectors only (a float32 ``.npy`` and the
vocabulary, most frequent first) with a manifest holding both files' SHA-256, so a rerun loads them in a second.

Example::

    >>> sents = [["the", "cat", "sat"], ["the", "dog", "sat"]] * 50
    >>> vocab, vecs = skipgram_vectors(sents, dim=8, epochs=1, min_count=1, seed=0, cache=False)
    >>> sorted(vocab), tuple(vecs.shape)
    (['cat', 'dog', 'sat', 'the'], (4, 8))
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from adaptlab.errors import DataError

CACHE_VERSION = 1
GENSIM_INSTALL = "pip install gensim  (or 'adaptlab[bli]')"


def _stable_hash(s: str) -> int:
    """A hash that does not change with PYTHONHASHSEED (gensim seeds each word's initial vector with it)."""
    return int.from_bytes(hashlib.blake2b(s.encode("utf-8"), digest_size=4).digest(), "little")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def skipgram_vectors(sentences: list[list[str]], dim: int = 100, window: int = 5, min_count: int = 5,
                     epochs: int = 5, negative: int = 5, lr: float = 0.025, seed: int = 0, max_vocab: int | None = None,
                     cache: bool = True, cache_dir: Path | None = None, key: str = "") -> tuple[list[str], np.ndarray]:
    """``(vocab, vectors)`` of skip-gram (negative sampling) vectors, words sorted by decreasing frequency.

    Training uses one worker thread with a fixed seed so the vectors are reproducible. With ``cache``, the
    result is stored under ``cache_dir`` named by ``key`` and every training argument; a stored result whose
    hashes match is returned without training.

    Args:
        sentences: token lists. dim: vector size. window: context half-width. min_count: rarer words dropped.
        epochs: passes over the corpus. negative: negative samples. lr: starting learning rate (gensim's alpha).
        max_vocab: keep the most frequent words.
    Returns:
        vocab (list of n words), vectors (n, dim) float32.
    """
    from adaptlab.io import atomic_write_bytes, atomic_write_json

    args = {"dim": dim, "window": window, "min_count": min_count, "epochs": epochs, "negative": negative, "lr": lr,
            "seed": seed, "max_vocab": max_vocab, "tokens": sum(map(len, sentences)), "version": CACHE_VERSION}
    tag = hashlib.sha256(json.dumps([key, args], sort_keys=True).encode()).hexdigest()[:16]
    if cache:
        if cache_dir is None:
            raise DataError("skipgram_vectors(cache=True) needs a cache_dir")
        base = Path(cache_dir) / f"sgns-{key}-{tag}"
        npy, voc, man = base.with_suffix(".npy"), base.with_suffix(".vocab.json"), base.with_suffix(".json")
        if npy.is_file() and voc.is_file() and man.is_file():
            try:
                m = json.loads(man.read_text())
            except ValueError:
                m = {}
            if m.get("npy_sha256") == _sha(npy) and m.get("vocab_sha256") == _sha(voc) and m.get("args") == args:
                return json.loads(voc.read_text(encoding="utf-8")), np.load(npy)
    try:
        from gensim.models import Word2Vec
    except ModuleNotFoundError:
        raise DataError(f"skip-gram training needs gensim; run: {GENSIM_INSTALL}") from None
    model = Word2Vec(sentences, vector_size=dim, window=window, min_count=min_count, sg=1, negative=negative,
                     epochs=epochs, alpha=lr, seed=seed, workers=1, max_final_vocab=max_vocab, sorted_vocab=1,
                     hashfxn=_stable_hash)
    vocab = list(model.wv.index_to_key)
    if not vocab:
        raise DataError(f"no word occurs {min_count} times in the {args['tokens']} tokens; lower min_count")
    vecs = np.ascontiguousarray(model.wv.vectors, dtype=np.float32)
    if cache:
        import io

        base.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.save(buf, vecs)
        atomic_write_bytes(npy, buf.getvalue())
        atomic_write_bytes(voc, json.dumps(vocab, ensure_ascii=False).encode("utf-8"))
        atomic_write_json(man, {"args": args, "npy_sha256": _sha(npy), "vocab_sha256": _sha(voc)})
    return vocab, vecs
