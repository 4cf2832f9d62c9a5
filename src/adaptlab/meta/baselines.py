"""The classic non-meta-learned rows of the few-shot table: nearest neighbours and a fine-tuned head.

* **Pixel nearest neighbour**: a query takes the label of the most similar support image (cosine similarity
  of raw pixels). With K shots, a class scores the best similarity among its K examples.
* **Feature nearest neighbour**: the same in the feature space of a network pretrained as an ordinary
  classifier on the background classes (:func:`pretrain_classifier`).
* **Fine-tuning baseline**: freeze the pretrained features and train a new linear softmax head on each
  support set — multinomial logistic regression on L2-normalised features, ``steps`` full-batch gradient steps
  from zero weights, vectorised over episodes:

  .. math:: W \\leftarrow W - \\eta\\,\\big(\\tfrac1n Z_s^\\top (\\mathrm{softmax}(Z_s W^\\top) - Y_s)\\big)^\\top
            - \\eta\\lambda W

The modified Hausdorff distance baseline of the original benchmark lives with the 20-run evaluator
(:mod:`adaptlab.eval.oneshot20`).

All ``*_logits`` functions take stacked episodes ``(B, n, ...)`` and return ``(B, nq, N)`` scores (larger is
more likely), the shape :func:`adaptlab.eval.oneshot20.episode_accuracy` expects.

References:
    O. Vinyals et al. Matching networks for one shot learning. NeurIPS 2016 (pixel/feature NN baselines).
    W.-Y. Chen, Y.-C. Liu, Z. Kira, Y.-C. F. Wang, J.-B. Huang. A closer look at few-shot classification.
    ICLR 2019 (pretrain + new head).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import vmap

from adaptlab.engine import fit, make_optimizer
from adaptlab.io import progress


def _onehot(y: torch.Tensor, n_way: int, dtype) -> torch.Tensor:  # (..., n) -> (..., n, N)
    return (y.unsqueeze(-1) == torch.arange(n_way, device=y.device)).to(dtype)


def nearest_neighbour_logits(z_support: torch.Tensor, y_support: torch.Tensor, z_query: torch.Tensor,
                             n_way: int) -> torch.Tensor:
    """Cosine nearest neighbour: class score = best cosine similarity to one of its support items.

    Args:
        z_support: (B, n, D) support vectors (pixels or features), y_support: (B, n) labels 0..N-1.
        z_query: (B, nq, D).

    Returns:
        (B, nq, N) scores.
    """
    sim = F.normalize(z_query, dim=-1) @ F.normalize(z_support, dim=-1).transpose(1, 2)   # (B, nq, n)
    mask = _onehot(y_support, n_way, torch.bool).unsqueeze(1)                             # (B, 1, n, N)
    return sim.unsqueeze(-1).masked_fill(~mask, -2.0).amax(dim=2)                          # (B, nq, N)


def logistic_head_logits(z_support: torch.Tensor, y_support: torch.Tensor, z_query: torch.Tensor,
                         n_way: int, steps: int = 100, lr: float = 1.0, weight_decay: float = 1e-3,
                         scale: float = 10.0) -> torch.Tensor:
    """Train a new softmax head per episode on frozen features, then score the queries.

    Args:
        z_support, y_support, z_query: as in :func:`nearest_neighbour_logits`.
        steps, lr, weight_decay: full-batch gradient descent on the support cross-entropy (plus L2).
        scale: features are L2-normalised then multiplied by ``scale`` (a temperature).

    Returns:
        (B, nq, N) logits of the trained heads.
    """
    zs = scale * F.normalize(z_support, dim=-1)                                  # (B, n, D)
    zq = scale * F.normalize(z_query, dim=-1)
    ys = _onehot(y_support, n_way, zs.dtype)                                     # (B, n, N)
    w = zs.new_zeros(zs.shape[0], n_way, zs.shape[-1])                           # (B, N, D)
    b = zs.new_zeros(zs.shape[0], 1, n_way)
    n = zs.shape[1]
    for _ in range(steps):
        err = (torch.softmax(zs @ w.transpose(1, 2) + b, -1) - ys) / n           # (B, n, N) dloss/dlogits
        w = w - lr * (err.transpose(1, 2) @ zs + weight_decay * w)
        b = b - lr * err.sum(1, keepdim=True)
    return zq @ w.transpose(1, 2) + b


def embed_episodes(embed, support_x: torch.Tensor, query_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Embed each episode's support and query images as one batch (per-episode batch-norm statistics).

    Args:
        embed: ``embed(images (m, ...)) -> (m, D)``, e.g. ``Conv4.embed`` or ``lambda x: x.flatten(1)``.
        support_x, query_x: (B, n, ...) and (B, nq, ...).

    Returns:
        ``(z_support (B, n, D), z_query (B, nq, D))``.
    """
    n = support_x.shape[1]

    def one(sx, qx):
        z = embed(torch.cat([sx, qx]))
        return z[:n], z[n:]

    with torch.no_grad():
        return vmap(one)(support_x, query_x)


def pretrain_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, batch: int,
                        lr: float, generator: torch.Generator, checkpoint=None, callbacks=()) -> nn.Module:
    """Ordinary supervised pretraining: Adam on the cross-entropy of random mini-batches of ``(x, y)``.

    Args:
        model: classifier whose head has one output per class of ``y``.
        x, y: (M, ...) images and (M,) labels 0..C-1.
        steps, batch, lr: schedule.
        generator: draws the mini-batches.
        checkpoint: save to and resume from (see :func:`adaptlab.engine.fit`).
        callbacks: ``callback(step, history)`` after each step (curves); ``history["loss"]`` holds the losses.
    """
    def sample(_):
        idx = torch.randint(len(x), (batch,), generator=generator).to(x.device)
        return x[idx], y[idx]

    fit(lambda b: F.cross_entropy(model(b[0]), b[1]), sample, steps=steps,
        optimizer=make_optimizer(model.parameters(), "adam", lr), generator=generator, modules={"model": model},
        checkpoint=checkpoint, callbacks=callbacks, progress=progress, desc="pretrain")
    return model
