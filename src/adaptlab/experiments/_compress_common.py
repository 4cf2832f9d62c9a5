"""Pieces shared by the ``prune-mnist`` and ``quantize-mnist`` experiments: data splits, training configs,
resumable training stages (on :class:`adaptlab.runner.Stages`) and latency helpers. (A leading underscore
keeps this module out of the registry.)"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from adaptlab.config import check
from adaptlab.io import progress
from adaptlab.runner import Stages


@dataclass
class TrainCfg:
    """Mini-batch training (Adam or SGD with Nesterov momentum; cosine learning-rate decay or constant)."""

    steps: int = 1500          # about 3 epochs of MNIST at batch 128: ~99% test accuracy for the VGG
    batch_size: int = 128
    lr: float = 2e-3
    optimizer: Literal["adam", "sgd"] = "adam"
    weight_decay: float = 0.0
    schedule: Literal["cosine", "constant"] = "cosine"
    checkpoint_every: int = 100

    SECTION = "train"  # the config section this class is (errors name SECTION.key)

    def __post_init__(self):
        s = self.SECTION
        check(0 <= self.steps <= 10_000_000, f"{s}.steps", self.steps, "an integer in 0..10000000")
        check(1 <= self.batch_size <= 65536, f"{s}.batch_size", self.batch_size, "an integer in 1..65536")
        check(0 < self.lr <= 10, f"{s}.lr", self.lr, "a positive number <= 10")
        check(0 <= self.weight_decay <= 1, f"{s}.weight_decay", self.weight_decay, "a number in [0, 1]")
        check(self.checkpoint_every >= 1, f"{s}.checkpoint_every", self.checkpoint_every, "an integer >= 1")


@dataclass
class DataCfg:
    """MNIST split: the last ``val_size`` training images are held out for the sensitivity scan / calibration
    checks; ``train_size`` / ``test_size`` = 0 use all of the rest / all 10000 test images."""

    train_size: int = 0
    val_size: int = 2000
    test_size: int = 0

    def __post_init__(self):
        check(0 <= self.train_size <= 58000, "data.train_size", self.train_size, "0 (all) .. 58000")
        check(100 <= self.val_size <= 10000, "data.val_size", self.val_size, "100 .. 10000")
        check(0 <= self.test_size <= 10000, "data.test_size", self.test_size, "0 (all) .. 10000")


@dataclass
class Split:
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def mnist_split(cfg: DataCfg, device: str) -> Split:
    from adaptlab.data.mnist import load_mnist

    ds = load_mnist()
    n_train = 60000 - cfg.val_size
    tr = slice(0, cfg.train_size or n_train)
    te = slice(0, cfg.test_size or 10000)

    def dev(t):
        return t.to(device)

    return Split(dev(ds.train_x[tr]), dev(ds.train_y[tr]),
                 dev(ds.train_x[n_train:]), dev(ds.train_y[n_train:]),
                 dev(ds.test_x[te]), dev(ds.test_y[te]))


def mnist1d_split(device: str, num_samples: int = 5000) -> Split:
    """MNIST-1D 80% / 20% (4000 / 1000 by default, the paper's split); the last 10% of the training
    signals double as validation."""
    from adaptlab.data.mnist1d import load_mnist1d

    ds = load_mnist1d(num_samples)
    n_val = len(ds.train_y) // 8
    return Split(ds.train_x.to(device), ds.train_y.to(device), ds.train_x[-n_val:].to(device),
                 ds.train_y[-n_val:].to(device), ds.test_x.to(device), ds.test_y.to(device))


def train_stage(stages: Stages, name: str, model: torch.nn.Module, data: Split, cfg: TrainCfg, seed: int,
                leaves: list[torch.Tensor] | None = None, **kwargs) -> dict:
    """Train ``leaves`` (default: the model's parameters) as the resumable stage ``name``.

    Returns and stores ``{"state": model state_dict, "leaves": [...], "losses": [...]}``; when the stage had
    already finished in an interrupted run, the stored values are loaded into ``model`` and ``leaves``.
    """
    from adaptlab.compress.train import train_steps

    leaves = list(model.parameters()) if leaves is None else list(leaves)

    def fn(checkpoint):
        g = torch.Generator().manual_seed(seed)
        losses = train_steps(model, leaves, data.train_x, data.train_y,
                             steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, generator=g,
                             optimizer=cfg.optimizer, weight_decay=cfg.weight_decay, schedule=cfg.schedule,
                             checkpoint=checkpoint, every=cfg.checkpoint_every, progress=progress, desc=name, **kwargs)
        return {"state": {k: v.clone() for k, v in model.state_dict().items()},
                "leaves": [p.detach().clone() for p in leaves], "losses": losses}

    out = stages.run(name, fn)
    model.load_state_dict(out["state"])
    with torch.no_grad():
        for p, v in zip(leaves, out["leaves"]):
            p.copy_(v)
    model.eval()
    return out


def latency_pair(fn: Callable, example: torch.Tensor, repeats: int) -> dict:
    """CPU latency of ``fn`` at batch 1 and 64 (median / p10 / p90 ms), one intra-op thread.

    One thread makes the numbers comparable across runs on a shared machine; ``threads`` is recorded.
    """
    from adaptlab.compress.size import latency

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reps = max(3, repeats)
        return {"batch1": latency(fn, example[:1], repeats=reps),
                "batch64": latency(fn, example[:64], repeats=max(3, reps // 3)), "threads": 1}
    finally:
        torch.set_num_threads(prev)


def mean_loss_curve(losses: list[float], points: int = 60) -> list[float]:
    """Losses averaged over ``points`` equal windows (for small plots in results.json)."""
    if not losses:
        return []
    w = max(1, len(losses) // points)
    return [sum(losses[i:i + w]) / len(losses[i:i + w]) for i in range(0, len(losses), w)]


def check_mnist(cfg) -> None:
    """MNIST (and MNIST-1D when a config names the ``mnist1d`` model) present before the run folder exists."""
    from adaptlab.data.mnist import load_mnist

    load_mnist()
    if "mnist1d" in getattr(cfg, "models", ()):
        from adaptlab.data.mnist1d import INSTALL_HINT
        from adaptlab.errors import DataError

        try:
            import mnist1d  # noqa: F401
        except ImportError:
            raise DataError(f"MNIST-1D needs the mnist1d generator; run: {INSTALL_HINT}") from None
