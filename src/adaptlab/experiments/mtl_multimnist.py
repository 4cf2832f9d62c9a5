"""``mtl-multimnist``: single-task vs weighting vs gradient-aggregation methods on MultiMNIST (left/right digit).

A shared LeNet encoder with one head per digit (Sener & Koltun 2018) is trained with each method for each
seed; we report per-task test accuracy (mean ± std over seeds), Δm vs single-task, the gradient conflict
(cosine of the two tasks' shared gradients) during training, a Pareto front from a sweep of fixed weights,
and the linear-CKA similarity of the learned encoders with CKA-based checkpoint selection for a new task.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from adaptlab.config import BaseConfig, check
from adaptlab.engine import fit, make_optimizer
from adaptlab.eval.metrics import accuracy
from adaptlab.io import progress
from adaptlab.runner import Experiment, Stages

TASKS = ("left", "right")
ALL_METHODS = ("single", "equal", "cross-stitch", "uncertainty", "gradnorm", "dwa", "mgda-ub", "mgda", "pcgrad",
               "cagrad")
#: soft sharing: one LeNet per task, mixed by cross-stitch units after each block, trained on the equal sum
SOFT = {"cross-stitch": "equal"}
#: Sener & Koltun 2018, Table 3 (left/right accuracy %); PCGrad (Yu et al. 2020) re-ran MGDA-UB and PCGrad.
PUBLISHED = {
    "single": (97.23, 95.90), "equal": (96.46, 94.99), "uncertainty": (96.47, 95.29),
    "gradnorm": (96.27, 94.84), "mgda-ub": (97.26, 95.90), "mgda-ub (Yu et al.)": (96.45, 94.95),
    "pcgrad": (96.58, 95.50),
}


@dataclass
class DataConfig:
    n_train: int = 60000  # all of MNIST's training images: one epoch is cheap on a CPU (~5 s)
    n_test: int = 10000
    seed: int = 0  # the MultiMNIST partners; fixed across training seeds, as in a released dataset


@dataclass
class TrainConfig:
    epochs: int = 3  # the paper trains 100 epochs; 3 keeps the 3-seed comparison near 20 CPU minutes
    batch_size: int = 256
    lr: float = 1e-3
    optimizer: str = "adam"
    dropout: float = 0.0
    mgda_normalize: str = "loss+"  # Sener & Koltun's MultiMNIST setting
    cagrad_c: float = 0.4
    gradnorm_alpha: float = 1.5  # GradNorm's restoring-force strength (the paper's value for this kind of task)
    diag_every: int = 25  # steps between gradient-cosine measurements (seed 0 only)


@dataclass
class MultiMNISTConfig(BaseConfig):
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    methods: list[str] = field(default_factory=lambda: ["single", "equal", "cross-stitch", "uncertainty", "gradnorm",
                                                        "dwa", "mgda-ub", "mgda", "pcgrad", "cagrad"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    pareto_weights: list[float] = field(default_factory=lambda: [0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95])
    cka_examples: int = 2000
    probe_examples: int = 500  # labelled examples of the "new task" for CKA-based checkpoint selection
    probe_epochs: int = 30  # epochs of the small probe network trained on those examples

    def __post_init__(self) -> None:
        super().__post_init__()
        d, t = self.data, self.train
        check(2 <= d.n_train <= 60000, "data.n_train", d.n_train, "an integer in 2..60000")
        check(2 <= d.n_test <= 10000, "data.n_test", d.n_test, "an integer in 2..10000")
        check(t.epochs >= 1, "train.epochs", t.epochs, "a positive integer")
        check(t.batch_size >= 1, "train.batch_size", t.batch_size, "a positive integer")
        check(t.lr > 0, "train.lr", t.lr, "a positive number")
        check(t.optimizer in ("adam", "sgd"), "train.optimizer", t.optimizer, "'adam' or 'sgd'")
        check(0 <= t.dropout < 1, "train.dropout", t.dropout, "a number in [0, 1)")
        check(t.mgda_normalize in ("none", "l2", "loss", "loss+"), "train.mgda_normalize", t.mgda_normalize,
              "one of 'none', 'l2', 'loss', 'loss+'")
        check(0 <= t.cagrad_c <= 100, "train.cagrad_c", t.cagrad_c, "a number in [0, 100]")
        check(0 <= t.gradnorm_alpha <= 100, "train.gradnorm_alpha", t.gradnorm_alpha, "a number in [0, 100]")
        check(d.seed >= 0, "data.seed", d.seed, "a non-negative integer")
        check(t.epochs <= 10_000, "train.epochs", t.epochs, "an integer in 1..10000")
        check(t.batch_size <= 60_000, "train.batch_size", t.batch_size, "an integer in 1..60000")
        check(t.lr <= 10, "train.lr", t.lr, "a positive number <= 10")
        check(t.diag_every >= 1, "train.diag_every", t.diag_every, "a positive integer")
        bad = [m for m in self.methods if m not in ALL_METHODS]
        check(not bad and len(self.methods) > 0, "methods", self.methods,
              f"a non-empty list from {', '.join(ALL_METHODS)}")
        check(len(set(self.methods)) == len(self.methods), "methods", self.methods, "no repeated method")
        check(len(self.seeds) > 0 and len(set(self.seeds)) == len(self.seeds), "seeds", self.seeds,
              "a non-empty list of distinct integers")
        check(all(0 < w < 1 for w in self.pareto_weights), "pareto_weights", self.pareto_weights,
              "weights of the left task strictly between 0 and 1 (right gets 1 - w)")
        check(2 <= self.cka_examples <= d.n_test, "cka_examples", self.cka_examples, "an integer in 2..data.n_test")
        check(2 <= self.probe_examples <= d.n_train, "probe_examples", self.probe_examples,
              "an integer in 2..data.n_train")
        check(self.probe_epochs >= 1, "probe_epochs", self.probe_epochs, "a positive integer")


# ---------------------------------------------------------------------------------------- the data


def _check_mnist(cfg: MultiMNISTConfig) -> None:
    """MNIST present and verified before the run folder exists."""
    from adaptlab.data.mnist import load_mnist

    load_mnist()


def build_data(cfg: MultiMNISTConfig) -> dict[str, torch.Tensor]:
    from adaptlab.data.mnist import load_mnist
    from adaptlab.data.multimnist import make_multimnist, normalize

    ds = load_mnist()
    g = torch.Generator().manual_seed(cfg.data.seed)
    tr = make_multimnist(ds.train_x, ds.train_y, g, n=cfg.data.n_train)
    te = make_multimnist(ds.test_x, ds.test_y, g, n=cfg.data.n_test)
    dev = cfg.device
    return {"x": normalize(tr.images).to(dev), "left": tr.left.to(dev), "right": tr.right.to(dev),
            "tx": normalize(te.images).to(dev), "tleft": te.left.to(dev), "tright": te.right.to(dev)}


def _net(tasks, cfg: MultiMNISTConfig, arch: str = "hard"):
    from adaptlab.models.mtl_lenet import lenet_blocks, lenet_head, multimnist_cross_stitch
    from adaptlab.mtl.architectures import HardSharing

    if arch == "cross-stitch":
        return multimnist_cross_stitch(tasks, cfg.train.dropout, 10)
    return HardSharing(lenet_blocks(cfg.train.dropout), {t: lenet_head(10, cfg.train.dropout) for t in tasks})


# ------------------------------------------------------------------------------------- one training


def train_job(job: dict, cfg: MultiMNISTConfig, data: dict, checkpoint=None):
    """Train one job (method, seed[, fixed weights]) with :func:`~adaptlab.engine.fit`; return (net, record).

    One step is one mini-batch; the checkpoint is saved after every epoch but the last, so a resumed job
    (``checkpoint`` is its stage of the run) matches an uninterrupted one.
    """
    from adaptlab.mtl.train import MethodStep

    tc, tasks = cfg.train, job["tasks"]
    torch.manual_seed(job["seed"])  # model init (and dropout) draw from the global RNG
    net = _net(tasks, cfg, job.get("arch", "hard")).to(cfg.device)
    gen = torch.Generator().manual_seed(1000 + job["seed"])  # batch order and PCGrad's task order
    step = MethodStep.from_name(job["method"], net, tasks, F.cross_entropy,
                                lambda ps: make_optimizer(ps, tc.optimizer, tc.lr),
                                fixed_weights=job.get("weights", ()), mgda_normalize=tc.mgda_normalize,
                                cagrad_c=tc.cagrad_c, gradnorm_alpha=tc.gradnorm_alpha, generator=gen)
    n, bs = data["x"].shape[0], tc.batch_size
    per_epoch = -(-n // bs)  # batches per epoch, the last one partial
    diag = job["seed"] == cfg.seeds[0] and len(tasks) == 2
    total = torch.zeros(len(tasks))  # the epoch's summed task losses
    epoch = {}

    def batch(i: int):
        b = i % per_epoch
        if b == 0:  # a new epoch: a new order of the training images
            epoch["order"] = torch.randperm(n, generator=gen).to(cfg.device)
        idx = epoch["order"][b * bs:(b + 1) * bs]
        return b, data["x"][idx], {t: data[t][idx] for t in tasks}

    def train(batch, rec):
        b, x, ys = batch
        if diag and b % tc.diag_every == 0:
            rec["cosine"].append(float(step.gradient_cosine(x, ys)[0, 1]))
        losses = step(x, ys)  # forward, backward and the optimizer step of the method
        total.add_(losses.cpu() * x.shape[0])
        if diag and b % tc.diag_every == 0 and step.last_weights is not None:
            rec["weights"].append([float(w) for w in step.last_weights])
        return losses.sum()

    def end_epoch(i: int, rec: dict) -> None:
        if i > 0 and i % per_epoch == 0:
            rec["epoch_loss"].append((total / n).tolist())
            step.end_epoch(total / n)
            total.zero_()

    rec = {"cosine": [], "weights": [], "epoch_loss": []}
    fit(lambda b: train(b, rec), batch, steps=tc.epochs * per_epoch, modules={"model": net, "method": step},
        generator={"batches": gen, "global": torch.default_generator}, history=rec, checkpoint=checkpoint,
        every=per_epoch, callbacks=[end_epoch], progress=progress, desc=job["name"])
    rec["accuracy"] = accuracy(net, data["tx"], {t: data["t" + t] for t in tasks}, batch=2000, scale=100.0)
    return net, rec


def _job_record(job: dict, cfg: MultiMNISTConfig, data: dict, checkpoint) -> dict:
    """One stage of the run: train the job; the seed-0 models (Pareto sweep aside) are kept for the CKA."""
    net, rec = train_job(job, cfg, data, checkpoint)
    if job["seed"] == cfg.seeds[0] and job["group"] != "pareto":
        rec["model"] = {k: v.cpu() for k, v in net.state_dict().items()}
    return rec


def jobs(cfg: MultiMNISTConfig) -> list[dict]:
    out = []
    for seed in cfg.seeds:
        for m in cfg.methods:
            if m == "single":
                out += [{"name": f"single-{t}/s{seed}", "method": "equal", "tasks": (t,), "seed": seed,
                         "group": "single"} for t in TASKS]
            elif m in SOFT:
                out.append({"name": f"{m}/s{seed}", "method": SOFT[m], "arch": m, "tasks": TASKS, "seed": seed,
                            "group": m})
            else:
                out.append({"name": f"{m}/s{seed}", "method": m, "tasks": TASKS, "seed": seed, "group": m})
    for w in cfg.pareto_weights:
        out.append({"name": f"fixed-{w:g}/s{cfg.seeds[0]}", "method": "fixed", "tasks": TASKS,
                    "seed": cfg.seeds[0], "weights": (w, 1 - w), "group": "pareto", "w": w})
    return out


@torch.no_grad()
def encoder_features(net, x: torch.Tensor) -> torch.Tensor:
    net.eval()
    _, z = net(x)
    net.train()
    if z.dim() == 3:  # cross-stitch: one feature vector per task stream, (T, B, D) -> (B, T * D)
        z = z.permute(1, 0, 2).flatten(1)
    return z.detach().cpu().double()


# ----------------------------------------------------------------------------- CKA checkpoint choice


def _ridge_probe_accuracy(ftr, ytr, fte, yte, lam: float = 1e-2) -> float:
    """Accuracy of a closed-form ridge regression on one-hot targets over frozen features."""
    mu, sd = ftr.mean(0), ftr.std(0) + 1e-6
    A = torch.cat([(ftr - mu) / sd, ftr.new_ones(ftr.shape[0], 1)], 1)
    B = torch.cat([(fte - mu) / sd, fte.new_ones(fte.shape[0], 1)], 1)
    reg = lam * A.shape[0] * torch.eye(A.shape[1], dtype=A.dtype)
    W = torch.linalg.solve(A.T @ A + reg, A.T @ F.one_hot(ytr, 10).to(A))
    return 100.0 * float(((B @ W).argmax(1) == yte).double().mean())


def checkpoint_selection(cfg: MultiMNISTConfig, data: dict, encoders: dict) -> dict:
    """For each digit as a 'new task' with few labels: pick a checkpoint by CKA to a small probe model, and
    compare with the transfer accuracy of a ridge probe on each checkpoint's frozen features."""
    n, m = cfg.probe_examples, cfg.cka_examples
    xtr, xte = data["x"][-n:], data["tx"][:m]  # the last n training images: labelled data of the new task
    out = {}
    for t in TASKS:
        job = {"name": f"probe-{t}", "method": "equal", "tasks": (t,), "seed": cfg.seeds[0]}
        small = {"x": xtr, t: data[t][-n:], "tx": xte, "t" + t: data["t" + t][:m]}
        pcfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=cfg.probe_epochs, batch_size=50))
        probe, rec = train_job(job, pcfg, small)
        pf = encoder_features(probe, xte)
        from adaptlab.mtl.diagnostics import select_by_cka

        cands = {name: encoders[name](xte) for name in encoders}
        best, scores = select_by_cka(pf, cands)
        transfer = {name: _ridge_probe_accuracy(encoders[name](xtr), data[t][-n:], cands[name],
                                                data["t" + t][:m]) for name in encoders}
        out[t] = {"probe_accuracy": rec["accuracy"][t], "cka": scores, "chosen": best,
                  "transfer_accuracy": transfer, "best_by_transfer": max(transfer, key=transfer.get)}
    return out


# ------------------------------------------------------------------------------------------- the run


def _mean_std(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def run(cfg: MultiMNISTConfig, out_dir: Path, resume: bool) -> dict:
    from adaptlab.mtl.diagnostics import delta_m, linear_cka

    data = build_data(cfg)
    stages = Stages(out_dir, resume)
    todo = jobs(cfg)
    for job in progress(todo, desc="mtl-multimnist jobs"):
        stages.run(job["name"], _job_record, job, cfg, data)
    done = stages.done

    # --- accuracies, mean ± std over seeds, Δm vs single task
    acc = {}
    for m in cfg.methods:
        per_seed = []
        for s in cfg.seeds:
            if m == "single":
                per_seed.append([done[f"single-{t}/s{s}"]["accuracy"][t] for t in TASKS])
            else:
                per_seed.append([done[f"{m}/s{s}"]["accuracy"][t] for t in TASKS])
        acc[m] = per_seed
    methods = {}
    for m, per_seed in acc.items():
        entry = {"per_seed": per_seed}
        for k, t in enumerate(TASKS):
            entry[t], entry[t + "_std"] = _mean_std([a[k] for a in per_seed])
        if "single" in acc:
            dms = [delta_m(a, b) for a, b in zip(per_seed, acc["single"])]  # paired by seed
            entry["delta_m"], entry["delta_m_std"] = _mean_std(dms)
        entry["published"] = PUBLISHED.get(m)
        names = [f"single-{t}/s{s}" for t in TASKS for s in cfg.seeds] if m == "single" else \
            [f"{m}/s{s}" for s in cfg.seeds]
        entry["train_seconds_per_epoch"] = sum(done[n]["seconds"] for n in names) / len(cfg.seeds) / cfg.train.epochs
        methods[m] = entry
    pareto = [{"w_left": j["w"], **done[j["name"]]["accuracy"]} for j in todo if j["group"] == "pareto"]
    s0 = cfg.seeds[0]
    conflict = {m: {"cosine": done[f"{m}/s{s0}"]["cosine"], "weights": done[f"{m}/s{s0}"]["weights"]}
                for m in cfg.methods if m != "single"}

    # --- task relevance: CKA between the seed-0 encoders, and checkpoint choice for a new task
    names = [n for n in (f"single-{t}/s{s0}" for t in TASKS) if n in done] + \
        [f"{m}/s{s0}" for m in cfg.methods if m != "single"]
    encoders = {}
    for name in names:
        tasks = (name.split("/")[0].split("-", 1)[1],) if name.startswith("single-") else TASKS
        net = _net(tasks, cfg, "cross-stitch" if name.split("/")[0] in SOFT else "hard").to(cfg.device)
        net.load_state_dict(done[name]["model"])
        encoders[name.split("/")[0]] = (lambda n_: lambda x: encoder_features(n_, x))(net)
    xc = data["tx"][:cfg.cka_examples]
    feats = {k: f(xc) for k, f in encoders.items()}
    cka = [[float(linear_cka(feats[a], feats[b])) for b in feats] for a in feats]
    selection = None
    if "single" in cfg.methods:
        cands = {k: v for k, v in encoders.items() if k in ("single-left", "single-right", "equal")}
        selection = checkpoint_selection(cfg, data, cands)
    return {"tasks": list(TASKS), "methods": methods, "pareto": pareto, "conflict": conflict,
            "cka": {"names": list(feats), "matrix": cka}, "selection": selection,
            "n_train": int(data["x"].shape[0]), "n_test": int(data["tx"].shape[0])}


def figures(results: dict, cfg: MultiMNISTConfig, out_dir: Path) -> list[str]:
    from adaptlab.io import save_figure
    from adaptlab.viz.mtl import cka_figure, conflict_figure, pareto_figure

    names = ["pareto.png", "conflict.png", "cka.png"]
    save_figure(pareto_figure(results), out_dir / names[0])
    per_epoch = -(-results["n_train"] // cfg.train.batch_size)  # batches per epoch (last one partial)
    steps = [e * per_epoch + b for e in range(cfg.train.epochs) for b in range(0, per_epoch, cfg.train.diag_every)]
    save_figure(conflict_figure(results, steps), out_dir / names[1])
    save_figure(cka_figure(results), out_dir / names[2])
    return names


def conflict_share(cosines: list[float]) -> float:
    """The share of measurements with a negative cosine (conflicting task gradients).

    >>> conflict_share([0.3, -0.1, 0.0, -0.5])
    0.5
    """
    return sum(c < 0 for c in cosines) / len(cosines) if cosines else 0.0


def summary(results: dict, cfg: MultiMNISTConfig) -> str:
    lines = [f"MultiMNIST ({results['n_train']} train / {results['n_test']} test images), {cfg.train.epochs} "
             f"epochs, {len(cfg.seeds)} seeds (mean ± std). Published: Sener & Koltun 2018 Table 3 "
             "(100 epochs); the second MGDA-UB row and PCGrad are from Yu et al. 2020.", "",
             "| method | left acc % | right acc % | Δm % vs single | published left / right | train s/epoch |",
             "|---|---|---|---|---|---|"]
    for m, e in results["methods"].items():
        dm = f"{e['delta_m']:+.2f} ± {e['delta_m_std']:.2f}" if "delta_m" in e else "–"
        pub = "{:.2f} / {:.2f}".format(*e["published"]) if e.get("published") else "–"
        lines.append(f"| {m} | {e['left']:.2f} ± {e['left_std']:.2f} | {e['right']:.2f} ± {e['right_std']:.2f} "
                     f"| {dm} | {pub} | {e['train_seconds_per_epoch']:.1f} |")
    if "mgda-ub" in results["methods"]:
        lines.append("| mgda-ub (Yu et al. re-run) | | | | {:.2f} / {:.2f} | |".format(
            *PUBLISHED["mgda-ub (Yu et al.)"]))
    ms = results["methods"]
    if "cross-stitch" in ms and "equal" in ms and "delta_m" in ms["equal"]:
        cs, eq = ms["cross-stitch"], ms["equal"]
        lines += ["", f"Hard vs soft sharing (both on the equal sum of the losses): hard-shared encoder Δm "
                  f"{eq['delta_m']:+.2f} ± {eq['delta_m_std']:.2f}, cross-stitch (one LeNet per task, mixed after each "
                  f"block) Δm {cs['delta_m']:+.2f} ± {cs['delta_m_std']:.2f}, at "
                  f"{cs['train_seconds_per_epoch'] / max(eq['train_seconds_per_epoch'], 1e-9):.1f}x the training time "
                  "per epoch."]
    if results["pareto"]:
        lines += ["", f"Pareto sweep (seed {cfg.seeds[0]}; fixed weights w·L_left + (1-w)·L_right):", "",
                  "| w_left | left % | right % |", "|---|---|---|"]
        lines += [f"| {p['w_left']:g} | {p['left']:.2f} | {p['right']:.2f} |" for p in results["pareto"]]
    conf = results["conflict"]
    if conf:
        lines += ["", "Mean cosine between the two tasks' shared-parameter gradients during training (seed 0): "
                  + ", ".join(f"{m} {statistics.fmean(c['cosine']):+.3f}" for m, c in conf.items() if c["cosine"])]
        lines += ["", f"Conflict frequency (share of the measured steps, every {cfg.train.diag_every}th batch of seed "
                  f"{cfg.seeds[0]}, where the two task gradients have a negative cosine): "
                  + ", ".join(f"{m} {conflict_share(c['cosine']):.1%} of {len(c['cosine'])}"
                              for m, c in conf.items() if c["cosine"]) + "."]
        if conf.get("pcgrad", {}).get("cosine"):
            pc = conf["pcgrad"]["cosine"]
            lines.append(f"PCGrad projected at {conflict_share(pc):.1%} of its measured steps "
                         f"({sum(c < 0 for c in pc)} of {len(pc)}): with two tasks it projects exactly when the cosine "
                         "of its own batch's gradients is negative, and then it projects both.")
    sel = results.get("selection")
    if sel:
        lines += ["", f"Checkpoint selection by linear CKA for a new task with {cfg.probe_examples} labels:", ""]
        for t, r in sel.items():
            sc = ", ".join(f"{k} {v:.3f}" for k, v in r["cka"].items())
            tr = ", ".join(f"{k} {v:.1f}%" for k, v in r["transfer_accuracy"].items())
            lines.append(f"- new task '{t}': CKA to probe: {sc} → chose **{r['chosen']}**; ridge-probe transfer "
                         f"accuracy: {tr} (best: {r['best_by_transfer']}).")
    return "\n".join(lines)


QUICK = {"data.n_train": 512, "data.n_test": 256, "train.epochs": 1, "train.batch_size": 128, "seeds": [0],
         "methods": ["single", "equal", "cross-stitch", "uncertainty", "gradnorm", "dwa", "mgda-ub", "mgda", "pcgrad",
                     "cagrad"],
         "pareto_weights": [0.5], "cka_examples": 128, "probe_examples": 64, "probe_epochs": 3}

EXPERIMENTS = [Experiment(
    name="mtl-multimnist",
    description="MultiMNIST left/right digits: single-task vs hard sharing (equal, uncertainty, GradNorm, DWA, "
                "MGDA, MGDA-UB, PCGrad, CAGrad) vs cross-stitch soft sharing; Δm, Pareto front, conflict, CKA",
    config_cls=MultiMNISTConfig, run=run, figures=figures, summary=summary, quick=QUICK, check=_check_mnist)]
