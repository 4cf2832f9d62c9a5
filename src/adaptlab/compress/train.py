"""Training and evaluation loops shared by training, fine-tuning after pruning and k-means QAT.

:func:`train_steps` minimises ``loss_fn(x_batch, y_batch)`` over an explicit list of leaf tensors with Adam
or SGD and a cosine (or constant) learning-rate schedule, computed from the step so it needs no state. Mini-batches are
drawn with replacement from an explicit ``torch.Generator``. Its whole state (step, parameters, module
buffers such as batch-norm statistics, optimizer state, generator state, losses) can be saved every
``every`` steps and given back as ``resume`` to continue bit-for-bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def accuracy(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, batch: int = 1000
             ) -> float:
    """Top-1 accuracy in [0, 1] of ``fn`` (a module in eval mode or any ``x -> logits``) on (x, y)."""
    if isinstance(fn, nn.Module):
        fn.eval()
    correct = 0
    for i in range(0, len(x), batch):
        correct += int((fn(x[i:i + batch]).argmax(dim=1) == y[i:i + batch]).sum())
    return correct / max(1, len(x))


def cosine_lr(lr: float, step: int, steps: int) -> float:
    """lr * (1 + cos(pi step / steps)) / 2."""
    return lr * 0.5 * (1.0 + math.cos(math.pi * step / max(1, steps)))


def make_optimizer(params: Sequence[torch.Tensor], name: str, lr: float, weight_decay: float = 0.0):
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True)
    raise ValueError(f"unknown optimizer {name!r}; expected 'adam' or 'sgd'")


def train_steps(model: nn.Module, params: Sequence[torch.Tensor], x: torch.Tensor, y: torch.Tensor, *,
                steps: int, batch_size: int, lr: float, generator: torch.Generator, optimizer: str = "adam",
                schedule: str = "cosine",
                weight_decay: float = 0.0, loss_fn: Callable | None = None,
                after_step: Callable | None = None,
                resume: dict | None = None, save: Callable[[dict], None] | None = None, every: int = 100,
                progress: Callable | None = None) -> list[float]:
    """Train ``params`` (leaf tensors) for ``steps`` mini-batch steps; returns the per-step losses.

    Args:
        model: the module (put in train mode; its buffers are checkpointed).
        params: the tensors to optimise (e.g. ``model.parameters()`` or k-means codebooks).
        x, y: the training set on the model's device.
        steps, batch_size, lr, optimizer ("adam" | "sgd"), weight_decay: the optimisation.
        schedule: "cosine" (decay to 0 over ``steps``) or "constant".
        generator: CPU generator for batch indices (its state is checkpointed).
        loss_fn: ``loss_fn(xb, yb) -> scalar``; default cross-entropy of ``model(xb)``.
        after_step: called after each optimizer step (e.g. re-apply pruning masks).
        resume: a state previously passed to ``save``; training continues from it.
        save: ``save(state)`` every ``every`` steps.
        progress: optional wrapper for the step iterator (a progress bar).
    """
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"unknown schedule {schedule!r}; expected 'cosine' or 'constant'")
    params = list(params)
    opt = make_optimizer(params, optimizer, lr, weight_decay)
    loss_fn = loss_fn or (lambda xb, yb: F.cross_entropy(model(xb), yb))
    start, losses = 0, []
    if resume is not None:
        with torch.no_grad():
            for p, v in zip(params, resume["params"]):
                p.copy_(v)
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["opt"])
        generator.set_state(resume["gen"])
        start, losses = resume["step"], list(resume["losses"])
    model.train()
    it = range(start, steps)
    for step in (progress(it, total=steps, initial=start) if progress else it):
        for g in opt.param_groups:
            g["lr"] = cosine_lr(lr, step, steps) if schedule == "cosine" else lr
        idx = torch.randint(0, len(x), (batch_size,), generator=generator).to(x.device)
        loss = loss_fn(x[idx], y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if after_step is not None:
            after_step()
        losses.append(float(loss.detach()))
        if save is not None and (step + 1) % every == 0 and step + 1 < steps:
            save({"step": step + 1, "params": [p.detach().clone() for p in params],
                  "model": {k: v.clone() for k, v in model.state_dict().items()}, "opt": opt.state_dict(),
                  "gen": generator.get_state(), "losses": list(losses)})
    model.eval()
    return losses
