"""Prototypical Networks: classify a query by its squared distance to each class's mean embedding.

For an episode with support set :math:`S_c` of class :math:`c` and embedding :math:`f_\\theta`,

.. math::

    p_c = \\frac{1}{|S_c|} \\sum_{x \\in S_c} f_\\theta(x), \\qquad
    \\log p(y = c \\mid x) = -d_c(x) - \\log \\sum_{c'} e^{-d_{c'}(x)}, \\qquad
    d_c(x) = \\lVert f_\\theta(x) - p_c \\rVert^2

and the meta-objective is the mean query cross-entropy over the episodes of a meta-batch. The functions here
are pure over a parameter dict (``torch.func.functional_call``). During training each episode's support and
query images are embedded as one batch, so batch norm uses that episode's statistics only — a sharded
meta-batch therefore gives exactly the same meta-gradient. At test time every image is embedded once with the
running statistics, so evaluating many episodes costs one pass over the images.

The core has the shape of every method in :mod:`adaptlab.meta`: ``protonet_loss(params, buffers, batch, *,
model) -> (loss, aux)``; :meth:`ProtoNet.functional` returns it with the model bound.

Example::

    >>> import torch
    >>> from adaptlab.models.conv4 import Conv4
    >>> from adaptlab.tasks.episodes import EpisodeSampler
    >>> x, y = torch.randn(40, 1, 16, 16), torch.arange(8).repeat_interleave(5)
    >>> episodes = EpisodeSampler(x, y, n_way=3, k_shot=1, q_query=2).sample(2, torch.Generator().manual_seed(0))
    >>> net = ProtoNet(Conv4(hidden=8, image_size=16))
    >>> loss, aux = net.loss(episodes)
    >>> loss.backward(); sorted(aux)
    ['accuracy', 'task_losses']

References:
    J. Snell, K. Swersky, R. Zemel. Prototypical networks for few-shot learning. NeurIPS 2017.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from adaptlab.tasks.episodes import Episodes

Params = dict[str, torch.Tensor]


def proto_logits(z_support: torch.Tensor, y_support: torch.Tensor, z_query: torch.Tensor,
                 n_way: int) -> torch.Tensor:
    """Negative squared distances of query embeddings to the prototypes, ``(..., nq, N)``.

    Args:
        z_support: (..., n, D) support embeddings; y_support: (..., n) labels 0..N-1; z_query: (..., nq, D).
    """
    onehot = (y_support.unsqueeze(-1) == torch.arange(n_way, device=y_support.device)).to(z_support.dtype)
    protos = onehot.transpose(-1, -2) @ z_support / onehot.sum(-2).unsqueeze(-1)        # (..., N, D)
    return -((z_query * z_query).sum(-1, keepdim=True) - 2 * z_query @ protos.transpose(-1, -2)
             + (protos * protos).sum(-1).unsqueeze(-2))


def episode_loss(params: Mapping[str, torch.Tensor], buffers: Mapping[str, torch.Tensor], support_x: torch.Tensor,
                 support_y: torch.Tensor, query_x: torch.Tensor, query_y: torch.Tensor, *, model: nn.Module,
                 n_way: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Query cross-entropy and accuracy of one episode; support and query are embedded as one batch."""
    n = support_x.shape[0]
    z = functional_call(model, (dict(params), dict(buffers)), (torch.cat([support_x, query_x]),))  # (n + nq, D)
    logits = proto_logits(z[:n], support_y, z[n:], n_way)
    return F.cross_entropy(logits, query_y), (logits.argmax(-1) == query_y).float().mean()


def protonet_loss(params: Mapping[str, torch.Tensor], buffers: Mapping[str, torch.Tensor], batch: Episodes, *,
                  model: nn.Module) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean query cross-entropy over a meta-batch of episodes, and the accuracy.

    The episodes are embedded one at a time (not vmapped): each batch-norm layer then normalises with that
    episode's statistics *and* updates its running averages, which test time uses to embed every image once,
    independently of any episode (non-transductive evaluation, as in Snell et al.).

    Args:
        params, buffers: the embedding network's tensors (``dict(model.named_parameters())``, ...).
        batch: ``(B, ...)`` stacked :class:`~adaptlab.tasks.episodes.Episodes`.
        model: the embedding network (only its forward code is used).

    Returns:
        ``(loss, aux)``: the mean over the B episodes of the query cross-entropy and ``aux = {"accuracy":
        scalar, "task_losses": (B,)}``.
    """
    out = [episode_loss(params, buffers, *(t[i] for t in (batch.support_x, batch.support_y, batch.query_x,
                                                          batch.query_y)), model=model, n_way=batch.n_way)
           for i in range(len(batch))]
    losses, accs = torch.stack([o[0] for o in out]), torch.stack([o[1] for o in out])
    return losses.mean(), {"accuracy": accs.mean(), "task_losses": losses}


@torch.no_grad()
def embed_all(model: nn.Module, x: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """Embed ``(M, ...)`` images in eval mode (batch-norm running statistics), in chunks: ``(M, D)``."""
    was = model.training
    model.eval()
    try:
        return torch.cat([model(x[i: i + chunk]) for i in range(0, len(x), chunk)])
    finally:
        model.train(was)


class ProtoNet:
    """Thin wrapper: an embedding model plus the pure functions above; it never owns the outer optimizer.

    Args:
        model: embedding network mapping ``(n, *item)`` to ``(n, D)``, e.g.
            ``Conv4(track_running_stats=True)``.
    """

    def __init__(self, model: nn.Module):
        self.model = model

    def params(self) -> Params:
        return dict(self.model.named_parameters())

    def buffers(self) -> Params:
        return dict(self.model.named_buffers())

    def parameters(self) -> list[torch.Tensor]:
        """Everything the outer optimizer updates: the embedding network's parameters."""
        return list(self.model.parameters())

    def functional(self) -> Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        """The pure core ``loss(params, buffers, batch) -> (loss, aux)`` with the model bound."""
        return functools.partial(protonet_loss, model=self.model)

    def loss(self, batch: Episodes) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(loss, aux)`` of the current parameters on ``batch`` (differentiable); ``aux["accuracy"]``."""
        return protonet_loss(self.params(), self.buffers(), batch, model=self.model)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Test-time embeddings ``(M, D)`` of ``(M, ...)`` images."""
        return embed_all(self.model, x)

    @torch.no_grad()
    def predict(self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor,
                n_way: int) -> torch.Tensor:
        """Logits ``(B, nq, N)`` for stacked episodes of images ``(B, n, *item)``."""
        b, n, nq = support_x.shape[0], support_x.shape[1], query_x.shape[1]
        z = self.embed(torch.cat([support_x.flatten(0, 1), query_x.flatten(0, 1)]))
        return proto_logits(z[: b * n].view(b, n, -1), support_y, z[b * n:].view(b, nq, -1), n_way)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
