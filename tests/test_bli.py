"""Procrustes alignment and lexicon-induction retrieval (adaptlab.zeroshot.procrustes), the FreeDict and corpus
readers, and the bli-en-es experiment's bad input."""

from __future__ import annotations

import gzip
import importlib.util
import warnings
from pathlib import Path

import pytest
import torch

from adaptlab.data import corpora, freedict
from adaptlab.errors import ConfigError, DataError
from adaptlab.zeroshot import (
    knn_mean_similarity,
    mutual_nn_pairs,
    normalize_embeddings,
    orthogonal_procrustes,
    precision_at_k,
    refine,
    retrieve,
)

from conftest import assert_close
from helpers import cli


def _orthogonal(d: int, gen: torch.Generator) -> torch.Tensor:
    return torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))[0]


def _unit(n: int, d: int, gen: torch.Generator) -> torch.Tensor:
    return normalize_embeddings(torch.randn(n, d, generator=gen, dtype=torch.float64), center=False)


# ----------------------------------------------------------------------------------------------- Procrustes


@pytest.mark.parametrize("reflect", [False, True])
def test_procrustes_recovers_a_planted_orthogonal_matrix_exactly(reflect):
    gen = torch.Generator().manual_seed(1)
    q = _orthogonal(16, gen)
    if reflect:  # det -1: the map is any orthogonal matrix, not only a rotation
        q[:, 0] = -q[:, 0]
    x = torch.randn(200, 16, generator=gen, dtype=torch.float64)
    r = orthogonal_procrustes(x, x @ q.T)
    assert_close(r, q)
    assert_close(r @ r.T, torch.eye(16, dtype=torch.float64))


def test_procrustes_equals_scipy_under_noise():
    linalg = pytest.importorskip("scipy.linalg")
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(80, 10, generator=gen, dtype=torch.float64)
    y = x @ _orthogonal(10, gen).T + 0.3 * torch.randn(80, 10, generator=gen, dtype=torch.float64)
    omega, _ = linalg.orthogonal_procrustes(x.numpy(), y.numpy())  # argmin ||x Ω - y||: Ω = R^T
    assert_close(orthogonal_procrustes(x, y), torch.from_numpy(omega).T, rtol=1e-9, atol=1e-10)  # SVD rounding


def test_procrustes_beats_random_orthogonal_maps():
    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(50, 6, generator=gen, dtype=torch.float64), torch.randn(50, 6, generator=gen,
                                                                                 dtype=torch.float64)
    best = (x @ orthogonal_procrustes(x, y).T - y).norm()
    assert all(best <= (x @ _orthogonal(6, gen).T - y).norm() for _ in range(200))


# ------------------------------------------------------------------------------------------------ retrieval


def _dense_reference(src, tgt, method, k, topk):
    """Full float64 score matrix, CSLS from per-row loops."""
    sims = src.double() @ tgt.double().T  # (n_s, n_t)
    if method == "csls":
        r_s = torch.stack([row.sort(descending=True).values[:k].mean() for row in sims])
        r_t = torch.stack([col.sort(descending=True).values[:k].mean() for col in sims.T])
        sims = 2 * sims - r_s[:, None] - r_t[None, :]
    return sims.topk(topk, dim=1).indices


@pytest.mark.parametrize("method", ["nn", "csls"])
def test_chunked_float32_retrieval_equals_a_dense_float64_reference(method):
    gen = torch.Generator().manual_seed(4)
    src, tgt = _unit(53, 12, gen), _unit(71, 12, gen)
    ref = _dense_reference(src, tgt, method, 5, 4)
    got = retrieve(src.float(), tgt.float(), method, k=5, topk=4, chunk=7)  # 8 chunks, the last one partial
    assert torch.equal(got, ref)
    q = torch.tensor([50, 3, 17])
    assert torch.equal(retrieve(src.float(), tgt.float(), method, k=5, topk=4, chunk=2, queries=q), ref[q])


def test_knn_mean_similarity_equals_a_loop():
    gen = torch.Generator().manual_seed(5)
    a, b = _unit(30, 8, gen), _unit(40, 8, gen)
    loop = torch.stack([torch.tensor(sorted((a[i] @ b.T).tolist(), reverse=True)[:3], dtype=torch.float64).mean()
                        for i in range(30)])
    assert_close(knn_mean_similarity(a, b, k=3, chunk=4), loop)


def test_csls_demotes_a_planted_hub():
    """Every mapped source shares a component c, and c itself is a target: under cosine it is the nearest
    neighbour of many queries; CSLS subtracts its high mean similarity r_S and gives the queries back their own
    translations."""
    gen = torch.Generator().manual_seed(6)
    n, d = 200, 32
    tgt, c = _unit(n, d, gen), _unit(1, d, gen)
    noise = 0.7 * torch.randn(n, d, generator=gen, dtype=torch.float64) / d ** 0.5
    src = normalize_embeddings(tgt + noise + c, center=False)  # source i: target i, noise and the hub direction
    tgt = torch.cat([tgt, c])  # index n is the hub
    nn, csls = retrieve(src, tgt, "nn", topk=1)[:, 0], retrieve(src, tgt, "csls", k=10, topk=1)[:, 0]
    assert (nn == n).sum() >= 50  # 87 here: the hub captures many queries under cosine
    assert (csls == n).sum() <= 15  # 4 here
    gold = [[i] for i in range(n)]
    p_nn = precision_at_k(nn[:, None], gold, (1,))["p@1"]
    p_csls = precision_at_k(csls[:, None], gold, (1,))["p@1"]
    assert p_nn < 0.7 and p_csls > 0.9  # 0.54 and 0.97 here


def test_precision_at_k_hand_computed():
    top = torch.tensor([[3, 1, 2], [0, 4, 5], [9, 8, 7]])
    gold = [[1], [5, 0], [6]]  # hit at rank 2; hit at rank 1 (any gold counts); miss
    assert precision_at_k(top, gold, (1, 2, 3)) == {"p@1": 1 / 3, "p@2": 2 / 3, "p@3": 2 / 3}


def test_mutual_neighbours_of_identical_spaces_are_the_identity_pairs():
    x = _unit(40, 10, torch.Generator().manual_seed(7)).float()
    pairs = mutual_nn_pairs(x, x, "csls")
    assert torch.equal(pairs, torch.stack([torch.arange(40)] * 2, 1))


def test_refinement_recovers_the_planted_map_from_a_poor_seed():
    """A noisy 40-pair seed gives a map that translates half the words; mutual-neighbour refinement reaches the
    true map (P@1 0.51 -> 1.0 and ||R - Q|| 4.1 -> 0.18 here)."""
    gen = torch.Generator().manual_seed(8)
    n, d = 300, 20
    x = _unit(n, d, gen)
    q = _orthogonal(d, gen)
    y = normalize_embeddings(x @ q.T + 0.05 * torch.randn(n, d, generator=gen, dtype=torch.float64), center=False)
    seed = torch.arange(40)
    noisy = x[seed] + 0.4 * torch.randn(40, d, generator=gen, dtype=torch.float64)
    r0 = orthogonal_procrustes(noisy, y[seed])
    r, sizes = refine(x, y, r0, iterations=3, max_rank=n)
    gold = [[i] for i in range(n)]
    p0 = precision_at_k(retrieve(x @ r0.T, y, topk=1), gold, (1,))["p@1"]
    p1 = precision_at_k(retrieve(x @ r.T, y, topk=1), gold, (1,))["p@1"]
    assert p0 < 0.7 and p1 > 0.98 and sizes[-1] > 0.9 * n
    assert (r - q).norm() < 0.25 * (r0 - q).norm()


# ---------------------------------------------------------------------------------------------- bad input


def test_bad_input_is_one_clear_error():
    x = torch.randn(5, 4)
    with pytest.raises(DataError, match="seed dictionary is empty"):
        orthogonal_procrustes(x[:0], x[:0])
    with pytest.raises(ConfigError, match="source dimension 4 != target dimension 3"):
        orthogonal_procrustes(x, torch.randn(5, 3))
    with pytest.raises(ConfigError, match="5 source rows but 4 target rows"):
        orthogonal_procrustes(x, x[:4])
    with pytest.raises(ConfigError, match="source dimension 4 != target dimension 6"):
        retrieve(x, torch.randn(7, 6))
    with pytest.raises(ConfigError, match="method='cosine' is invalid"):
        retrieve(x, x, "cosine")
    with pytest.raises(ConfigError, match=r"csls k=9 is invalid; expected an integer in 1\.\.5"):
        retrieve(x, x, "csls", k=9, topk=1)
    with pytest.raises(DataError, match="apt-get install no-such-package-adaptlab"):
        corpora._package_files("no-such-package-adaptlab")


def test_missing_freedict_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(freedict, "SYSTEM_DIR", tmp_path / "none")
    monkeypatch.setenv("ADAPTLAB_DATA", str(tmp_path))
    with pytest.raises(DataError, match="apt-get install dict-freedict-eng-spa dict-freedict-spa-eng"):
        freedict.freedict_dir()


@pytest.mark.parametrize("override, key", [("train.dim=1", "train.dim=1 is invalid"),
                                           ("splits=0", "splits=0 is invalid"),
                                           ("sources=bibles", "sources=['bibles'] is invalid")])
def test_cli_rejects_bad_config_with_one_line(override, key, tmp_path):
    code, _, err = cli("run", "bli-en-es", "--quick", "--set", override, "--out", str(tmp_path / "x"))
    assert code == 2 and key in err and len(err.strip().splitlines()) == 1, err


# ------------------------------------------------------------------------------------------------- readers


def test_dictd_reader_on_a_tiny_dictionary(tmp_path):
    body = "00-database-info\nabout\nhouse /haʊs/\n1. casa\n2. hogar, domicilio\ndog /dɒg/\nperro\n"
    entries = {"00databaseinfo": body.index("00-database-info"), "house": body.index("house"),
               "dog": body.index("dog")}
    ends = {"00databaseinfo": body.index("house"), "house": body.index("dog"), "dog": len(body)}
    enc = body.encode()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

    def b64(n):
        return alphabet[n] if n < 64 else b64(n // 64) + alphabet[n % 64]

    lines = [f"{w}\t{b64(len(body[:o].encode()))}\t{b64(len(body[o:ends[w]].encode()))}" for w, o in entries.items()]
    (tmp_path / "d.index").write_text("\n".join(lines) + "\n")
    with gzip.open(tmp_path / "d.dict.dz", "wb") as f:
        f.write(enc)
    assert freedict.read_dictd(tmp_path / "d.index", tmp_path / "d.dict.dz") == {
        "house": ["casa", "hogar", "domicilio"], "dog": ["perro"]}
    (tmp_path / "bad.index").write_text("dog\tzzzz\tB\n")
    with pytest.raises(DataError, match="past the end"):
        freedict.read_dictd(tmp_path / "bad.index", tmp_path / "d.dict.dz")


@pytest.mark.skipif(not Path("/usr/share/dictd/freedict-eng-spa.index").is_file(),
                    reason="needs dict-freedict-eng-spa and dict-freedict-spa-eng (Debian)")
def test_freedict_gives_the_9059_single_word_pairs():
    pairs = freedict.load_en_es_pairs("/usr/share/dictd")
    assert len(pairs) == 9059 and pairs == sorted(set(pairs))
    assert ("dog", "perro") in pairs and ("house", "casa") in pairs and ("abandon", "abandonar") in pairs


def test_text_extraction():
    assert corpora.tokenize("L'homme   y el NIÑO, 1999!") == ["l'homme", "y", "el", "niño"]
    page = "<html><head><title>T</title><style>p{}</style></head><body><p>Hola <b>mundo</b></p><p>dos</p></body>"
    assert corpora.html_text(page).split() == ["Hola", "mundo", "dos"]
    troff = '.\\" comment\n.TH LS 1\n.SH NAME\nls \\- list \\fBdirectory\\fR contents\n.B \\-a\n'
    assert corpora.tokenize(corpora.troff_text(troff)) == ["name", "ls", "list", "directory", "contents", "a"]


@pytest.mark.skipif(not Path("/usr/share/debian-reference/debian-reference.en.txt.gz").is_file(),
                    reason="needs debian-reference-en (Debian)")
def test_corpus_cache_is_verified_and_rebuilt_when_corrupt(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTLAB_CACHE", str(tmp_path))
    first = corpora.load_corpus("en", ["debian-reference"])
    cached = tmp_path / "bli" / "corpus-en-debian-reference.txt"
    assert cached.is_file() and corpora.load_corpus("en", ["debian-reference"]) == first
    cached.write_text("tampered line\n")  # the manifest's SHA-256 no longer matches: rebuilt, not trusted
    assert corpora.load_corpus("en", ["debian-reference"]) == first
    assert sum(map(len, first)) > 50_000


@pytest.mark.skipif(importlib.util.find_spec("gensim") is None, reason="needs gensim (adaptlab[bli])")
def test_skipgram_vectors_are_reproducible_and_cached(tmp_path):
    from adaptlab.data.wordvec import skipgram_vectors

    sents = [["the", "cat", "sat", "on", "the", "mat"], ["a", "dog", "sat", "on", "a", "log"]] * 40
    v1, e1 = skipgram_vectors(sents, dim=8, epochs=2, min_count=1, seed=3, cache=True, cache_dir=tmp_path, key="t")
    v2, e2 = skipgram_vectors(sents, dim=8, epochs=2, min_count=1, seed=3, cache=False)
    assert v1 == v2 and (e1 == e2).all() and len(list(tmp_path.glob("*.npy"))) == 1
    v3, e3 = skipgram_vectors(sents, dim=8, epochs=2, min_count=1, seed=3, cache=True, cache_dir=tmp_path, key="t")
    assert v3 == v1 and (e3 == e1).all()


def test_a_missing_debian_package_stops_the_run_before_its_folder_with_one_line(monkeypatch, tmp_path):
    monkeypatch.setitem(corpora.PACKAGES, ("manpages", "es"), "manpages-xx-missing")
    code, _, err = cli("run", "bli-en-es", "--quick", "--set", "sources=manpages", "--out", str(tmp_path / "x"))
    assert code == 2 and "apt-get install manpages-xx-missing" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x").exists()


def test_one_dictd_folder_with_the_old_freedict_folder_still_read(monkeypatch, tmp_path):
    """Both readers look in $ADAPTLAB_DATA/dictd; the BLI reader's old $ADAPTLAB_DATA/freedict still works, with a
    warning that says where to move the files."""
    from adaptlab.data import wordtasks

    monkeypatch.setattr(freedict, "SYSTEM_DIR", tmp_path / "none")
    monkeypatch.setenv("ADAPTLAB_DATA", str(tmp_path))
    names = [f"freedict-{d}" for d in freedict.DICTS]
    for folder in ("dictd", "freedict"):
        (tmp_path / folder).mkdir()
    for n in names:
        for ext in (".index", ".dict.dz"):
            (tmp_path / "freedict" / (n + ext)).write_bytes(b"")
    with pytest.warns(DeprecationWarning, match=r"move them to .*dictd"):
        assert freedict.freedict_dir() == tmp_path / "freedict"
    with pytest.warns(DeprecationWarning):
        assert wordtasks.dict_dir(names[0]) == tmp_path / "freedict"
    for n in names:                                           # the new folder wins, silently
        for ext in (".index", ".dict.dz"):
            (tmp_path / "dictd" / (n + ext)).write_bytes(b"")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert freedict.freedict_dir() == wordtasks.dict_dir(names[1]) == tmp_path / "dictd"
