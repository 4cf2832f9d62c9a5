"""Zero-shot supersense classification of WordNet glosses (``zsl-wordnet``): cosine vs learned bilinear M.

Inputs x are WordNet 3.0 glosses (all four parts of speech, Debian ``wordnet-base``), at most ``per_class`` per
lexicographer file (a fixed draw, ``sample_seed``), labelled with their file: 45 supersenses, chance 1/15 among 15
unseen. Label embeddings y are either the description of the file from the ``lexnames(5WN)`` man page ("nouns
denoting animals") or its bare name ("noun animal"). Both sides come from the same sentence encoder (MiniLM), so
they share one embedding space and M = I (cosine) is already a classifier.

For each of ``n_splits`` random 30 seen / 15 unseen class splits, the seen classes' glosses are split into a
training part and a held-out seen test part (``seen_test``, for generalised ZSL). Methods:

- ``cosine``: M = I. ``eszsl``: the closed form (γ, λ from ``eszsl_grid`` by class-level validation).
- ``full``: M learned from I with the chosen loss, regulariser ``reg · ||M − I||²`` with ``reg`` chosen from
  ``reg_grid`` by validation on held-out seen *classes* (``val_classes`` of the 30, ``val_folds`` folds).
- ``lowrank``: M = I + U Vᵀ of rank ``rank`` (``reg`` chosen the same way).

ZSL top-1 (unseen among unseen), GZSL seen / unseen accuracy and their harmonic mean, each as mean ± 95% CI over
the splits; plus a rank sweep of the low-rank M (descriptions and names) on the first ``sweep_splits`` splits.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from adaptlab.config import BaseConfig, check
from adaptlab.io import save_figure
from adaptlab.runner import Experiment

METHODS = ("cosine", "eszsl", "full", "lowrank")
LABEL_TEXTS = ("description", "name")
ENCODERS = ("minilm", "hash")
LOSS_NAMES = ("hinge", "structured", "softmax")


@dataclass
class ZSLTrainConfig:
    steps: int = 200  # Adam steps of each learned M
    lr: float = 1e-3  # Adam
    batch: int = 256  # inputs per step (0: full batch)

    def __post_init__(self) -> None:
        check(1 <= self.steps <= 100_000, "train.steps", self.steps, "an integer in 1..100000")
        check(0 < self.lr <= 1, "train.lr", self.lr, "a number in (0, 1]")
        check(0 <= self.batch <= 100_000, "train.batch", self.batch, "an integer in 0..100000 (0: full batch)")


@dataclass
class ZSLWordNetConfig(BaseConfig):
    encoder: str = "minilm"  # 'minilm' (all-MiniLM-L6-v2) or 'hash' (word hashing, no model: the quick form)
    per_class: int = 150  # glosses drawn per supersense (fewer where a file has fewer synsets: 42 is the least)
    sample_seed: int = 0  # the gloss draw (kept apart from seed so the embedding cache serves every seed)
    n_unseen: int = 15  # unseen classes per split (of 45)
    n_splits: int = 10  # random seen/unseen class splits
    seen_test: float = 0.2  # share of each seen class's glosses held out for GZSL
    label_texts: list[str] = field(default_factory=lambda: list(LABEL_TEXTS))  # description and/or name
    methods: list[str] = field(default_factory=lambda: list(METHODS))  # of cosine, eszsl, full, lowrank
    loss: str = "hinge"  # hinge (pairwise, the lecture's), structured (ALE) or softmax
    margin: float = 0.1  # of the hinge losses (cosine scores lie in -1..1)
    scale: float = 10.0  # softmax temperature 1/scale
    rank: int = 16  # of the low-rank M = I + U V^T
    train: ZSLTrainConfig = field(default_factory=ZSLTrainConfig)  # training of M (Adam)
    reg_grid: list[float] = field(default_factory=lambda: [0.0, 0.01, 0.1, 1.0])  # reg * ||M - I||^2 candidates
    eszsl_grid: list[float] = field(default_factory=lambda: [0.001, 0.01, 0.1, 1.0])  # gamma = lambda candidates
    val_classes: int = 8  # held-out seen classes per validation fold
    val_folds: int = 2  # validation folds (class partitions of the seen set)
    sweep_ranks: list[int] = field(default_factory=lambda: [1, 4, 16, 64])  # ranks of the low-rank sweep
    sweep_splits: int = 5  # splits the rank sweep runs on (0: no sweep)
    calibrate: bool = True  # calibrated stacking: GZSL seen scores minus a gamma chosen on held-out seen classes

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.encoder in ENCODERS, "encoder", self.encoder, f"one of {list(ENCODERS)}")
        check(2 <= self.per_class <= 5000, "per_class", self.per_class, "an integer in 2..5000")
        check(0 <= self.sample_seed <= 2**31 - 1, "sample_seed", self.sample_seed, "an integer in 0..2147483647")
        check(2 <= self.n_unseen <= 35, "n_unseen", self.n_unseen, "an integer in 2..35 (of 45 classes)")
        check(1 <= self.n_splits <= 1000, "n_splits", self.n_splits, "an integer in 1..1000")
        check(0 < self.seen_test < 1, "seen_test", self.seen_test, "a share in (0, 1)")
        check(len(self.label_texts) > 0 and set(self.label_texts) <= set(LABEL_TEXTS), "label_texts",
              self.label_texts, f"a non-empty subset of {list(LABEL_TEXTS)}")
        check(len(self.methods) > 0 and set(self.methods) <= set(METHODS), "methods", self.methods,
              f"a non-empty subset of {list(METHODS)}")
        check(self.loss in LOSS_NAMES, "loss", self.loss, f"one of {list(LOSS_NAMES)}")
        check(0 < self.margin <= 10, "margin", self.margin, "a number in (0, 10]")
        check(0 < self.scale <= 1000, "scale", self.scale, "a number in (0, 1000]")
        check(1 <= self.rank <= 384, "rank", self.rank, "an integer in 1..384")
        check(len(self.reg_grid) > 0 and all(0 <= r <= 1e4 for r in self.reg_grid), "reg_grid", self.reg_grid,
              "a non-empty list of numbers in 0..1e4")
        check(len(self.eszsl_grid) > 0 and all(0 < r <= 1e6 for r in self.eszsl_grid), "eszsl_grid",
              self.eszsl_grid, "a non-empty list of positive numbers <= 1e6")
        check(2 <= self.val_classes <= 45 - self.n_unseen - 2, "val_classes", self.val_classes,
              f"an integer in 2..{45 - self.n_unseen - 2} (seen classes minus 2 left to fit on)")
        check(1 <= self.val_folds <= 20, "val_folds", self.val_folds, "an integer in 1..20")
        check(all(1 <= r <= 384 for r in self.sweep_ranks), "sweep_ranks", self.sweep_ranks,
              "a list of integers in 1..384")
        check(0 <= self.sweep_splits <= self.n_splits, "sweep_splits", self.sweep_splits,
              "an integer in 0..n_splits")


#: per-split numbers averaged into the summary (the calibrated ones when ``calibrate``)
SUMMARY_KEYS = ("zsl", "gzsl_seen", "gzsl_unseen", "gzsl_h", "gzsl_seen_cal", "gzsl_unseen_cal", "gzsl_h_cal", "gamma")


def encoder_for(name: str):
    """The (lazily loaded) encoder of ``encoder=``: MiniLM, or word hashing into 384 dims."""
    from adaptlab.zeroshot.embed import hash_encoder, lazy, minilm_encoder

    return lazy(minilm_encoder, id="minilm-l6-v2/len128") if name == "minilm" else hash_encoder(384)


def check_inputs(cfg: ZSLWordNetConfig) -> None:
    """WordNet, its lexnames man page and (for MiniLM) the encoder wheel are there: one line before any folder."""
    from adaptlab.data.text import load_lexnames, wordnet_dir

    wordnet_dir()
    load_lexnames()
    if cfg.encoder == "minilm":
        from adaptlab.zeroshot.embed import minilm_dir

        minilm_dir()


def load_data(cfg: ZSLWordNetConfig) -> dict:
    """Glosses (texts, labels 0..44) drawn per class, and the 45 descriptions and names."""
    from adaptlab.data.text import load_lexnames, load_wordnet_glosses

    names = load_lexnames()
    by_class: dict[int, list[str]] = {n.number: [] for n in names}
    for s in load_wordnet_glosses():
        by_class[s.lexfile].append(s.gloss)
    g = torch.Generator().manual_seed(cfg.sample_seed)
    texts, labels = [], []
    for c, gl in by_class.items():
        pick = sorted(torch.randperm(len(gl), generator=g)[:cfg.per_class].tolist())
        texts += [gl[i] for i in pick]
        labels += [c] * len(pick)
    return {"texts": texts, "labels": torch.tensor(labels), "class_names": [n.name for n in names],
            "description": [n.description for n in names], "name": [n.name.replace(".", " ") for n in names]}


def _scorers(cfg, x, y, t, seen, seed):
    """{method: scorer} trained on the seen classes' (x, y) (global labels), plus the chosen hyper-parameters."""
    from adaptlab.zeroshot.bilinear import eszsl, fit_bilinear, scores
    from adaptlab.zeroshot.eval import calibration_validation, class_validation

    local = torch.full((t.shape[0],), -1, dtype=torch.long)
    local[torch.tensor(seen)] = torch.arange(len(seen))
    y_loc, t_seen = local[y], t[seen]
    out, chosen = {}, {}

    def learned(kind, rank):
        def train(xf, yf, tf, reg):
            p = fit_bilinear(xf, yf, tf, kind=kind, rank=rank, loss=cfg.loss, margin=cfg.margin, scale=cfg.scale,
                             reg=reg, steps=cfg.train.steps, lr=cfg.train.lr, batch=cfg.train.batch,
                             seed=seed)
            return lambda xx, tt: scores(p, xx, tt)
        return train

    for m in cfg.methods:
        if m == "cosine":
            out[m] = lambda xx, tt: scores({}, xx, tt)
            continue
        if m == "eszsl":
            def train(xf, yf, tf, h):
                p = eszsl(xf, yf, tf, gamma=h, lam=h)
                return lambda xx, tt: scores(p, xx, tt)
            grid = cfg.eszsl_grid
        else:
            train, grid = learned(m, cfg.rank), cfg.reg_grid
        best, table = class_validation(train, x, y, t, seen, grid, cfg.val_classes, cfg.val_folds, seed)
        chosen[m] = {"value": best, "validation": table}
        out[m] = train(x, y_loc, t_seen, best)
        if cfg.calibrate:
            chosen[m]["gamma"] = calibration_validation(lambda xf, yf, tf, h=best, tr=train: tr(xf, yf, tf, h), x, y,
                                                        t, seen, cfg.val_classes, cfg.seen_test, seed)
    if cfg.calibrate and "cosine" in out:
        chosen["cosine"] = {"gamma": calibration_validation(lambda *_: out["cosine"], x, y, t, seen,
                                                            cfg.val_classes, cfg.seen_test, seed)}
    return out, chosen


def _seen_test_split(y, seen, share, g):
    """Boolean masks (train, test) over the inputs of seen classes: ``share`` of each class held out."""
    train, test = torch.zeros(len(y), dtype=torch.bool), torch.zeros(len(y), dtype=torch.bool)
    for c in seen:
        idx = (y == c).nonzero()[:, 0]
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = max(1, round(share * len(idx)))
        test[idx[:k]], train[idx[k:]] = True, True
    return train, test


def run(cfg: ZSLWordNetConfig, out_dir: Path, resume: bool = False) -> dict:
    from adaptlab.engine import derive_seed
    from adaptlab.eval.stats import mean_ci95
    from adaptlab.zeroshot.bilinear import fit_bilinear, scores
    from adaptlab.zeroshot.embed import embed_texts
    from adaptlab.zeroshot.eval import class_splits, evaluate_split

    t0 = time.perf_counter()
    data = load_data(cfg)
    enc = encoder_for(cfg.encoder)
    x = embed_texts(data["texts"], enc)  # (n, 384)
    lab = {k: embed_texts(data[k], enc) for k in cfg.label_texts}  # (45, 384) each
    embed_s = time.perf_counter() - t0
    y = data["labels"]
    splits = class_splits(45, cfg.n_unseen, cfg.n_splits, seed=cfg.seed)
    per_split = {k: {m: [] for m in cfg.methods} for k in cfg.label_texts}
    chosen_all = {k: [] for k in cfg.label_texts}
    sweep = {k: {str(r): [] for r in cfg.sweep_ranks} for k in cfg.label_texts}
    for i, (seen, unseen) in enumerate(splits):
        g = torch.Generator().manual_seed(derive_seed(cfg.seed, i))
        tr, te = _seen_test_split(y, seen, cfg.seen_test, g)
        u = torch.isin(y, torch.tensor(unseen))
        for k, t in lab.items():
            scorers, chosen = _scorers(cfg, x[tr], y[tr], t, seen, derive_seed(cfg.seed, i))
            chosen_all[k].append(chosen)
            for m, sc in scorers.items():
                per_split[k][m].append(evaluate_split(sc, t, seen, unseen, x[u], y[u], x[te], y[te],
                                                      gamma=chosen.get(m, {}).get("gamma")))
            if i < cfg.sweep_splits:
                local = torch.full((45,), -1, dtype=torch.long)
                local[torch.tensor(seen)] = torch.arange(len(seen))
                reg = chosen.get("lowrank", {}).get("value", 0.0)
                for r in cfg.sweep_ranks:
                    p = fit_bilinear(x[tr], local[y[tr]], t[seen], kind="lowrank", rank=r, loss=cfg.loss,
                                     margin=cfg.margin, scale=cfg.scale, reg=reg, steps=cfg.train.steps,
                                     lr=cfg.train.lr, batch=cfg.train.batch, seed=derive_seed(cfg.seed, i))
                    sc = lambda xx, tt, p=p: scores(p, xx, tt)  # noqa: E731
                    sweep[k][str(r)].append(evaluate_split(sc, t, seen, unseen, x[u], y[u], x[te], y[te])["zsl"])
    summary = {}
    for k in cfg.label_texts:
        summary[k] = {}
        for m in cfg.methods:
            rows = per_split[k][m]
            summary[k][m] = {}
            for key in [k2 for k2 in SUMMARY_KEYS if k2 in rows[0]]:
                mean, half = mean_ci95(torch.tensor([r[key] for r in rows]))
                summary[k][m][key] = {"mean": mean, "ci95": half if len(rows) > 1 else 0.0}
    sweep_summary = {k: {r: sum(v) / len(v) for r, v in d.items() if v} for k, d in sweep.items()}
    return {"n_inputs": len(y), "n_classes": 45, "chance_zsl": 1 / cfg.n_unseen, "splits": splits,
            "summary": summary, "per_split": per_split, "chosen": chosen_all, "rank_sweep": sweep_summary,
            "rank_sweep_per_split": sweep, "examples": {"description": data["description"][:5],
                                                        "name": data["name"][:5], "gloss": data["texts"][:3]},
            "timings": {"embed_seconds": embed_s, "seconds": time.perf_counter() - t0}}


def figures(results: dict, cfg: ZSLWordNetConfig, out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from adaptlab.viz.zeroshot import zsl_methods_figure

    fig = zsl_methods_figure(results, cfg.methods, "ZSL top-1 (unseen among unseen)")
    save_figure(fig, out_dir / "zsl_methods.png")
    names = ["zsl_methods.png"]
    if any(results["rank_sweep"].values()):
        fig, ax = plt.subplots(figsize=(5, 4))
        for k, d in results["rank_sweep"].items():
            if d:
                rs = sorted(d, key=int)
                ax.plot([int(r) for r in rs], [d[r] for r in rs], "-o", label=f"I + UV^T, labels: {k}")
                if "cosine" in results["summary"][k]:
                    ax.axhline(results["summary"][k]["cosine"]["zsl"]["mean"], ls=":", lw=1,
                               color=ax.lines[-1].get_color(), label=f"cosine, {k} (all splits)")
        ax.set(xscale="log", xlabel="rank r", ylabel="ZSL top-1", title="low-rank M")
        ax.legend(fontsize=7)
        save_figure(fig, out_dir / "rank_sweep.png")
        names.append("rank_sweep.png")
    return names


def summary(results: dict, cfg: ZSLWordNetConfig) -> str:
    from adaptlab.viz.zeroshot import zsl_table

    lines = [f"{results['n_inputs']} WordNet glosses, 45 supersenses; {cfg.n_splits} splits of "
             f"{45 - cfg.n_unseen} seen / {cfg.n_unseen} unseen (chance {results['chance_zsl']:.3f}); encoder "
             f"`{cfg.encoder}`, loss `{cfg.loss}`. Mean ± 95% CI over splits.", "",
             *zsl_table(results["summary"], cfg.methods)]
    for k, d in results["rank_sweep"].items():
        if d:
            lines.append(f"\nLow-rank M = I + UVᵀ, labels `{k}` (ZSL top-1, first {cfg.sweep_splits} splits): "
                         + ", ".join(f"r = {r}: {d[r]:.3f}" for r in sorted(d, key=int)))
    return "\n".join(lines)


EXPERIMENTS = [
    Experiment("zsl-wordnet", "Zero-shot WordNet supersenses from glosses: cosine vs learned bilinear M (full, "
               "low rank), ESZSL; ZSL and GZSL over class splits", ZSLWordNetConfig, run, figures, summary,
               quick={"encoder": "hash", "per_class": 6, "n_splits": 2, "train.steps": 5, "reg_grid": [0.0, 0.1],
                      "eszsl_grid": [1.0], "val_folds": 1, "sweep_ranks": [2], "sweep_splits": 1},
               check=check_inputs),
]
