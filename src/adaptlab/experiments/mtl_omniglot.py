"""``mtl-omniglot``: many-task benchmark (one Omniglot alphabet = one classification task), PCGrad-table style.

Every alphabet of the local background set is one task (classify its characters). The same small conv net
(:mod:`adaptlab.models.omniglot_mtl`) is trained as independent networks, hard sharing with a task-specific
last layer ("1-fc") or task-specific fc layers ("all-fc"), cross-stitch, the Deep Relationship Network prior
(all-fc with a learned task covariance on the fc layers, :mod:`adaptlab.mtl.relation`), and the 1-fc network
under PCGrad, CAGrad and MGDA; several seeds. Some alphabets (``data.few_alphabets``) get only
``data.few_drawers`` drawings per character for training: the low-data tasks the relation prior should help.
We report the mean test accuracy over tasks (the shape of Yu et al.'s Table 1 on multi-task CIFAR-100), the
low-/high-data split, gradient-conflict statistics per method and the learned task correlation matrix.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from adaptlab.config import BaseConfig, check
from adaptlab.engine import derive_seed, fit, make_optimizer
from adaptlab.errors import ConfigError
from adaptlab.io import progress
from adaptlab.runner import Experiment, Stages

ALL_METHODS = ("independent", "1-fc", "all-fc", "cross-stitch", "relation", "pcgrad", "cagrad", "mgda")
AGGREGATED = ("pcgrad", "cagrad", "mgda")
#: Yu et al. 2020 (PCGrad), Table 1: mean accuracy (%) over the 20 tasks of multi-task CIFAR-100
#: (Rosenbaum et al. 2018's setting), the rows the lecture shows.
PUBLISHED = {"1-fc": 42.0, "all-fc": 49.0, "cross-stitch": 53.0, "independent": 67.7, "pcgrad": 71.0}
LABELS = {"independent": "independent networks", "1-fc": "hard sharing, task-specific 1-fc (equal weights)",
          "all-fc": "hard sharing, task-specific all-fc (equal weights)", "cross-stitch": "cross-stitch",
          "relation": "all-fc + relation prior (DRN)", "pcgrad": "PCGrad", "cagrad": "CAGrad", "mgda": "MGDA"}


@dataclass
class DataConfig:
    set: str = "small"  # Omniglot set whose alphabets are the tasks: 'small' (8 alphabets, here) or 'background' (30)
    alphabets: list[str] = field(default_factory=list)  # the tasks, by alphabet name; empty: every alphabet of the set
    train_drawers: int = 10  # drawings per character used for training (the first ones)
    test_drawers: int = 6  # the last drawings of every character, held out as the test set
    few_alphabets: list[str] = field(default_factory=lambda: ["Balinese", "Korean", "Tagalog"])  # the low-data tasks
    few_drawers: int = 2  # training drawings per character of the low-data tasks


@dataclass
class TrainConfig:
    steps: int = 400  # each step sees batch_per_task images of every task: ~9 epochs of a 10-drawing task
    batch_per_task: int = 8  # 8 tasks x 8 images a step keeps the 8-seed-methods grid near 10 idle CPU minutes
    lr: float = 2e-3
    optimizer: str = "adam"
    width: int = 16  # conv channels
    hidden: int = 64  # units of the two fc layers
    aggregate_on: str = "1-fc"  # the network PCGrad/CAGrad/MGDA train: '1-fc' (most sharing) or 'all-fc'
    cagrad_c: float = 0.4
    mgda_normalize: str = "loss+"  # Sener & Koltun's normalisation, as in mtl-multimnist
    stitch_self: float = 0.9  # initial diagonal of the cross-stitch mixing matrices
    relation_strength: float = 1e-4  # λ of (λ/2) tr(Wᵀ Ω⁻¹ W) per fc layer; 1e-3 slowed all tasks (probe: 39% vs 45%)
    relation_every: int = 25  # steps between closed-form task-covariance updates
    diag_every: int = 20  # steps between gradient-cosine measurements (every seed)


@dataclass
class MTLOmniglotConfig(BaseConfig):
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    methods: list[str] = field(default_factory=lambda: list(ALL_METHODS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])

    def __post_init__(self) -> None:
        super().__post_init__()
        d, t = self.data, self.train
        check(d.set in ("small", "background"), "data.set", d.set, "'small' or 'background'")
        check(len(set(d.alphabets)) == len(d.alphabets) and len(d.alphabets) != 1, "data.alphabets", d.alphabets,
              "an empty list (every alphabet) or at least 2 distinct alphabet names")
        check(1 <= d.test_drawers <= 19, "data.test_drawers", d.test_drawers, "an integer in 1..19")
        check(1 <= d.train_drawers <= 20 - d.test_drawers, "data.train_drawers", d.train_drawers,
              "an integer in 1..20 - data.test_drawers")
        check(1 <= d.few_drawers <= d.train_drawers, "data.few_drawers", d.few_drawers,
              "an integer in 1..data.train_drawers")
        check(len(set(d.few_alphabets)) == len(d.few_alphabets), "data.few_alphabets", d.few_alphabets,
              "distinct alphabet names")
        check(1 <= t.steps <= 100_000, "train.steps", t.steps, "an integer in 1..100000")
        check(1 <= t.batch_per_task <= 1000, "train.batch_per_task", t.batch_per_task, "an integer in 1..1000")
        check(0 < t.lr <= 10, "train.lr", t.lr, "a number in (0, 10]")
        check(t.optimizer in ("adam", "sgd"), "train.optimizer", t.optimizer, "'adam' or 'sgd'")
        check(1 <= t.width <= 512, "train.width", t.width, "an integer in 1..512")
        check(1 <= t.hidden <= 4096, "train.hidden", t.hidden, "an integer in 1..4096")
        check(t.aggregate_on in ("1-fc", "all-fc"), "train.aggregate_on", t.aggregate_on, "'1-fc' or 'all-fc'")
        check(0 <= t.cagrad_c <= 100, "train.cagrad_c", t.cagrad_c, "a number in [0, 100]")
        check(t.mgda_normalize in ("none", "l2", "loss", "loss+"), "train.mgda_normalize", t.mgda_normalize,
              "one of 'none', 'l2', 'loss', 'loss+'")
        check(0 < t.stitch_self <= 1, "train.stitch_self", t.stitch_self, "a number in (0, 1]")
        check(0 <= t.relation_strength <= 100, "train.relation_strength", t.relation_strength,
              "a number in [0, 100]")
        check(1 <= t.relation_every <= 100_000, "train.relation_every", t.relation_every, "an integer in 1..100000")
        check(1 <= t.diag_every <= 100_000, "train.diag_every", t.diag_every, "an integer in 1..100000")
        bad = [m for m in self.methods if m not in ALL_METHODS]
        check(not bad and len(self.methods) > 0 and len(set(self.methods)) == len(self.methods), "methods",
              self.methods, f"a non-empty list of distinct names from {', '.join(ALL_METHODS)}")
        check(len(self.seeds) > 0 and len(set(self.seeds)) == len(self.seeds) and all(0 <= s < 10**6 for s in
              self.seeds), "seeds", self.seeds, "a non-empty list of distinct integers in 0..999999")


# ---------------------------------------------------------------------------------------- the data


def _characters(cfg: MTLOmniglotConfig):
    from adaptlab.data.omniglot import load_characters

    return load_characters(cfg.data.set, size=28)


def task_names(cfg: MTLOmniglotConfig, available: list[str]) -> list[str]:
    """The tasks of the run (sorted alphabet names); an absent alphabet is one ConfigError line."""
    d = cfg.data
    tasks = sorted(d.alphabets) if d.alphabets else sorted(available)
    absent = [a for a in tasks if a not in available]
    if absent:
        raise ConfigError(f"data.alphabets names {', '.join(absent)}, absent from Omniglot set {d.set!r}; "
                          f"expected names from: {', '.join(sorted(available))}")
    bad_few = [a for a in d.few_alphabets if a not in tasks]
    if bad_few:
        raise ConfigError(f"data.few_alphabets names {', '.join(bad_few)}, not one of the tasks; expected names "
                          f"from: {', '.join(tasks)} (or an empty list)")
    return tasks


def _check(cfg: MTLOmniglotConfig) -> None:
    """The Omniglot archive present and every named alphabet in it, before the run folder exists."""
    task_names(cfg, _characters(cfg).alphabet_names)


def build_data(cfg: MTLOmniglotConfig) -> dict:
    """Per task: train/test images (N, 1, 28, 28) and labels (character index within the alphabet)."""
    d = cfg.data
    chars = _characters(cfg)
    tasks = task_names(cfg, chars.alphabet_names)
    out = {}
    for t in tasks:
        imgs = chars.select_alphabets([t]).images  # (C, 20, 28, 28)
        n_tr = d.few_drawers if t in d.few_alphabets else d.train_drawers
        tr, te = imgs[:, :n_tr], imgs[:, 20 - d.test_drawers:]
        C = imgs.shape[0]
        out[t] = {"x": tr.reshape(-1, 1, 28, 28).to(cfg.device), "y": torch.arange(C).repeat_interleave(n_tr)
                  .to(cfg.device), "tx": te.reshape(-1, 1, 28, 28).to(cfg.device),
                  "ty": torch.arange(C).repeat_interleave(d.test_drawers).to(cfg.device), "classes": C}
    return out


# ------------------------------------------------------------------------------------- networks


def build_net(method: str, cfg: MTLOmniglotConfig, classes: dict[str, int]):
    """The network of a method: HardSharing (1-fc / all-fc depth) or CrossStitch (independent: no units)."""
    from adaptlab.models.omniglot_mtl import omniglot_mtl_blocks, omniglot_mtl_head
    from adaptlab.mtl.architectures import CrossStitch, HardSharing

    tc = cfg.train
    blocks = omniglot_mtl_blocks(tc.width, tc.hidden)
    heads = {t: omniglot_mtl_head(tc.hidden, c) for t, c in classes.items()}
    if method in ("independent", "cross-stitch"):
        stitch = [0, 1, 2, 3, 4] if method == "cross-stitch" else []
        return CrossStitch(blocks, heads, stitch_after=stitch, self_weight=tc.stitch_self)
    arch = tc.aggregate_on if method in AGGREGATED else ("all-fc" if method == "relation" else method)
    return HardSharing(blocks, heads, shared_depth=5 if arch == "1-fc" else 3)


def _fc_weights(tasks: list[str]):
    """The relation prior's layers: the two task-specific fc weights, stacked as (T, D) per layer."""
    return lambda net: [torch.stack([net.private[t][k].fc.weight.flatten() for t in tasks]) for k in (0, 1)]


def make_step(method: str, net, cfg: MTLOmniglotConfig, tasks: list[str], generator: torch.Generator):
    from adaptlab.mtl.manytask import ManyTaskStep
    from adaptlab.mtl.registry import make_aggregator
    from adaptlab.mtl.relation import RelationPrior

    tc = cfg.train
    opt = lambda ps: make_optimizer(ps, tc.optimizer, tc.lr)  # noqa: E731
    if method in AGGREGATED:
        agg = make_aggregator(method, len(tasks), c=tc.cagrad_c, normalize=tc.mgda_normalize, generator=generator)
        return ManyTaskStep(net, F.cross_entropy, opt, aggregator=agg)
    if method == "relation":
        return ManyTaskStep(net, F.cross_entropy, opt, prior=RelationPrior(len(tasks), 2, tc.relation_strength),
                            prior_weights=_fc_weights(tasks), prior_every=tc.relation_every)
    return ManyTaskStep(net, F.cross_entropy, opt)


# ------------------------------------------------------------------------------------- one training


@torch.no_grad()
def task_accuracy(net, data: dict) -> dict[str, float]:
    """Test accuracy (%) of every task on its held-out drawings."""
    net.eval()
    out = {}
    for t, d in data.items():
        correct = sum(int((net.forward_tasks({t: d["tx"][i:i + 1000]})[t].argmax(1) == d["ty"][i:i + 1000]).sum())
                      for i in range(0, d["tx"].shape[0], 1000))
        out[t] = 100.0 * correct / d["tx"].shape[0]
    net.train()
    return out


def train_job(job: dict, cfg: MTLOmniglotConfig, data: dict, checkpoint=None) -> dict:
    """Train one (method, seed) with :func:`~adaptlab.engine.fit`; return its record (accuracies, conflict)."""
    tc, tasks, method = cfg.train, list(data), job["method"]
    torch.manual_seed(derive_seed(job["seed"], 0))  # the network's initialisation
    net = build_net(method, cfg, {t: data[t]["classes"] for t in tasks}).to(cfg.device)
    gen = torch.Generator().manual_seed(derive_seed(job["seed"], 1))  # batches and PCGrad's task order
    step = make_step(method, net, cfg, tasks, gen)

    def batch(i: int):
        out = {}
        for t in tasks:
            idx = torch.randint(0, data[t]["x"].shape[0], (tc.batch_per_task,), generator=gen).to(cfg.device)
            out[t] = (data[t]["x"][idx], data[t]["y"][idx])
        return i, out

    def train(b, rec):
        i, xs = b
        if i % tc.diag_every == 0:
            C = step.gradient_cosine(xs)
            if C is not None:
                off = C[~torch.eye(len(tasks), dtype=torch.bool)]
                rec["cosine"].append(float(off.mean()))
                rec["negative"].append(float((off < 0).double().mean()))
        return step(xs).sum()

    rec = {"cosine": [], "negative": []}
    fit(lambda b: train(b, rec), batch, steps=tc.steps, modules={"model": net, "method": step},
        generator={"batches": gen}, history=rec, checkpoint=checkpoint, every=max(1, tc.steps // 4),
        progress=progress, desc=job["name"])
    rec["accuracy"] = task_accuracy(net, data)
    if step.prior is not None:
        rec["omega"] = [om.tolist() for om in step.prior.omegas]
        rec["correlation"] = [c.tolist() for c in step.prior.correlations()]
    rec.pop("loss")
    return rec


def jobs(cfg: MTLOmniglotConfig) -> list[dict]:
    return [{"name": f"{m}/s{s}", "method": m, "seed": s} for s in cfg.seeds for m in cfg.methods]


# ------------------------------------------------------------------------------------------- the run


def _mean_std(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def run(cfg: MTLOmniglotConfig, out_dir: Path, resume: bool) -> dict:
    data = build_data(cfg)
    tasks = list(data)
    few = [t for t in tasks if t in cfg.data.few_alphabets]
    many = [t for t in tasks if t not in few]
    stages = Stages(out_dir, resume)
    for job in progress(jobs(cfg), desc="mtl-omniglot jobs"):
        stages.run(job["name"], train_job, job, cfg, data)
    done = stages.done
    methods, seconds = {}, {}
    for m in cfg.methods:
        recs = [done[f"{m}/s{s}"] for s in cfg.seeds]
        e = {"label": LABELS[m], "published": PUBLISHED.get(m)}
        for key, group in (("mean", tasks), ("few", few), ("many", many)):
            if group:
                e[key], e[key + "_std"] = _mean_std([statistics.fmean(r["accuracy"][t] for t in group) for r in recs])
        e["per_task"] = {t: _mean_std([r["accuracy"][t] for r in recs])[0] for t in tasks}
        if recs[0]["cosine"]:
            e["cosine"], e["cosine_std"] = _mean_std([statistics.fmean(r["cosine"]) for r in recs])
            e["negative"], e["negative_std"] = _mean_std([statistics.fmean(r["negative"]) for r in recs])
        methods[m] = e
        seconds[m] = statistics.fmean(r["seconds"] for r in recs)
    out = {"tasks": tasks, "few_tasks": few, "methods": methods,
           "n_train": {t: int(data[t]["x"].shape[0]) for t in tasks},
           "n_test": {t: int(data[t]["tx"].shape[0]) for t in tasks},
           "classes": {t: int(data[t]["classes"]) for t in tasks}, "timings": {"train_seconds": seconds}}
    if "relation" in cfg.methods:
        out["relation"] = {"correlation": [done[f"relation/s{s}"]["correlation"] for s in cfg.seeds],
                           "layers": ["fc1", "fc2"]}
        if few:  # paired by seed: does the prior help the low-data tasks over the same net without it?
            for base in ("all-fc", "independent"):
                if base in cfg.methods:
                    diffs = [statistics.fmean(done[f"relation/s{s}"]["accuracy"][t] - done[f"{base}/s{s}"]
                                              ["accuracy"][t] for t in few) for s in cfg.seeds]
                    out["relation"][f"few_gain_vs_{base}"] = list(_mean_std(diffs))
    return out


def figures(results: dict, cfg: MTLOmniglotConfig, out_dir: Path) -> list[str]:
    from adaptlab.io import save_figure
    from adaptlab.viz.mtl import many_task_figure, task_correlation_figure

    names = ["accuracy.png"]
    save_figure(many_task_figure(results), out_dir / names[0])
    if "relation" in results:
        names.append("task_correlation.png")
        save_figure(task_correlation_figure(results), out_dir / names[1])
    return names


def summary(results: dict, cfg: MTLOmniglotConfig) -> str:
    d, tc, few = cfg.data, cfg.train, results["few_tasks"]
    ms = results["methods"]
    lines = [f"Multi-task Omniglot: {len(results['tasks'])} tasks (the alphabets of the '{d.set}' set), "
             f"{d.train_drawers} training drawings per character ({d.few_drawers} for the low-data tasks "
             f"{', '.join(few) or 'none'}), {d.test_drawers} test drawings; {tc.steps} steps of "
             f"{tc.batch_per_task} images per task; {len(cfg.seeds)} seeds (mean ± std). Published: Yu et al. "
             "2020 Table 1, multi-task CIFAR-100 (20 tasks).", "",
             "| method | mean acc % | low-data tasks % | other tasks % | published (CIFAR-100) % |",
             "|---|---|---|---|---|"]
    for e in ms.values():
        pub = f"{e['published']:g}" if e.get("published") is not None else "–"
        fw = f"{e['few']:.1f} ± {e['few_std']:.1f}" if "few" in e else "–"
        mn = f"{e['many']:.1f} ± {e['many_std']:.1f}" if "many" in e else "–"
        lines.append(f"| {e['label']} | {e['mean']:.1f} ± {e['mean_std']:.1f} | {fw} | {mn} | {pub} |")
    lines += ["", "Gradient conflict between tasks on the shared parameters (mean over training and seeds; "
              "cross-stitch: every column, which the stitch units let each task reach):", "",
              "| method | mean pairwise cosine | conflicting pairs |", "|---|---|---|"]
    lines += [f"| {e['label']} | {e['cosine']:+.3f} ± {e['cosine_std']:.3f} | {100 * e['negative']:.0f}% |"
              for e in ms.values() if "cosine" in e]
    rel = results.get("relation")
    if rel:
        for base in ("all-fc", "independent"):
            if f"few_gain_vs_{base}" in rel:
                g, s = rel[f"few_gain_vs_{base}"]
                lines.append(f"\nRelation prior on the low-data tasks vs {base} (paired by seed): {g:+.1f} ± {s:.1f} "
                             "points.")
    return "\n".join(lines)


QUICK = {"train.steps": 4, "train.batch_per_task": 4, "train.width": 4, "train.hidden": 8, "train.diag_every": 2,
         "train.relation_every": 2, "seeds": [0], "data.alphabets": ["Greek", "Latin", "Tagalog"],
         "data.few_alphabets": ["Tagalog"]}

EXPERIMENTS = [Experiment(
    name="mtl-omniglot",
    description="Many-task Omniglot (one alphabet per task): independent, hard sharing 1-fc / all-fc, "
                "cross-stitch, relation prior, PCGrad, CAGrad, MGDA; gradient conflict, task correlations",
    config_cls=MTLOmniglotConfig, run=run, figures=figures, summary=summary, quick=QUICK, check=_check)]
