"""Zero-shot evaluation and the embedding cache: hand-computed accuracies, splits, class-level validation that picks
a planted best value, and a cache that serves, verifies and replaces its files."""

from __future__ import annotations

import pytest
import torch

from adaptlab.zeroshot import embed as E
from adaptlab.zeroshot import eval as V


def test_per_class_accuracy_weights_classes_equally():
    y = torch.tensor([0, 0, 0, 0, 1])
    pred = torch.tensor([0, 0, 0, 0, 0])
    assert V.per_class_accuracy(pred, y) == 0.5  # plain top-1 would be 0.8


def test_harmonic_mean():
    assert V.harmonic_mean(0.5, 0.5) == 0.5
    assert V.harmonic_mean(1.0, 0.0) == 0.0 and V.harmonic_mean(0.0, 0.0) == 0.0


def test_class_splits_are_distinct_partitions_and_reproducible():
    a = V.class_splits(45, 15, 10, seed=3)
    assert a == V.class_splits(45, 15, 10, seed=3) and a != V.class_splits(45, 15, 10, seed=4)
    assert len({tuple(u) for _, u in a}) == 10
    assert all(sorted(s + u) == list(range(45)) and len(u) == 15 for s, u in a)
    assert len(V.class_splits(5, 2, 10)) == 10  # all C(5, 2) sets
    with pytest.raises(ValueError, match="1..10"):
        V.class_splits(5, 2, 11)
    with pytest.raises(ValueError, match="n_unseen=5"):
        V.class_splits(5, 5, 1)


def _oracle_data():
    t = torch.eye(6)  # labels are one-hot: a perfect scorer is the dot product
    y = torch.arange(6).repeat(5)
    return t[y], y, t


def test_evaluate_split_with_a_perfect_and_a_seen_biased_scorer():
    x, y, t = _oracle_data()
    seen, unseen = [0, 1, 2, 3], [4, 5]
    s, u = torch.isin(y, torch.tensor(seen)), torch.isin(y, torch.tensor(unseen))
    r = V.evaluate_split(lambda a, b: a @ b.T, t, seen, unseen, x[u], y[u], x[s], y[s])
    assert r == {"zsl": 1.0, "gzsl_seen": 1.0, "gzsl_unseen": 1.0, "gzsl_h": 1.0}
    bias = torch.tensor([2.0, 2, 2, 2, 0, 0])  # seen labels always win in GZSL, never in ZSL

    def biased(a, b):
        return a @ b.T + (b @ bias)[None, :]
    r = V.evaluate_split(biased, t, seen, unseen, x[u], y[u], x[s], y[s])
    assert r["zsl"] == 1.0 and r["gzsl_unseen"] == 0.0 and r["gzsl_seen"] == 1.0 and r["gzsl_h"] == 0.0


def test_class_validation_picks_the_value_that_transfers_to_held_out_classes():
    x, y, t = _oracle_data()
    calls = []

    def train(xf, yf, tf, h):
        calls.append((len(tf), set(yf.tolist())))  # trained only on the fitting classes, relabelled 0..k-1
        return (lambda a, b: a @ b.T) if h == "good" else (lambda a, b: -(a @ b.T))
    best, table = V.class_validation(train, x, y, t, [0, 1, 2, 3, 4], ["bad", "good", "bad2"], n_val=2, folds=3)
    assert best == "good" and table["good"] == 1.0 and table["bad"] < 1.0
    assert all(n == 3 and labels == {0, 1, 2} for n, labels in calls)


class _Counting:
    def __init__(self, dim=8):
        self.inner, self.calls, self.id = E.hash_encoder(dim), 0, f"hash/{dim}"

    def __call__(self, texts):
        self.calls += 1
        return self.inner(texts)


def test_embedding_cache_serves_verifies_and_replaces(tmp_path):
    enc = _Counting()
    texts = ["a red fox", "the whale", "nouns denoting animals"]
    first = E.embed_texts(texts, enc, cache=tmp_path)
    assert torch.equal(E.embed_texts(texts, enc, cache=tmp_path), first) and enc.calls == 1
    (path,) = list(tmp_path.glob("*.pt"))
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left behind
    blob = torch.load(path, weights_only=True)
    blob["values"] = blob["values"] + 1.0  # tampered: the checksum no longer matches
    torch.save(blob, path)
    assert torch.equal(E.embed_texts(texts, enc, cache=tmp_path), first) and enc.calls == 2
    path.write_bytes(b"torn")  # a cut-off file
    assert torch.equal(E.embed_texts(texts, enc, cache=tmp_path), first) and enc.calls == 3
    E.embed_texts(texts[::-1], enc, cache=tmp_path)  # another order is another entry
    assert enc.calls == 4 and len(list(tmp_path.glob("*.pt"))) == 2


def test_embed_texts_refuses_bad_input():
    with pytest.raises(ValueError, match="empty"):
        E.embed_texts([], E.hash_encoder(4), cache=False)
    with pytest.raises(ValueError, match="'id'"):
        E.embed_texts(["x"], lambda texts: torch.zeros(1, 4), cache=False)


def test_lazy_encoder_is_not_built_when_everything_is_cached(tmp_path):
    built = []

    def factory():
        built.append(1)
        return E.hash_encoder(4)
    E.embed_texts(["x"], E.lazy(factory, id="f"), cache=tmp_path)
    E.embed_texts(["x"], E.lazy(factory, id="f"), cache=tmp_path)
    assert built == [1]


def test_minilm_embeds_related_sentences_closer():
    try:
        enc = E.minilm_encoder()
    except Exception as e:  # noqa: BLE001
        if "not installed" in str(e):
            pytest.skip(str(e))
        raise
    texts = ["a small dog", "a young puppy", "the law of income tax in a small country", "a small dog"]
    e = enc(texts)
    assert torch.allclose(e.norm(dim=1), torch.ones(4), atol=1e-5)
    assert float(e[0] @ e[1]) > float(e[0] @ e[2]) + 0.2
    one_by_one = torch.cat([enc([t]) for t in texts])  # no padding at all
    assert torch.allclose(e, one_by_one, atol=1e-5)  # length-sorted padded batches: same rows, input order


def test_glove_encoder_reads_the_word_rows():
    try:
        enc = E.glove_encoder()
    except Exception as e:  # noqa: BLE001
        if "not installed" in str(e) or "pyarrow" in str(e):
            pytest.skip(str(e))
        raise
    import numpy as np

    vec = np.load(E.glove_files()[0], mmap_mode="r")
    got = enc(["the", "The the", "zzqxv"])
    assert torch.equal(got[0], torch.from_numpy(np.array(vec[0])))  # "the" is row 0 of GloVe 6B
    assert torch.equal(got[1], got[0]) and torch.equal(got[2], torch.zeros(50))


def _noisy_biased(seed=0, n=40, bias=0.6):
    """Random inputs near one-hot labels, scored with a bias toward the seen labels 0..3 (of 6)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.eye(6)
    y = torch.arange(6).repeat(n // 6 + 1)[:n]
    x = t[y] + 0.5 * torch.randn(n, 6, generator=g)
    bias = torch.tensor([bias] * 4 + [0.0, 0.0])

    def scorer(a, b):
        return a @ b.T + (b @ bias)[None, :]
    return x, y, t, scorer


def test_choose_gamma_equals_a_brute_force_search_and_calibration_helps():
    x, y, t, scorer = _noisy_biased()
    seen, unseen = [0, 1, 2, 3], [4, 5]
    s, u = torch.isin(y, torch.tensor(seen)), torch.isin(y, torch.tensor(unseen))
    gamma, h = V.choose_gamma(scorer, t, seen, unseen, x[u], y[u], x[s], y[s], n_grid=2001)
    brute = max(V.evaluate_split(scorer, t, seen, unseen, x[u], y[u], x[s], y[s], gamma=float(g))["gzsl_h_cal"]
                for g in torch.linspace(-1, 3, 801))
    assert brute - 1e-12 <= h < brute + 0.05             # at least the best of a dense grid, found at a breakpoint
    plain = V.evaluate_split(scorer, t, seen, unseen, x[u], y[u], x[s], y[s], gamma=gamma)
    assert plain["gzsl_h_cal"] == pytest.approx(h) and h > plain["gzsl_h"] + 0.1   # the planted bias is removed
    assert plain["gzsl_unseen_cal"] > plain["gzsl_unseen"] and plain["zsl"] == V.evaluate_split(
        scorer, t, seen, unseen, x[u], y[u], x[s], y[s])["zsl"]                   # ZSL is not calibrated


def test_calibration_validation_never_looks_at_the_unseen_classes():
    x, y, t, scorer = _noisy_biased(n=120)
    seen = [0, 1, 2, 3, 4]
    keep = torch.isin(y, torch.tensor(seen))

    def train(xf, yf, tf):
        assert tf.shape[0] == 3                         # 5 seen classes, 2 of them held out as pseudo-unseen
        return scorer
    gamma = V.calibration_validation(train, x[keep], y[keep], t, seen, n_val=2, seed=1)
    t2 = t.clone()
    t2[5] = 100.0                                        # the unseen class's label: changing it changes nothing
    assert V.calibration_validation(train, x[keep], y[keep], t2, seen, n_val=2, seed=1) == gamma
