"""The training loop shared by training, fine-tuning after pruning and k-means QAT.

:func:`train_steps` minimises ``loss_fn(x_batch, y_batch)`` over an explicit list of leaf tensors with Adam
or SGD and a cosine (or constant) learning-rate schedule, computed from the step so it needs no state.
Mini-batches are drawn with replacement from an explicit ``torch.Generator``. The loop is
:func:`adaptlab.engine.fit`: its whole state (step, parameters, module buffers such as batch-norm statistics,
optimizer state, generator state, losses) is saved every ``every`` steps into ``checkpoint``, and a run
resumed from it continues bit-for-bit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from adaptlab.engine import constant, cosine, fit, make_optimizer


def train_steps(model: nn.Module, params: Sequence[torch.Tensor], x: torch.Tensor, y: torch.Tensor, *,
                steps: int, batch_size: int, lr: float, generator: torch.Generator, optimizer: str = "adam",
                schedule: str = "cosine", weight_decay: float = 0.0, loss_fn: Callable | None = None,
                after_step: Callable | None = None, checkpoint=None, every: int = 100,
                progress: Callable | None = None, desc: str | None = None) -> list[float]:
    """Train ``params`` (leaf tensors) for ``steps`` mini-batch steps with :func:`adaptlab.engine.fit`;
    returns the per-step losses.

    Args:
        model: the module (put in train mode; its state, buffers included, is checkpointed).
        params: the tensors to optimise (e.g. ``model.parameters()`` or k-means codebooks).
        x, y: the training set on the model's device.
        steps, batch_size, lr, weight_decay: the optimisation; optimizer "adam" or "sgd" (Nesterov momentum 0.9).
        schedule: "cosine" (decay to 0 over ``steps``) or "constant".
        generator: CPU generator for batch indices (its state is checkpointed).
        loss_fn: ``loss_fn(xb, yb) -> scalar``; default cross-entropy of ``model(xb)``.
        after_step: called after each optimizer step (e.g. re-apply pruning masks).
        checkpoint: where to save every ``every`` steps and resume from (a Checkpoint or a run stage).
        progress: optional wrapper for the step iterator (a progress bar), with ``desc``.
    """
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"unknown schedule {schedule!r}; expected 'cosine' or 'constant'")
    params = list(params)
    opt = make_optimizer(params, optimizer, lr, weight_decay=weight_decay,
                         **({"momentum": 0.9, "nesterov": True} if optimizer == "sgd" else {}))
    loss_fn = loss_fn or (lambda xb, yb: F.cross_entropy(model(xb), yb))

    def batch(_):
        idx = torch.randint(0, len(x), (batch_size,), generator=generator).to(x.device)
        return x[idx], y[idx]

    def after(step: int, hist: dict) -> None:
        if step > 0 and after_step is not None:
            after_step()

    model.train()
    hist = fit(lambda b: loss_fn(*b), batch, steps=steps, optimizer=opt,
               schedule=cosine(lr, steps) if schedule == "cosine" else constant(lr), generator=generator,
               modules={"model": model}, params=params, checkpoint=checkpoint, every=every,
               callbacks=[after],
               progress=progress, desc=desc)
    model.eval()
    return hist["loss"]
