"""Orthogonal Procrustes alignment of two embedding spaces and bilingual lexicon induction (BLI) retrieval.

Given seed translation pairs with source vectors ``X`` (n, d) and target vectors ``Y`` (n, d), the orthogonal
map minimising ``||X R^T - Y||_F`` is

    R = U V^T,   where  U S V^T = svd(Y^T X)                                       (Schönemann 1966)

Translations are retrieved by nearest neighbour (cosine) or by cross-domain similarity local scaling (CSLS,
Conneau et al. 2018), which subtracts each point's mean similarity to its k nearest neighbours in the other
space and so demotes *hubs*, target words close to everything:

    CSLS(Rx, y) = 2 cos(Rx, y) - r_T(Rx) - r_S(y),   r_T(Rx) = mean of the k largest cos(Rx, y') over targets y'

Everything is computed in ``chunk``-row blocks in float32 (the (n_src, n_tgt) similarity matrix is never
built). :func:`refine` is MUSE's refinement: a new dictionary of mutual CSLS nearest neighbours among the most
frequent words, then Procrustes on it, repeated.

Example::

    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> x = normalize_embeddings(torch.randn(50, 8, generator=g, dtype=torch.float64))
    >>> q = torch.linalg.qr(torch.randn(8, 8, generator=g, dtype=torch.float64))[0]
    >>> r = orthogonal_procrustes(x, x @ q.T)
    >>> bool(torch.allclose(r, q))
    True
    >>> top = retrieve(x @ r.T, x @ q.T, method="csls", topk=1)
    >>> bool((top[:, 0] == torch.arange(50)).all())
    True

References:
    Schönemann, "A generalized solution of the orthogonal Procrustes problem", Psychometrika 1966.
    Mikolov, Le, Sutskever, "Exploiting similarities among languages for machine translation", 2013.
    Conneau, Lample, Ranzato, Denoyer, Jégou, "Word translation without parallel data" (MUSE), ICLR 2018.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch

from adaptlab.errors import ConfigError, DataError

METHODS = ("nn", "csls")


def _check_pair(x: torch.Tensor, y: torch.Tensor, what: str) -> None:
    if x.ndim != 2 or y.ndim != 2:
        raise ConfigError(f"{what}: expected two 2-D (words, dim) matrices, got shapes {tuple(x.shape)} and "
                          f"{tuple(y.shape)}")
    if x.shape[1] != y.shape[1]:
        raise ConfigError(f"{what}: source dimension {x.shape[1]} != target dimension {y.shape[1]}; both spaces "
                          "need the same dimension (project one first, e.g. with PCA)")


def normalize_embeddings(e: torch.Tensor, center: bool = True) -> torch.Tensor:
    """Unit-length rows, then (``center``) mean-centred and unit-length again (MUSE's ``renorm,center,renorm``)."""
    e = e / e.norm(dim=1, keepdim=True).clamp_min(1e-12)
    if center:
        e = e - e.mean(0, keepdim=True)
        e = e / e.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return e


def orthogonal_procrustes(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The orthogonal (d, d) ``R`` minimising ``||x R^T - y||_F`` over seed pairs (rows of ``x`` and ``y``).

    Args:
        x: (n, d) source vectors of the seed pairs. y: (n, d) their translations' vectors.
    Returns:
        (d, d) orthogonal matrix in the dtype of ``x``; map source vectors with ``x @ R.T``.
    """
    _check_pair(x, y, "procrustes")
    if x.shape[0] != y.shape[0]:
        raise ConfigError(f"procrustes: {x.shape[0]} source rows but {y.shape[0]} target rows; expected one row "
                          "per seed pair in both")
    if x.shape[0] == 0:
        raise DataError("procrustes: the seed dictionary is empty; expected at least one (source, target) pair "
                        "whose words are both in the vocabularies")
    u, _, vh = torch.linalg.svd(y.T @ x)  # (d, d) each
    return u @ vh


def knn_mean_similarity(queries: torch.Tensor, keys: torch.Tensor, k: int = 10, chunk: int = 4096) -> torch.Tensor:
    """(n_q,) mean cosine similarity of each query row to its ``k`` nearest key rows (rows unit-length)."""
    _check_pair(queries, keys, "knn_mean_similarity")
    if not 1 <= k <= keys.shape[0]:
        raise ConfigError(f"csls k={k!r} is invalid; expected an integer in 1..{keys.shape[0]} (the number of keys)")
    out = queries.new_empty(queries.shape[0])
    for i in range(0, queries.shape[0], chunk):
        sims = queries[i:i + chunk] @ keys.T  # (chunk, n_k)
        out[i:i + chunk] = sims.topk(k, dim=1).values.mean(1)
    return out


def retrieve(src: torch.Tensor, tgt: torch.Tensor, method: str = "csls", k: int = 10, topk: int = 10,
             chunk: int = 4096, queries: torch.Tensor | None = None) -> torch.Tensor:
    """(n_q, topk) indices into ``tgt`` of the best translations of each (mapped, unit-length) source row.

    Args:
        src: (n_src, d) mapped source vectors (all of them: CSLS's ``r_S`` of a target is taken over these).
        tgt: (n_tgt, d) target vectors. method: ``"nn"`` (cosine) or ``"csls"``. k: CSLS neighbourhood (10).
        topk: candidates returned per query. chunk: rows scored at once (memory is ``chunk * n_tgt`` floats).
        queries: indices of the source rows to translate (default: all).
    Returns:
        (n_q, topk) long tensor, best first.
    """
    _check_pair(src, tgt, "retrieve")
    if method not in METHODS:
        raise ConfigError(f"retrieval method={method!r} is invalid; expected one of {METHODS}")
    if not 1 <= topk <= tgt.shape[0]:
        raise ConfigError(f"topk={topk!r} is invalid; expected an integer in 1..{tgt.shape[0]} (the candidates)")
    q = torch.arange(src.shape[0], device=src.device) if queries is None else queries.to(src.device)
    # CSLS's r_T(Rx) is the same for every candidate of a query, so the ranking needs only 2 cos - r_S, i.e.
    # cos - r_S / 2: one fused matrix product per chunk, and no pass over the queries' neighbourhoods.
    offset = -0.5 * knn_mean_similarity(tgt, src, k, chunk) if method == "csls" else tgt.new_zeros(tgt.shape[0])
    out = torch.empty(len(q), topk, dtype=torch.long, device=src.device)
    for i in range(0, len(q), chunk):
        scores = torch.addmm(offset[None, :], src[q[i:i + chunk]], tgt.T)  # (chunk, n_tgt)
        out[i:i + chunk] = scores.topk(topk, dim=1).indices
    return out


def precision_at_k(top: torch.Tensor, gold: Sequence[Iterable[int]], ks: Sequence[int] = (1, 5, 10)
                   ) -> dict[str, float]:
    """``{"p@k": fraction of queries with any gold translation among their first k candidates}``.

    Args:
        top: (n_q, >= max(ks)) retrieved target indices, best first. gold: for each query, its gold targets.
    """
    if top.shape[0] != len(gold) or top.shape[0] == 0:
        raise ConfigError(f"precision_at_k: {top.shape[0]} retrieved rows for {len(gold)} gold sets; expected the "
                          "same non-zero number")
    if max(ks) > top.shape[1]:
        raise ConfigError(f"precision_at_k: k={max(ks)} but only {top.shape[1]} candidates were retrieved")
    rows = top.tolist()
    out = {}
    for k in ks:
        hits = sum(bool(set(r[:k]) & set(g)) for r, g in zip(rows, gold))
        out[f"p@{k}"] = hits / len(rows)
    return out


def mutual_nn_pairs(src: torch.Tensor, tgt: torch.Tensor, method: str = "csls", k: int = 10,
                    chunk: int = 4096) -> torch.Tensor:
    """(m, 2) index pairs ``(i, j)`` where target j is the best of source i and source i the best of target j."""
    fwd = retrieve(src, tgt, method, k, 1, chunk)[:, 0]  # (n_src,)
    bwd = retrieve(tgt, src, method, k, 1, chunk)[:, 0]  # (n_tgt,)
    i = torch.arange(src.shape[0], device=src.device)
    keep = bwd[fwd] == i
    return torch.stack([i[keep], fwd[keep]], 1)


def refine(src: torch.Tensor, tgt: torch.Tensor, r: torch.Tensor, iterations: int = 5, max_rank: int = 15000,
           method: str = "csls", k: int = 10, seed: torch.Tensor | None = None, chunk: int = 4096
           ) -> tuple[torch.Tensor, list[int]]:
    """MUSE refinement: ``iterations`` times, Procrustes on the mutual nearest neighbours of the mapped spaces.

    Args:
        src, tgt: (n, d) unit-length embeddings, rows sorted by frequency (most frequent first).
        r: (d, d) starting map. max_rank: only the first ``max_rank`` words of each side build the dictionary.
        seed: optional (m, 2) seed pairs kept in every induced dictionary (None: the induced pairs alone).
    Returns:
        ``(R, sizes)``: the refined map and the size of each induced dictionary.
    """
    _check_pair(src, tgt, "refine")
    if iterations < 0:
        raise ConfigError(f"refine iterations={iterations!r} is invalid; expected an integer >= 0")
    s, t = src[:max_rank], tgt[:max_rank]
    sizes = []
    for _ in range(iterations):
        pairs = mutual_nn_pairs(s @ r.T.to(s.dtype), t, method, k, chunk)  # (m, 2)
        if seed is not None and len(seed):
            pairs = torch.unique(torch.cat([pairs, seed.to(pairs.device)]), dim=0)
        sizes.append(int(pairs.shape[0]))
        r = orthogonal_procrustes(src[pairs[:, 0]], tgt[pairs[:, 1]])
    return r, sizes


def gold_index(pairs: Iterable[tuple[str, str]], src_vocab: Mapping[str, int], tgt_vocab: Mapping[str, int]
               ) -> dict[int, list[int]]:
    """``{source index: [target indices]}`` of the pairs whose two words are both in the vocabularies."""
    out: dict[int, list[int]] = {}
    for a, b in pairs:
        if a in src_vocab and b in tgt_vocab:
            out.setdefault(src_vocab[a], []).append(tgt_vocab[b])
    return out
