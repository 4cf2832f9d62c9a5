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

Example::

    >>> import torch
    >>> from adaptlab.models.conv4 import Conv4
    >>> from adaptlab.tasks.episodes import EpisodeSampler
    >>> x, y = torch.rand(40, 1, 28, 28), torch.arange(10).repeat_interleave(4)   # 10 classes x 4 images
    >>> episodes = EpisodeSampler(x, y, n_way=5, k_shot=1, q_query=3).sample(2, torch.Generator().manual_seed(0))
    >>> net = ProtoNet(Conv4())
    >>> loss, acc = net.loss(episodes)                     # mean query cross-entropy, accuracy
    >>> loss.shape, bool(0 <= acc <= 1)
    (torch.Size([]), True)

References:
    J. Snell, K. Swersky, R. Zemel. Prototypical networks for few-shot learning. NeurIPS 2017.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from adaptlab.tasks.episodes import Episodes


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


def episode_loss(params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], model: nn.Module,
                 support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor, query_y: torch.Tensor,
                 n_way: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Query cross-entropy and accuracy of one episode; support and query are embedded as one batch."""
    n = support_x.shape[0]
    z = functional_call(model, (params, buffers), (torch.cat([support_x, query_x]),))  # (n + nq, D)
    logits = proto_logits(z[:n], support_y, z[n:], n_way)
    return F.cross_entropy(logits, query_y), (logits.argmax(-1) == query_y).float().mean()


def protonet_loss(params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], model: nn.Module,
                  episodes: Episodes) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean query cross-entropy and accuracy over a meta-batch of episodes.

    The episodes are embedded one at a time (not vmapped): each batch-norm layer then normalises with that
    episode's statistics *and* updates its running averages, which test time uses to embed every image once,
    independently of any episode (non-transductive evaluation, as in Snell et al.).

    Args:
        params, buffers: the embedding network's tensors (``dict(model.named_parameters())``, ...).
        model: the embedding network (its own parameters are not used).
        episodes: ``(B, ...)`` stacked episodes.

    Returns:
        ``(loss, accuracy)`` scalars, each the mean over the B episodes.
    """
    out = [episode_loss(params, buffers, model, *(t[i] for t in (episodes.support_x, episodes.support_y,
                                                                episodes.query_x, episodes.query_y)),
                        episodes.n_way) for i in range(len(episodes))]
    losses, accs = torch.stack([o[0] for o in out]), torch.stack([o[1] for o in out])
    return losses.mean(), accs.mean()


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
    """Thin wrapper: an embedding model plus the pure functions above.

    Args:
        model: embedding network mapping ``(n, *item)`` to ``(n, D)``, e.g.
            ``Conv4(track_running_stats=True)``.
    """

    def __init__(self, model: nn.Module):
        self.model = model

    def params(self) -> dict[str, torch.Tensor]:
        return dict(self.model.named_parameters())

    def buffers(self) -> dict[str, torch.Tensor]:
        return dict(self.model.named_buffers())

    def loss(self, episodes: Episodes) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, accuracy)`` of the current parameters on ``episodes`` (differentiable)."""
        return protonet_loss(self.params(), self.buffers(), self.model, episodes)

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
