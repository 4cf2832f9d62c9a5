"""SimCLR on Omniglot: contrastive pretraining without labels, frozen-feature few-shot evaluation, ProtoNet
fine-tuning.

One background set (default minimal set 1, each 90-degree rotation of a character an extra image) is used three
ways, in three stages of the run:

1. ``simclr``: a Conv4 encoder with a projection head trained with NT-Xent on two augmented views of each image
   (random affine, elastic, cutout; :mod:`adaptlab.zeroshot.contrastive`), **no labels**;
2. ``protonet``: the supervised ProtoNet (Conv4) trained from scratch on the same images with their
   (rotation-)class labels;
3. ``simclr+protonet``: the same ProtoNet training started from the SimCLR encoder.

Every row is then scored on the original 20 runs (20-way 1-shot within an evaluation alphabet) and on N-way
K-shot episodes from the alphabets the background set lacks (the same episodes for every row), next to raw
pixels and a random (untrained) encoder. Frozen features (pixels, random, SimCLR) are classified by cosine
similarity to the class means (1-shot: cosine nearest neighbour); ProtoNet rows by squared Euclidean distance to
the prototypes, as they were trained. The 20-run error of each trained row is also recorded during training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from adaptlab.config import BaseConfig, check
from adaptlab.engine import cosine, derive_seed, fit, make_optimizer, step_halving
from adaptlab.experiments.omniglot import PUBLISHED, _evaluate, check_data, oneshot20_cost
from adaptlab.io import progress, save_figure
from adaptlab.runner import Experiment, Stages
from adaptlab.zeroshot.contrastive import Augment

#: evaluated rows, in display order; the frozen ones are scored by cosine similarity to the class means
ROWS = ("pixels", "random", "simclr", "protonet", "simclr+protonet")
FROZEN = ("pixels", "random", "simclr")
#: the ProtoNet 20-run error on minimal set 1 (docs/results/omniglot-protonet-small1) the issue compares with
PROTONET_SMALL1 = 16.75
TARGETS = {"simclr 20-way 1-shot": 0.55, "simclr 5-way 1-shot": 0.80, "simclr+protonet 20-run error": PROTONET_SMALL1}
#: derived seed streams (engine.derive_seed); 100 + j are the evaluation episodes of omniglot._evaluate
STREAMS = {"simclr": 0, "protonet": 1, "simclr+protonet": 2, "random": 3}


@dataclass
class DataConfig:
    background: Literal["small1", "small2", "small"] = "small1"  # minimal set 1 / 2 / their union
    size: Literal[28, 105] = 28    # image side (28: the few-shot literature; 105: native, ~14x slower)
    rotations: bool = True         # each 90-degree rotation is one more image (and class, for ProtoNet): 4x
    root: str = ""                 # folder with the archives; "" means $ADAPTLAB_DATA/omniglot
    download: bool = False         # fetch missing archives from the official repository


@dataclass
class TrainConfig:
    steps: int = 600               # SimCLR steps (the whole run: 7.8 min of one-thread CPU time, docs/simclr.md)
    batch: int = 128               # images per step; two views each, so 2 x batch go through the encoder
    lr: float = 2e-3               # Adam peak rate: linear warm-up, then cosine-decayed to 0 at the last step
    warmup: int = 30               # linear warm-up steps (0: cosine from the first step)
    temperature: float = 0.1       # NT-Xent tau (0.1 beat 0.2 and 0.5 on the frozen features, docs/simclr.md)
    proj_hidden: int = 128         # projection head hidden width
    proj_dim: int = 64             # projection (contrastive space) size
    checkpoint_every: int = 50     # steps between checkpoints, in every stage (--resume continues from the last)

    def __post_init__(self):
        check(1 <= self.steps <= 10_000_000, "train.steps", self.steps, "an integer in 1..10000000")
        check(2 <= self.batch <= 100_000, "train.batch", self.batch, "an integer in 2..100000")
        check(0 < self.lr <= 10, "train.lr", self.lr, "a positive number <= 10")
        check(0 <= self.warmup < self.steps, "train.warmup", self.warmup, "an integer in 0..train.steps-1")
        check(0.01 <= self.temperature <= 100, "train.temperature", self.temperature, "a number in 0.01..100")
        for key in ("proj_hidden", "proj_dim"):
            check(1 <= getattr(self, key) <= 100_000, f"train.{key}", getattr(self, key), "an integer in 1..100000")
        check(1 <= self.checkpoint_every <= 10_000_000, "train.checkpoint_every", self.checkpoint_every,
              "an integer in 1..10000000")


@dataclass
class FinetuneConfig:
    steps: int = 200               # ProtoNet episodes, from scratch and from the SimCLR encoder alike
    n_way: int = 30                # more ways than tested (Snell et al.), as omniglot-protonet
    k_shot: int = 1
    q_query: int = 3
    lr: float = 1e-3               # Adam, for both ProtoNet stages
    lr_halve_every: int = 100      # halve the learning rate every this many steps (0: never)

    def __post_init__(self):
        check(1 <= self.steps <= 10_000_000, "finetune.steps", self.steps, "an integer in 1..10000000")
        check(2 <= self.n_way <= 10_000, "finetune.n_way", self.n_way, "an integer in 2..10000")
        check(self.k_shot >= 1, "finetune.k_shot", self.k_shot, "an integer >= 1")
        check(self.q_query >= 1, "finetune.q_query", self.q_query, "an integer >= 1")
        check(self.k_shot + self.q_query <= 20, "finetune.k_shot", self.k_shot, "k_shot + q_query <= 20 drawers")
        check(0 < self.lr <= 10, "finetune.lr", self.lr, "a positive number <= 10")
        check(self.lr_halve_every >= 0, "finetune.lr_halve_every", self.lr_halve_every, "an integer >= 0 (0: never)")


@dataclass
class EvalConfig:
    episodes: int = 1000           # per (way, shot) setting, the same episodes for every row
    ways: list[int] = field(default_factory=lambda: [5, 20])
    shots: list[int] = field(default_factory=lambda: [1, 5])
    queries: int = 5               # query images per class
    batch: int = 50                # episodes per forward pass
    curve_every: int = 50          # 20-run error of each trained row every this many steps (>= steps: no curve)
    features: Literal["block4", "block4_prepool", "block3", "block3_avg"] = "block4"  # frozen rows' (random,
    # SimCLR) layer: block4 = the encoder output (64 at 28 px), block4_prepool = block 4 before its max-pool,
    # flattened (64x3x3), block3 = block 3's output flattened (64x3x3), block3_avg = block 3 averaged over space (64)

    def __post_init__(self):
        check(1 <= self.episodes <= 1_000_000, "eval.episodes", self.episodes, "an integer in 1..1000000")
        check(len(self.ways) > 0 and all(2 <= w <= 1000 for w in self.ways), "eval.ways", self.ways,
              "a non-empty list of integers in 2..1000")
        check(1 <= self.queries <= 19, "eval.queries", self.queries, "an integer in 1..19")
        check(len(self.shots) > 0 and all(s >= 1 for s in self.shots) and max(self.shots) + self.queries <= 20,
              "eval.shots", self.shots, "a non-empty list of shots >= 1 with max(shots) + queries <= 20")
        check(1 <= self.batch <= 10_000, "eval.batch", self.batch, "an integer in 1..10000")
        check(1 <= self.curve_every <= 10_000_000, "eval.curve_every", self.curve_every, "an integer in 1..10000000")
        check(self.features in TAPS, "eval.features", self.features, " / ".join(TAPS))


@dataclass
class SimCLRConfig(BaseConfig):
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)         # SimCLR pretraining (no labels)
    augment: Augment = field(default_factory=Augment)                # the views
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)  # the two ProtoNet stages (labels)
    eval: EvalConfig = field(default_factory=EvalConfig)


# ------------------------------------------------------------------------------------------ pieces

#: eval.features -> (conv blocks run, drop block k's final max-pool, average over space)
TAPS = {"block4": (4, False, False), "block4_prepool": (4, True, False), "block3": (3, False, False),
        "block3_avg": (3, False, True)}


class FeatureTap(torch.nn.Module):
    """The features of a Conv4 at one layer (``eval.features``): the first blocks, flattened or averaged.

    >>> from adaptlab.models.conv4 import Conv4
    >>> net = Conv4()
    >>> [tuple(FeatureTap(net, k)(torch.zeros(2, 1, 28, 28)).shape) for k in TAPS]
    [(2, 64), (2, 576), (2, 576), (2, 64)]
    """

    def __init__(self, net, tap: str = "block4"):
        super().__init__()
        self.net, (self.blocks, self.prepool, self.avg) = net, TAPS[tap]

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # (n, 1, S, S) -> (n, D)
        h = self.net.features[:self.blocks - self.prepool](x)
        if self.prepool:
            h = self.net.features[self.blocks - 1][:-1](h)                   # conv, BN, ReLU without the pool
        return h.mean((2, 3)) if self.avg else h.flatten(1)                # (n, C) or (n, C*h*w)


def _encoder(cfg: SimCLRConfig, stream: str):
    from adaptlab.models.conv4 import Conv4

    torch.manual_seed(derive_seed(cfg.seed, STREAMS[stream]))
    return Conv4(image_size=cfg.data.size, track_running_stats=True).to(cfg.device)


def _cosine_head(zs, sy, zq, n):
    from adaptlab.meta.protonet import proto_logits

    return proto_logits(F.normalize(zs, dim=-1), sy, F.normalize(zq, dim=-1), n)


def _curve(cfg: SimCLRConfig, embed, head, steps: int):
    """Callback: the 20-run error of ``embed`` + ``head`` every ``eval.curve_every`` steps, and at step 0 and at the
    end when ``curve_every < steps`` (no curve otherwise: the quick form)."""
    from adaptlab.eval.oneshot20 import oneshot20_error

    every = cfg.eval.curve_every

    def cb(step: int, hist: dict) -> None:
        if every < steps and (step % every == 0 or step == steps):
            hist["curve_step"].append(step)
            hist["curve_seconds"].append(hist["seconds"])
            cost = oneshot20_cost(lambda x: embed(x), lambda *a: {"row": head(*a)}, cfg.device)
            hist["curve_error"].append(oneshot20_error(cost, cfg.data.size, cfg.data.root or None)["row"]["error"])
    return cb


def _pretrain(cfg: SimCLRConfig, x: torch.Tensor, checkpoint=None) -> dict:
    """Stage 1: SimCLR on the unlabelled images ``x (M, 1, S, S)``; returns the encoder state and history."""
    from adaptlab.meta.protonet import embed_all
    from adaptlab.zeroshot.contrastive import SimCLR

    p, dev = cfg.train, cfg.device
    enc = _encoder(cfg, "simclr")
    tap = FeatureTap(enc, cfg.eval.features)
    model = SimCLR(enc, enc.feature_dim(cfg.data.size), p.proj_hidden, p.proj_dim, p.temperature, cfg.augment).to(dev)
    g = torch.Generator().manual_seed(derive_seed(cfg.seed, STREAMS["simclr"]))
    xd = x.to(dev)
    hist = {"loss": [], "curve_step": [], "curve_seconds": [], "curve_error": []}
    fit(lambda xb: model.loss(xb, g), lambda _: xd[torch.randint(len(x), (p.batch,), generator=g).to(dev)],
        steps=p.steps, optimizer=make_optimizer(model.parameters(), "adam", p.lr),
        schedule=cosine(p.lr, p.steps, warmup=p.warmup),
        generator=g, modules={"model": model}, history=hist, checkpoint=checkpoint,
        callbacks=[_curve(cfg, lambda im: embed_all(tap, im), _cosine_head, p.steps)], progress=progress,
        desc="simclr")
    return {"encoder": dict(enc.state_dict()), "train_seconds": hist.pop("seconds"), "history": hist}


def _protonet(cfg: SimCLRConfig, x: torch.Tensor, y: torch.Tensor, stream: str, init: dict | None,
              checkpoint=None) -> dict:
    """Stages 2 and 3: ProtoNet on the labelled images, from scratch (``init`` None) or from an encoder state."""
    from adaptlab.meta.protonet import ProtoNet, proto_logits
    from adaptlab.tasks.episodes import EpisodeSampler

    t, dev = cfg.finetune, cfg.device
    enc = _encoder(cfg, stream)
    if init is not None:
        enc.load_state_dict(init)
    pn = ProtoNet(enc)
    sampler = EpisodeSampler(x, y, t.n_way, t.k_shot, t.q_query)
    g = torch.Generator().manual_seed(derive_seed(cfg.seed, STREAMS[stream]))
    hist = {"loss": [], "curve_step": [], "curve_seconds": [], "curve_error": []}
    fit(lambda ep: pn.loss(ep)[0], lambda _: sampler.sample(1, g).to(dev), steps=t.steps,
        optimizer=make_optimizer(pn.parameters(), "adam", t.lr), schedule=step_halving(t.lr, t.lr_halve_every),
        generator=g, modules={"model": enc}, history=hist, checkpoint=checkpoint,
        callbacks=[_curve(cfg, pn.embed, proto_logits, t.steps)], progress=progress, desc=stream)
    return {"encoder": dict(enc.state_dict()), "train_seconds": hist.pop("seconds"), "history": hist}


def _rows(cfg: SimCLRConfig, encoders: dict):
    """``(embed, head)`` scoring every row of :data:`ROWS` at once: ``embed`` stacks pixels and each encoder's
    features side by side, ``head`` splits them and classifies each block its own way."""
    from adaptlab.meta.protonet import embed_all, proto_logits

    nets = {name: _encoder(cfg, "random") for name in ROWS[1:]}       # "random" keeps its initialisation
    for name, state in encoders.items():
        nets[name].load_state_dict(state)
    nets = {n: FeatureTap(net, cfg.eval.features) if n in FROZEN else net for n, net in nets.items()}
    probe = torch.zeros(1, 1, cfg.data.size, cfg.data.size, device=cfg.device)
    npix = cfg.data.size ** 2
    bounds, start = {"pixels": (0, npix)}, npix
    for name, net in nets.items():
        d = embed_all(net, probe).shape[1]
        bounds[name], start = (start, start + d), start + d

    def embed(images):                                                        # (M, 1, S, S) -> (M, sum of dims)
        return torch.cat([images.flatten(1)] + [embed_all(nets[n], images) for n in ROWS[1:]], 1)

    def head(zs, sy, zq, n):
        out = {}
        for name, (a, b) in bounds.items():
            fn = _cosine_head if name in FROZEN else proto_logits
            out[name] = fn(zs[..., a:b], sy, zq[..., a:b], n)
        return out
    return embed, head


def run(cfg: SimCLRConfig, out_dir: Path, resume: bool) -> dict:
    from adaptlab.data.omniglot import load_characters

    bg = cfg.data.background
    chars = load_characters(bg, cfg.data.size, cfg.data.root or None, cfg.data.download)
    if cfg.data.rotations:
        chars = chars.with_rotations()
    x, y = chars.labelled()
    stages = Stages(out_dir, resume, every=cfg.train.checkpoint_every)
    done = {"simclr": stages.run("simclr", _pretrain, cfg, x)}
    done["protonet"] = stages.run("protonet", _protonet, cfg, x, y, "protonet", None)
    done["simclr+protonet"] = stages.run("simclr+protonet", _protonet, cfg, x, y, "simclr+protonet",
                                         done["simclr"]["encoder"])
    embed, head = _rows(cfg, {k: v["encoder"] for k, v in done.items()})
    ev = _evaluate(cfg, bg, embed, head)
    return {"background": bg, "alphabets": chars.alphabet_names, "classes": len(chars), "images": len(x),
            "rows": list(ROWS), "frozen_rows": list(FROZEN), **ev,
            "history": {k: v["history"] for k, v in done.items()},
            "train_seconds": {k: v["train_seconds"] for k, v in done.items()},
            "published": PUBLISHED, "protonet_small1_reference": PROTONET_SMALL1, "targets": TARGETS}


# ------------------------------------------------------------------------------------------ report


def figures(results: dict, cfg, out_dir: Path) -> list[str]:
    from adaptlab.viz.simclr import simclr_accuracy_figure, simclr_curve_figure

    save_figure(simclr_curve_figure(results), out_dir / "oneshot20_vs_step.png")
    save_figure(simclr_accuracy_figure(results), out_dir / "accuracy.png")
    return ["oneshot20_vs_step.png", "accuracy.png"]


def summary(results: dict, cfg) -> str:
    settings = list(next(iter(results["episodic"].values()), {}))
    lines = [f"Trained on {results['background']} ({results['images']} images, {results['classes']} classes with "
             "rotations); SimCLR used no labels. 20-run error = mean % error over the 20 runs of all_runs.zip "
             "(chance 95%); episodes (accuracy % +- 95% CI) from the held-out alphabets "
             f"{', '.join(results['held_out_alphabets']) or '(none: the union sees every minimal alphabet)'}.", "",
             "| row | features | 20-run error % | " + " | ".join(settings) + " |",
             "|---|---|---|" + "---|" * len(settings)]
    for row in results["rows"]:
        kind = "frozen, cosine" if row in results["frozen_rows"] else "trained, ProtoNet"
        eps = results["episodic"].get(row, {})
        cells = [f"{100 * eps[s]['accuracy']:.1f} +- {100 * eps[s]['ci95']:.1f}" for s in settings if s in eps]
        lines.append(f"| {row} | {kind} | {results['oneshot20'][row]['error']:.2f} | " + " | ".join(cells) + " |")
    lines += ["", "Targets (issue 15): " + "; ".join(f"{k} {v}" for k, v in results["targets"].items())
              + " (20-run error of ProtoNet from scratch on minimal set 1 in docs/results/omniglot-protonet-small1).",
              "", "Published (Lake et al. 2015): " + "; ".join(f"{k} {v}%" for k, v in results["published"].items())]
    return "\n".join(lines)


EXPERIMENTS = [
    Experiment("simclr-omniglot", "SimCLR (NT-Xent) on Omniglot without labels: frozen features vs pixels, random, "
               "ProtoNet; ProtoNet fine-tuned from SimCLR", SimCLRConfig, run, figures, summary,
               quick={"train.steps": 3, "train.warmup": 1, "train.batch": 16, "finetune.steps": 2, "finetune.n_way": 5,
                      "finetune.q_query": 1, "eval.episodes": 10, "eval.ways": [5], "eval.shots": [1],
                      "eval.queries": 1, "eval.curve_every": 100},
               check=check_data),
]
