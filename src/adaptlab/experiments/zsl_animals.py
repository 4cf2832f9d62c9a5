"""Zero-shot animal silhouettes (``zsl-animals``): image features and word embeddings in different spaces.

Animal-MNIST (10 classes of real animal silhouettes, 28x28) with ``n_unseen`` of the 10 classes held out per
split (chance 1/n_unseen). Per split, a LeNet-5 is trained on the seen classes only (``cnn_steps`` Adam steps);
its 84-d penultimate activations are the image features. The label embeddings are the class names through GloVe
6B 50d (``labels=glove``) or MiniLM (``minilm``); x and y live in different spaces, so no identity exists to
start from and M (84 x 50, or 784 x 50 on pixels) must be learned: the DeViSE setting.

Methods (every input and label vector L2-normalised): ``pixels`` (full M on the 784 raw pixels), ``cnn`` (full M on
the CNN features), ``cnn_lowrank`` (M = U Vᵀ of rank ``rank``), ``eszsl`` (closed form on the CNN features). The
regulariser of the learned M (``reg · ||M||²``) and ESZSL's ridge are chosen on held-out seen *classes*
(``val_classes`` of the seen ones, ``val_folds`` folds); ``seen_test`` of each seen class's images is held out
for generalised ZSL. Results are mean ± 95% CI over ``n_splits`` random class splits.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from adaptlab.config import BaseConfig, check
from adaptlab.io import save_figure
from adaptlab.runner import Experiment

METHODS = ("pixels", "cnn", "cnn_lowrank", "eszsl")
LABELS = ("glove", "minilm", "hash")


@dataclass
class AnimalsTrainConfig:
    steps: int = 150  # Adam steps of each learned M (full batch)
    lr: float = 1e-2  # Adam, for M

    def __post_init__(self) -> None:
        check(1 <= self.steps <= 100_000, "train.steps", self.steps, "an integer in 1..100000")
        check(0 < self.lr <= 1, "train.lr", self.lr, "a number in (0, 1]")


@dataclass
class ZSLAnimalsConfig(BaseConfig):
    labels: list[str] = field(default_factory=lambda: ["glove", "minilm"])  # label embeddings of the class names
    n_unseen: int = 3  # unseen classes per split (of 10)
    n_splits: int = 12  # random class splits (of the 120 distinct 3-class unseen sets)
    per_class: int = 300  # images used per class (of 1000)
    seen_test: float = 0.2  # share of each seen class's images held out for GZSL
    methods: list[str] = field(default_factory=lambda: list(METHODS))  # of pixels, cnn, cnn_lowrank, eszsl
    cnn_steps: int = 200  # Adam steps of the seen-class LeNet-5 per split
    cnn_batch: int = 64  # images per CNN step
    cnn_lr: float = 2e-3  # Adam
    margin: float = 0.1  # pairwise hinge margin (unit vectors: scores in -1..1 at init)
    rank: int = 8  # of the low-rank M = U V^T
    train: AnimalsTrainConfig = field(default_factory=AnimalsTrainConfig)  # training of M
    reg_grid: list[float] = field(default_factory=lambda: [1e-3, 1e-2, 1e-1])  # reg * ||M||^2 candidates
    eszsl_grid: list[float] = field(default_factory=lambda: [0.1, 1.0, 10.0])  # gamma = lambda candidates
    val_classes: int = 2  # held-out seen classes per validation fold
    val_folds: int = 2  # validation folds
    calibrate: bool = True  # calibrated stacking: GZSL seen scores minus a gamma chosen on held-out seen classes

    def __post_init__(self) -> None:
        super().__post_init__()
        check(len(self.labels) > 0 and set(self.labels) <= set(LABELS), "labels", self.labels,
              f"a non-empty subset of {list(LABELS)} (hash: word hashing, no model)")
        check(2 <= self.n_unseen <= 6, "n_unseen", self.n_unseen, "an integer in 2..6 (of 10 classes)")
        check(1 <= self.n_splits <= 120, "n_splits", self.n_splits, "an integer in 1..120")
        check(10 <= self.per_class <= 1000, "per_class", self.per_class, "an integer in 10..1000")
        check(0 < self.seen_test < 1, "seen_test", self.seen_test, "a share in (0, 1)")
        check(len(self.methods) > 0 and set(self.methods) <= set(METHODS), "methods", self.methods,
              f"a non-empty subset of {list(METHODS)}")
        check(0 <= self.cnn_steps <= 100_000, "cnn_steps", self.cnn_steps, "an integer in 0..100000")
        check(1 <= self.cnn_batch <= 4096, "cnn_batch", self.cnn_batch, "an integer in 1..4096")
        check(0 < self.cnn_lr <= 1, "cnn_lr", self.cnn_lr, "a number in (0, 1]")
        check(0 < self.margin <= 10, "margin", self.margin, "a number in (0, 10]")
        check(1 <= self.rank <= 50, "rank", self.rank, "an integer in 1..50")
        check(len(self.reg_grid) > 0 and all(0 <= r <= 1e4 for r in self.reg_grid), "reg_grid", self.reg_grid,
              "a non-empty list of numbers in 0..1e4")
        check(len(self.eszsl_grid) > 0 and all(0 < r <= 1e6 for r in self.eszsl_grid), "eszsl_grid",
              self.eszsl_grid, "a non-empty list of positive numbers <= 1e6")
        check(1 <= self.val_classes <= 10 - self.n_unseen - 2, "val_classes", self.val_classes,
              f"an integer in 1..{10 - self.n_unseen - 2} (seen classes minus 2 left to fit on)")
        check(1 <= self.val_folds <= 20, "val_folds", self.val_folds, "an integer in 1..20")


def check_inputs(cfg: ZSLAnimalsConfig) -> None:
    """The Animal-MNIST wheel and the label encoders' wheels are installed: one line before any run folder."""
    from adaptlab.data.animals import animal_mnist_dir
    from adaptlab.zeroshot.embed import glove_files, minilm_dir

    animal_mnist_dir()
    if "glove" in cfg.labels:
        glove_files()
    if "minilm" in cfg.labels:
        minilm_dir()


def label_embeddings(kind: str, names: list[str]) -> torch.Tensor:
    """(C, d) unit-norm embeddings of the class names."""
    from adaptlab.zeroshot.embed import embed_texts, glove_encoder, hash_encoder, lazy, minilm_encoder

    enc = {"glove": lambda: lazy(glove_encoder, id="glove-6b-50d/mean"),
           "minilm": lambda: lazy(minilm_encoder, id="minilm-l6-v2/len128"), "hash": lambda: hash_encoder(50)}[kind]()
    return torch.nn.functional.normalize(embed_texts(names, enc), dim=-1)


def _cnn_features(x_tr, y_tr, x_all, n_seen, cfg, seed):
    """Train LeNet-5 on the seen classes; return its 84-d penultimate features of ``x_all`` (unit norm) and the
    net's own predictions of ``x_all`` (indices into the seen classes)."""
    from adaptlab import models
    from adaptlab.engine import fit, make_optimizer

    torch.manual_seed(seed)
    net = models.create("lenet", num_classes=n_seen)
    g = torch.Generator().manual_seed(seed)

    def step(batch):
        xb, yb = batch
        return torch.nn.functional.cross_entropy(net(xb), yb)

    def batches(_):
        idx = torch.randint(len(y_tr), (cfg.cnn_batch,), generator=g)
        return x_tr[idx], y_tr[idx]

    fit(step, batches, steps=cfg.cnn_steps, optimizer=make_optimizer(net.parameters(), "adam", cfg.cnn_lr))
    body = torch.nn.Sequential(net.features, *list(net.classifier)[:-1]).eval()
    with torch.no_grad():
        feats = torch.cat([body(x_all[i:i + 1000].unsqueeze(1)) for i in range(0, len(x_all), 1000)])
        pred = net.classifier[-1](feats).argmax(1)
    return torch.nn.functional.normalize(feats, dim=-1), pred


def run(cfg: ZSLAnimalsConfig, out_dir: Path, resume: bool = False) -> dict:
    from adaptlab.data.animals import load_animal_mnist
    from adaptlab.engine import derive_seed
    from adaptlab.eval.stats import mean_ci95
    from adaptlab.experiments.zsl_wordnet import SUMMARY_KEYS, _seen_test_split
    from adaptlab.zeroshot.bilinear import eszsl, fit_bilinear, scores
    from adaptlab.zeroshot.eval import calibration_validation, class_splits, class_validation, evaluate_split

    t0 = time.perf_counter()
    data = load_animal_mnist()
    keep = torch.cat([(data.labels == c).nonzero()[:cfg.per_class, 0] for c in range(10)])
    images, y = data.images[keep], data.labels[keep]
    pixels = torch.nn.functional.normalize(images.flatten(1), dim=-1)  # (n, 784)
    lab = {k: label_embeddings(k, list(data.classes)) for k in cfg.labels}
    splits = class_splits(10, cfg.n_unseen, cfg.n_splits, seed=cfg.seed)
    per_split = {k: {m: [] for m in cfg.methods} for k in cfg.labels}
    cnn_seen_acc, chosen = [], {k: [] for k in cfg.labels}
    for i, (seen, unseen) in enumerate(splits):
        seed = derive_seed(cfg.seed, i)
        tr, te = _seen_test_split(y, seen, cfg.seen_test, torch.Generator().manual_seed(seed))
        u = torch.isin(y, torch.tensor(unseen))
        local = torch.full((10,), -1, dtype=torch.long)
        local[torch.tensor(seen)] = torch.arange(len(seen))
        feats = {}
        if "pixels" in cfg.methods:
            feats["pixels"] = pixels
        if set(cfg.methods) - {"pixels"}:
            f, pred = _cnn_features(images[tr], local[y[tr]], images, len(seen), cfg, seed)
            feats["cnn"] = f
            cnn_seen_acc.append(float((pred[te] == local[y[te]]).double().mean()))
        split_chosen = {}
        for k, t in lab.items():
            split_chosen[k] = {}
            for m in cfg.methods:
                x = feats["pixels" if m == "pixels" else "cnn"]
                if m == "eszsl":
                    def train(xf, yf, tf, h):
                        p = eszsl(xf, yf, tf, gamma=h, lam=h)
                        return lambda xx, tt: scores(p, xx, tt)
                    grid = cfg.eszsl_grid
                else:
                    kind = "lowrank" if m == "cnn_lowrank" else "full"

                    def train(xf, yf, tf, reg, kind=kind, seed=seed):
                        p = fit_bilinear(xf, yf, tf, kind=kind, rank=cfg.rank, margin=cfg.margin, reg=reg,
                                         toward="zero", steps=cfg.train.steps, lr=cfg.train.lr, seed=seed)
                        return lambda xx, tt: scores(p, xx, tt)
                    grid = cfg.reg_grid
                best, table = class_validation(train, x[tr], y[tr], t, seen, grid, cfg.val_classes, cfg.val_folds,
                                               seed)
                split_chosen[k][m] = {"value": best, "validation": table}
                sc = train(x[tr], local[y[tr]], t[seen], best)
                gamma = None
                if cfg.calibrate:
                    gamma = calibration_validation(lambda xf, yf, tf, h=best, tr=train: tr(xf, yf, tf, h), x[tr],
                                                   y[tr], t, seen, cfg.val_classes, cfg.seen_test, seed)
                    split_chosen[k][m]["gamma"] = gamma
                per_split[k][m].append(evaluate_split(sc, t, seen, unseen, x[u], y[u], x[te], y[te], gamma=gamma))
        for k in cfg.labels:
            chosen[k].append(split_chosen[k])
    summary = {}
    for k in cfg.labels:
        summary[k] = {}
        for m in cfg.methods:
            rows = per_split[k][m]
            summary[k][m] = {}
            for key in [k2 for k2 in SUMMARY_KEYS if k2 in rows[0]]:
                mean, half = mean_ci95(torch.tensor([r[key] for r in rows]))
                summary[k][m][key] = {"mean": mean, "ci95": half if len(rows) > 1 else 0.0}
    return {"n_images": len(y), "classes": list(data.classes), "chance_zsl": 1 / cfg.n_unseen, "splits": splits,
            "summary": summary, "per_split": per_split, "chosen": chosen, "cnn_seen_acc": cnn_seen_acc,
            "timings": {"seconds": time.perf_counter() - t0}}


def figures(results: dict, cfg: ZSLAnimalsConfig, out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from adaptlab.viz.zeroshot import zsl_methods_figure

    fig = zsl_methods_figure(results, cfg.methods, f"ZSL top-1 ({cfg.n_unseen} unseen of 10)")
    save_figure(fig, out_dir / "zsl_animals.png")
    return ["zsl_animals.png"]


def summary(results: dict, cfg: ZSLAnimalsConfig) -> str:
    from adaptlab.viz.zeroshot import zsl_table

    acc = results["cnn_seen_acc"]
    cnn = f" (its own top-1 on held-out seen images: {sum(acc) / len(acc):.3f})" if acc else ""
    lines = [f"Animal-MNIST, {results['n_images']} images; {cfg.n_splits} splits of {10 - cfg.n_unseen} seen / "
             f"{cfg.n_unseen} unseen classes (chance {results['chance_zsl']:.3f}); LeNet-5 features trained on the "
             f"seen classes ({cfg.cnn_steps} steps){cnn}. Mean ± 95% CI over splits.", "",
             *zsl_table(results["summary"], cfg.methods)]
    return "\n".join(lines)


EXPERIMENTS = [
    Experiment("zsl-animals", "Zero-shot Animal-MNIST: seen-class CNN features vs pixels, mapped to GloVe/MiniLM "
               "class names by a learned bilinear M (DeViSE setting), ESZSL; ZSL and GZSL over class splits",
               ZSLAnimalsConfig, run, figures, summary,
               quick={"labels": ["hash"], "n_splits": 2, "per_class": 30, "cnn_steps": 3, "train.steps": 5,
                      "reg_grid": [1e-3], "eszsl_grid": [1.0], "val_folds": 1},
               check=check_inputs),
]
