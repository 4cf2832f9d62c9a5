"""N-way K-shot episodes over any labelled collection, sampled a whole meta-batch at a time.

An episode draws ``N`` distinct classes, then ``K`` support and ``Q`` query examples of each (without
replacement within the class); labels are remapped to ``0..N-1`` in the order the classes were drawn. The
sampler draws ``B`` episodes at once with one ``argsort`` over random keys, so a meta-batch is a handful of
tensor operations whatever ``B`` is, and everything comes from the caller's ``torch.Generator``.

Class splits never leak: :func:`split_classes` partitions class ids (or use alphabet lists for Omniglot), and an
:class:`EpisodeSampler` only ever draws from the classes it was given.

Example::

    >>> x, y = torch.randn(100, 1, 28, 28), torch.arange(10).repeat_interleave(10)
    >>> s = EpisodeSampler(x, y, n_way=5, k_shot=1, q_query=3)
    >>> ep = s.sample(4, torch.Generator().manual_seed(0))
    >>> ep.support_x.shape, ep.query_y.shape
    (torch.Size([4, 5, 1, 28, 28]), torch.Size([4, 15]))

References:
    O. Vinyals, C. Blundell, T. Lillicrap, K. Kavukcuoglu, D. Wierstra. Matching networks for one shot
    learning. NeurIPS 2016 (the episodic protocol).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from adaptlab.errors import ConfigError
from adaptlab.tasks.batch import SupportQuery


@dataclass(frozen=True)
class Episodes(SupportQuery):
    """A meta-batch of ``B`` N-way K-shot episodes as stacked tensors (a :class:`SupportQuery`).

    Attributes:
        support_x: (B, N*K, *item) support inputs, class-major (class 0's K shots first).
        support_y: (B, N*K) int64 labels in 0..N-1.
        query_x: (B, N*Q, *item).
        query_y: (B, N*Q).
        classes: (B, N) original class ids (for checking splits).
    """

    classes: torch.Tensor

    @property
    def n_way(self) -> int:
        return self.classes.shape[1]


def split_classes(classes: Sequence[int] | torch.Tensor, fractions: Sequence[float],
                  generator: torch.Generator) -> list[torch.Tensor]:
    """Partition class ids into disjoint random groups with the given fractions (summing to 1)."""
    classes = torch.as_tensor(classes)
    if abs(sum(fractions) - 1) > 1e-9 or min(fractions) < 0:
        raise ConfigError(f"fractions={list(fractions)} is invalid; expected non-negative values summing to 1")
    perm = classes[torch.randperm(len(classes), generator=generator)]
    bounds = torch.tensor([0.0, *fractions]).cumsum(0).mul(len(classes)).round().long().tolist()
    return [perm[lo:hi].sort().values for lo, hi in zip(bounds[:-1], bounds[1:])]


class EpisodeSampler:
    """Samples N-way K-shot Q-query episodes from ``(x, y)`` restricted to ``classes``.

    Args:
        x: (M, *item) inputs (any shape per item; kept on its device).
        y: (M,) integer class ids.
        n_way, k_shot, q_query: episode shape; every used class needs at least ``k_shot + q_query`` items.
        classes: the class ids this sampler may draw (default: all in ``y``). Pass disjoint sets for
            meta-train / meta-test.
        transform: optional ``f(x_batch, generator) -> x_batch`` applied to the sampled inputs (augmentation).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, n_way: int, k_shot: int, q_query: int,
                 classes: Sequence[int] | torch.Tensor | None = None, transform=None):
        y = torch.as_tensor(y).long().cpu()
        self.x, self.n_way, self.k_shot, self.q_query, self.transform = x, n_way, k_shot, q_query, transform
        self.classes = torch.unique(y) if classes is None else torch.unique(torch.as_tensor(classes).long())
        if n_way < 1 or k_shot < 1 or q_query < 0:
            raise ConfigError(f"episode n_way={n_way}, k_shot={k_shot}, q_query={q_query} is invalid; expected "
                              "n_way>=1, k_shot>=1, q_query>=0")
        if n_way > len(self.classes):
            raise ConfigError(f"n_way={n_way} is invalid; expected at most the {len(self.classes)} classes here")
        members = [torch.nonzero(y == c).flatten() for c in self.classes.tolist()]
        counts = torch.tensor([len(m) for m in members])
        if counts.min() < k_shot + q_query:
            raise ConfigError(f"k_shot+q_query={k_shot + q_query} is invalid; the smallest class here has "
                              f"{int(counts.min())} items")
        self.counts = counts                                                   # (C,)
        self.table = torch.zeros(len(members), int(counts.max()), dtype=torch.long)  # (C, max) item ids
        for i, m in enumerate(members):
            self.table[i, :len(m)] = m

    def sample_indices(self, num_tasks: int, generator: torch.Generator | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Item ids ``(B, N, K+Q)`` and class positions ``(B, N)`` (into ``self.classes``) of B episodes."""
        c, width = self.table.shape
        cls = torch.rand(num_tasks, c, generator=generator).argsort(dim=1)[:, : self.n_way]    # (B, N)
        keys = torch.rand(num_tasks, self.n_way, width, generator=generator)                 # (B, N, max)
        keys = keys.masked_fill(torch.arange(width) >= self.counts[cls].unsqueeze(-1), 2.0)  # padding last
        pick = keys.argsort(dim=-1)[..., : self.k_shot + self.q_query]                     # (B, N, K+Q)
        return self.table[cls.unsqueeze(-1), pick], cls

    def sample(self, num_tasks: int, generator: torch.Generator | None = None) -> Episodes:
        """``num_tasks`` episodes as :class:`Episodes` (inputs on ``x``'s device, labels 0..N-1)."""
        ids, cls = self.sample_indices(num_tasks, generator)
        n, k, q = self.n_way, self.k_shot, self.q_query
        items = self.x[ids.to(self.x.device)]                                 # (B, N, K+Q, *item)
        if self.transform is not None:
            items = self.transform(items.reshape(-1, *items.shape[3:]), generator).reshape(items.shape)
        labels = torch.arange(n, device=self.x.device).view(1, n, 1)
        sy = labels.expand(num_tasks, n, k).reshape(num_tasks, n * k)
        qy = labels.expand(num_tasks, n, q).reshape(num_tasks, n * q)
        return Episodes(items[:, :, :k].reshape(num_tasks, n * k, *items.shape[3:]), sy,
                        items[:, :, k:].reshape(num_tasks, n * q, *items.shape[3:]), qy,
                        self.classes[cls])
