"""``quantize-mnist``: k-means quantization with QAT, and int8 integer-only inference, on three small CNNs.

For each model (VGG-style and LeNet-style CNNs on MNIST, the MNIST-1D reference CNN on MNIST-1D): train it;
k-means quantize every conv/linear weight at 8, 4 and 2 bits, measure accuracy, then train the centroids
with labels fixed (QAT) and measure again; fold batch norm, calibrate activation ranges on a few training
batches and run the int8 integer-only model, on the exact reference kernels and on the fast path (PyTorch's
quantized kernels fed with the same integers; how many logits differ is counted); compare with PyTorch's own
int8 path (``torch.ao.quantization``) on the same trained model: accuracy and CPU latency at batch 1 and 64.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from adaptlab.config import BaseConfig, check
from adaptlab.experiments._compress_common import (
    DataCfg,
    Split,
    TrainCfg,
    check_mnist,
    latency_pair,
    mnist1d_split,
    mnist_split,
    train_stage,
)
from adaptlab.io import save_figure
from adaptlab.runner import Experiment, Stages

MODELS = ("vgg", "lenet", "mnist1d")
LABELS = {"vgg": "VGG (MNIST)", "lenet": "LeNet (MNIST)", "mnist1d": "MNIST-1D CNN"}


@dataclass
class KMeansCfg:
    bits: list[int] = field(default_factory=lambda: [8, 4, 2])
    iters: int = 30                  # Lloyd iterations (stops early once labels are stable)
    qat_steps: int = 200
    qat_lr: float = 1e-4             # Adam on the centroids; they sit near trained weights already

    def __post_init__(self):
        for b in self.bits:
            check(isinstance(b, int) and 1 <= b <= 16, "kmeans.bits", b, "integers in 1..16")
        check(self.iters >= 1, "kmeans.iters", self.iters, "an integer >= 1")
        check(self.qat_steps >= 0, "kmeans.qat_steps", self.qat_steps, "an integer >= 0")
        check(self.qat_lr > 0, "kmeans.qat_lr", self.qat_lr, "a positive number")


@dataclass
class Int8Cfg:
    calib_batches: int = 4           # a few training batches suffice to calibrate min/max ranges
    calib_batch_size: int = 128

    def __post_init__(self):
        check(self.calib_batches >= 1, "int8.calib_batches", self.calib_batches, "an integer >= 1")
        check(self.calib_batch_size >= 1, "int8.calib_batch_size", self.calib_batch_size, "an integer >= 1")


@dataclass
class Train1dCfg(TrainCfg):
    """The MNIST-1D CNN's training: the MNIST-1D paper's recipe, Adam, constant learning rate 1e-2, batch 100,
    6000 steps. (Cosine decay overfits the 4000 training signals here: 91.2% instead of ~94% test accuracy.)"""

    SECTION = "train1d"
    steps: int = 6000
    batch_size: int = 100
    lr: float = 1e-2
    schedule: Literal["cosine", "constant"] = "constant"


@dataclass
class QuantizeMnistConfig(BaseConfig):
    models: list[str] = field(default_factory=lambda: list(MODELS))
    data: DataCfg = field(default_factory=DataCfg)
    widths: list[int] = field(default_factory=lambda: [16, 32, 32, 64])   # VGG conv widths
    train: TrainCfg = field(default_factory=TrainCfg)                      # VGG and LeNet on MNIST
    train1d: Train1dCfg = field(default_factory=Train1dCfg)                # the MNIST-1D CNN
    mnist1d_samples: int = 5000      # the paper's dataset size (4000 train / 1000 test)
    kmeans: KMeansCfg = field(default_factory=KMeansCfg)
    int8: Int8Cfg = field(default_factory=Int8Cfg)
    latency_repeats: int = 30

    def __post_init__(self):
        super().__post_init__()
        for m in self.models:
            check(m in MODELS, "models", m, f"names among {', '.join(MODELS)}")
        check(len(self.models) >= 1, "models", self.models, "at least one model")
        check(100 <= self.mnist1d_samples <= 1_000_000, "mnist1d_samples", self.mnist1d_samples,
              "an integer in 100..1000000")
        check(1 <= self.latency_repeats <= 10000, "latency_repeats", self.latency_repeats, "an integer in 1..10000")
        check(1 <= len(self.widths) <= 6 and all(w >= 1 for w in self.widths), "widths", self.widths,
              "1 to 6 positive conv widths")


def _build(name: str, cfg: QuantizeMnistConfig):
    from adaptlab.models import create as build_model

    return build_model(name, widths=cfg.widths) if name == "vgg" else build_model(name)


def _kmeans(name, model, data: Split, cfg: QuantizeMnistConfig, stages: Stages, train_cfg: TrainCfg) -> dict:
    from adaptlab.compress import kmeans as km
    from adaptlab.compress import size as sz
    from adaptlab.compress.prune import prunable_names
    from adaptlab.eval.metrics import accuracy

    names = prunable_names(model)
    out = {}
    for bits in cfg.kmeans.bits:
        m = copy.deepcopy(model)
        params = {n: p.detach() for n, p in m.named_parameters()}
        codes = km.quantize_model_kmeans(params, names, bits, cfg.kmeans.iters)
        books = {n: c.codebook.clone().requires_grad_(True) for n, c in codes.items()}

        def fwd(x, m=m, params=params, codes=codes, books=books):
            return torch.func.functional_call(m, km.kmeans_params(params, codes, books), (x,))

        before = accuracy(fwd, data.test_x, data.test_y)
        qat = TrainCfg(steps=cfg.kmeans.qat_steps, batch_size=train_cfg.batch_size, lr=cfg.kmeans.qat_lr,
                       checkpoint_every=train_cfg.checkpoint_every)
        train_stage(stages, f"qat-{name}-{bits}bit", m, data, qat, cfg.seed + 10 + bits, leaves=books.values(),
                    loss_fn=lambda xb, yb, fwd=fwd: F.cross_entropy(fwd(xb), yb))
        decoded = km.kmeans_params(params, codes, {n: b.detach() for n, b in books.items()})
        out[str(bits)] = {
            "test_acc_before_qat": before, "test_acc_after_qat": accuracy(fwd, data.test_x, data.test_y),
            "size_mib": sz.mib(sz.kmeans_bits(dict(m.named_parameters()), dict.fromkeys(names, bits))),
            "distinct_values_max": max(int(decoded[n].unique().numel()) for n in names)}
    return out


def _int8(model, data: Split, cfg: QuantizeMnistConfig) -> dict:
    from adaptlab.compress import qops
    from adaptlab.compress.integer import convert_integer
    from adaptlab.compress.torch_ref import torch_int8
    from adaptlab.eval.metrics import accuracy

    g = torch.Generator().manual_seed(cfg.seed + 100)
    b = cfg.int8.calib_batch_size
    idx = torch.randperm(len(data.train_x), generator=g)[:cfg.int8.calib_batches * b].to(data.train_x.device)
    calib = [data.train_x[idx[i:i + b]] for i in range(0, len(idx), b)]
    qm = convert_integer(model.cpu(), [c.cpu() for c in calib])

    def shaped(x):  # what torch's flat Sequential expects: an explicit channel dimension
        return x.unsqueeze(1)

    def ref(x):
        return qm.forward_int(x, path="reference")

    tq = torch_int8(model.cpu(), [shaped(c.cpu()) for c in calib])
    tx, ty = data.test_x.cpu(), data.test_y.cpu()
    example = tx[:64]
    # fast path = PyTorch's quantized kernels where an engine passes qops.probe, else the reference again
    fast_logits, ref_logits = qm.forward_int(tx), ref(tx)
    step = (fast_logits.int() - ref_logits.int()).abs()
    return {"test_acc_int8_ours": accuracy(ref, tx, ty),
            "test_acc_int8_fast": accuracy(qm.forward_int, tx, ty),
            "test_acc_int8_torch": accuracy(lambda x: tq(shaped(x)), tx, ty),
            "int8_fast_vs_reference": {"kernels": qops.fast_engine() or "reference (no quantized engine)",
                                       "logits": step.numel(), "logits_differing": int((step > 0).sum()),
                                       "max_step": int(step.max()),
                                       "predictions_differing": int((fast_logits.argmax(1)
                                                                     != ref_logits.argmax(1)).sum())},
            "size_mib_int8_ours": qm.size_bits() / (8 * 1024 * 1024),
            "latency": {"float": latency_pair(model, example, cfg.latency_repeats),
                        "int8_ours": latency_pair(ref, example, cfg.latency_repeats),
                        "int8_fast": latency_pair(qm.forward_int, example, cfg.latency_repeats),
                        "int8_torch": latency_pair(lambda x: tq(shaped(x)), example, cfg.latency_repeats)}}


def run(cfg: QuantizeMnistConfig, out_dir: Path, resume: bool = False) -> dict:
    from adaptlab.compress import size as sz
    from adaptlab.eval.metrics import accuracy

    stages = Stages(out_dir, resume)
    res: dict = {"models": {}}
    mnist = None
    for name in cfg.models:
        if name == "mnist1d":
            data, tcfg = mnist1d_split(cfg.device, cfg.mnist1d_samples), cfg.train1d
        else:
            mnist = mnist or mnist_split(cfg.data, cfg.device)
            data, tcfg = mnist, cfg.train
        torch.manual_seed(cfg.seed)
        model = _build(name, cfg).to(cfg.device)
        train_stage(stages, f"train-{name}", model, data, tcfg, cfg.seed)
        r = {"test_acc_float": accuracy(model, data.test_x, data.test_y),
             "size_mib_float": sz.mib(sz.dense_bits(dict(model.named_parameters()))),
             "n_test": len(data.test_y)}
        r["kmeans"] = _kmeans(name, model, data, cfg, stages, tcfg)
        r.update(_int8(model, data, cfg))
        res["models"][name] = r
    return res


# ------------------------------------------------------------------------------------------- report


def figures(res: dict, cfg: QuantizeMnistConfig, out_dir: Path) -> list[str]:
    import matplotlib.pyplot as plt

    names = [n for n in MODELS if n in res["models"]]   # results.json stores keys sorted; plot in model order
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.4), squeeze=False, layout="constrained")
    for ax, n in zip(axes[0], names):
        r = res["models"][n]
        bits = sorted(int(b) for b in r["kmeans"])
        ax.axhline(100 * r["test_acc_float"], color="k", ls=":", lw=1, label="float32")
        for key, style, label in (("test_acc_before_qat", "o--", "k-means"), ("test_acc_after_qat", "s-",
                                                                             "k-means + QAT")):
            ax.plot(bits, [100 * r["kmeans"][str(b)][key] for b in bits], style, label=label)
        ax.set_xticks(bits)
        ax.set(xlabel="bits per weight", ylabel="test accuracy (%)", title=LABELS[n])
        ax.legend(fontsize=8)
    fig.suptitle("k-means quantization before and after training the centroids")
    save_figure(fig, out_dir / "kmeans.png")

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), layout="constrained")
    kinds = (("float", "test_acc_float", "float32"),
             ("int8_ours", "test_acc_int8_ours", "int8 integer-only, reference kernels"),
             ("int8_fast", "test_acc_int8_fast", "int8 integer-only, fast path"),
             ("int8_torch", "test_acc_int8_torch", "int8 torch.ao"))
    x = torch.arange(len(names)).float()
    for i, (key, acc_key, label) in enumerate(kinds):
        w = 0.2
        off = (i - (len(kinds) - 1) / 2) * w
        axes[0].bar(x + off, [100 * res["models"][n][acc_key] for n in names], w, label=label)
        for j, batch in enumerate(("batch1", "batch64")):
            axes[1 + j].bar(x + off, [res["models"][n]["latency"][key][batch]["median_ms"] for n in names],
                            w, label=label)
    lo = min(100 * min(res["models"][n][k] for _, k, _ in kinds) for n in names)
    axes[0].set(ylabel="test accuracy (%)", ylim=(max(0, lo - 2), 100), title="Accuracy")
    axes[1].set(ylabel="ms (median, 1 thread)", title="CPU latency, batch 1")
    axes[2].set(ylabel="ms (median, 1 thread)", title="CPU latency, batch 64")
    for ax in axes:
        ax.set_xticks(x.tolist(), [LABELS[n] for n in names], fontsize=8)
    axes[0].legend(fontsize=7)
    save_figure(fig, out_dir / "int8.png")
    return ["kmeans.png", "int8.png"]


def summary(res: dict, cfg: QuantizeMnistConfig) -> str:
    lines = ["| model | float32 | int8 reference | int8 fast | int8 torch.ao | fast vs reference: logits differing "
             "(max step), predictions differing | latency b1 float / reference / fast / torch (ms) | "
             "latency b64 float / reference / fast / torch (ms) |", "|---|---|---|---|---|---|---|---|"]
    for n, r in res["models"].items():
        lat, d = r["latency"], r["int8_fast_vs_reference"]

        def fmt(batch, lat=lat):
            return " / ".join(f"{lat[k][batch]['median_ms']:.2f}"
                              for k in ("float", "int8_ours", "int8_fast", "int8_torch"))

        lines.append(f"| {LABELS[n]} | {100 * r['test_acc_float']:.2f}% | {100 * r['test_acc_int8_ours']:.2f}% | "
                     f"{100 * r['test_acc_int8_fast']:.2f}% | {100 * r['test_acc_int8_torch']:.2f}% | "
                     f"{d['logits_differing']} of {d['logits']} ({d['max_step']}), {d['predictions_differing']} | "
                     f"{fmt('batch1')} | {fmt('batch64')} |")
    lines += ["", "| model | bits | size (MiB) | k-means | k-means + QAT |", "|---|---|---|---|---|"]
    for n, r in res["models"].items():
        lines.append(f"| {LABELS[n]} | 32 | {r['size_mib_float']:.3f} | {100 * r['test_acc_float']:.2f}% | - |")
        for b, k in sorted(r["kmeans"].items(), key=lambda kv: -int(kv[0])):
            lines.append(f"| {LABELS[n]} | {b} | {k['size_mib']:.3f} | {100 * k['test_acc_before_qat']:.2f}% | "
                         f"{100 * k['test_acc_after_qat']:.2f}% |")
    return "\n".join(lines + ["", *_answers(res)])


def _answers(res: dict) -> list[str]:
    """The lab's questions, answered from this run's numbers."""
    lines = ["## Answers", ""]
    for n, r in res["models"].items():
        km = sorted(r["kmeans"].items(), key=lambda kv: int(kv[0]))
        distinct = ", ".join(f"{b} bits: {k['distinct_values_max']} (at most 2^{b} = {2 ** int(b)})" for b, k in km)
        lines.append(f"- {LABELS[n]}, distinct weight values (the most in any layer): {distinct}.")
        if "8" in r["kmeans"]:  # equal bits: 8-bit k-means codebook vs 8-bit linear (affine) int8
            k8 = r["kmeans"]["8"]
            lines.append(f"  At 8 bits, k-means {100 * k8['test_acc_before_qat']:.2f}% ({k8['size_mib']:.3f} MiB with "
                         f"its float codebook) vs linear int8 {100 * r['test_acc_int8_ours']:.2f}% "
                         f"({r['size_mib_int8_ours']:.3f} MiB): k-means places its levels where the weights are, "
                         "linear spreads 256 even steps over the range; linear also runs on integer kernels.")
    return lines


EXPERIMENTS = [Experiment(
    name="quantize-mnist",
    description="k-means quantization (8/4/2 bits, QAT) and int8 integer-only inference of three small CNNs",
    config_cls=QuantizeMnistConfig, run=run, figures=figures, summary=summary, check=check_mnist,
    quick={"models": ["lenet", "mnist1d"], "data.train_size": 2000, "data.val_size": 300,
           "data.test_size": 500, "train.steps": 40, "train.batch_size": 64, "train1d.steps": 50,
           "mnist1d_samples": 1000, "kmeans.iters": 5, "kmeans.qat_steps": 3,
           "int8.calib_batches": 1, "latency_repeats": 3},
)]
