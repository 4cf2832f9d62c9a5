"""Multi-task architectures: hard parameter sharing with configurable depth, and cross-stitch soft sharing.

Both take a *list of blocks* (any ``nn.Module``\\ s applied in sequence) and one head per task, so they wrap
any backbone. Both return ``(outputs, features)``: a dict task -> head output and the last shared
representation (what MGDA-UB differentiates against).

References:
    R. Caruana. Multitask Learning. Machine Learning 1997 (hard parameter sharing).
    A. Søgaard, Y. Goldberg. Deep multi-task learning with low level tasks supervised at lower layers.
    ACL 2016 (a task's head attached below the top).
    I. Misra, A. Shrivastava, A. Gupta, M. Hebert. Cross-stitch Networks for Multi-task Learning. CVPR 2016.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn


def _fresh_copy(module: nn.Module) -> nn.Module:
    """A deep copy with re-initialised parameters (so private copies do not start identical)."""
    clone = copy.deepcopy(module)
    for m in clone.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return clone


class HardSharing(nn.Module):
    """Shared trunk of ``shared_depth`` blocks, then per-task copies of the remaining blocks and a head.

    Task t reads the output of block ``attach[t]`` (default: all blocks). Blocks below ``shared_depth`` are
    shared; blocks from ``shared_depth`` up to ``attach[t]`` are private to t. ``attach[t] < shared_depth``
    puts t's head on a lower shared layer (e.g. part-of-speech tagging below chunking).

    Args:
        blocks: the backbone as a sequence of modules.
        heads: task name -> head module (input: the output of block ``attach[t] - 1``).
        shared_depth: number of shared blocks (default: all, i.e. the classic shared encoder).
        attach: task name -> number of blocks below its head (default: ``len(blocks)``).

    Example::

        >>> net = HardSharing([nn.Linear(4, 8), nn.Linear(8, 8)], {"a": nn.Linear(8, 2), "b": nn.Linear(8, 3)},
        ...                   shared_depth=1)
        >>> out, z = net(torch.randn(5, 4))
        >>> out["a"].shape, out["b"].shape, z.shape
        (torch.Size([5, 2]), torch.Size([5, 3]), torch.Size([5, 8]))
    """

    def __init__(self, blocks: Sequence[nn.Module], heads: Mapping[str, nn.Module], shared_depth: int | None = None,
                 attach: Mapping[str, int] | None = None):
        super().__init__()
        n = len(blocks)
        self.shared_depth = n if shared_depth is None else shared_depth
        if not 0 <= self.shared_depth <= n:
            raise ValueError(f"shared_depth={shared_depth}; expected 0..{n}")
        self.attach = {t: (attach or {}).get(t, n) for t in heads}
        for t, a in self.attach.items():
            if not 0 <= a <= n:
                raise ValueError(f"attach[{t!r}]={a}; expected 0..{n}")
        self.shared = nn.ModuleList(blocks[: self.shared_depth])
        self.private = nn.ModuleDict({
            t: nn.ModuleList([_fresh_copy(blocks[k]) for k in range(self.shared_depth, self.attach[t])])
            for t in heads})
        self.heads = nn.ModuleDict(dict(heads))

    def forward(self, x: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        hidden = [x]
        for block in self.shared:
            hidden.append(block(hidden[-1]))
        out = {}
        for t, head in self.heads.items():
            h = hidden[min(self.attach[t], self.shared_depth)]
            for block in self.private[t]:
                h = block(h)
            out[t] = head(h)
        return out, hidden[-1]

    def forward_tasks(self, xs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Each task's head on its own inputs (many-task data: every task has its own images).

        The shared blocks run once on the concatenation of the inputs; task t's private blocks and head see only
        its rows. ``xs`` maps a subset of the tasks to (B_t, ...) inputs; returns task -> (B_t, ...) outputs.
        """
        names = list(xs)
        sizes = [xs[t].shape[0] for t in names]
        hidden = [torch.cat([xs[t] for t in names])]  # (Σ B_t, ...)
        for block in self.shared:
            hidden.append(block(hidden[-1]))
        out = {}
        for t in names:
            h = hidden[min(self.attach[t], self.shared_depth)].split(sizes)[names.index(t)]
            for block in self.private[t]:
                h = block(h)
            out[t] = self.heads[t](h)
        return out

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.shared.parameters())

    def task_parameters(self, task: str | None = None) -> list[nn.Parameter]:
        """Private blocks + head of one task (or of all tasks)."""
        tasks = [task] if task is not None else list(self.heads)
        return [p for t in tasks for p in [*self.private[t].parameters(), *self.heads[t].parameters()]]


class CrossStitch(nn.Module):
    """One network per task, with learnable linear mixing of their activations after chosen blocks.

    After block k in ``stitch_after``: x̃_i = Σ_j α^k_ij x_j, where α^k is a (T, T) matrix initialised to
    ``self_weight`` on the diagonal and (1 - self_weight)/(T - 1) elsewhere (Misra et al. use one α per
    channel; ``per_channel=True`` does that for inputs whose dim 1 is channels).

    Args:
        blocks: the per-task backbone (copied, re-initialised, once per task).
        heads: task name -> head on the last block's output.
        stitch_after: block indices after which a cross-stitch unit mixes the task streams.
        self_weight: initial diagonal of α. per_channel: one α per channel (needs ``channels``).
        channels: channel count of each stitched block's output when ``per_channel``.

    Returns (forward):
        ``(outputs, features)`` with features the stacked last activations (T, B, ...).
    """

    def __init__(self, blocks: Sequence[nn.Module], heads: Mapping[str, nn.Module], stitch_after: Sequence[int],
                 self_weight: float = 0.9, per_channel: bool = False, channels: Mapping[int, int] | None = None):
        super().__init__()
        self.tasks = list(heads)
        T = len(self.tasks)
        self.nets = nn.ModuleList([nn.ModuleList([_fresh_copy(b) for b in blocks]) for _ in range(T)])
        self.heads = nn.ModuleDict(dict(heads))
        self.stitch_after = sorted(set(stitch_after))
        off = (1 - self_weight) / max(T - 1, 1)
        init = torch.full((T, T), off) + (self_weight - off) * torch.eye(T)
        self.per_channel = per_channel
        units = {}
        for k in self.stitch_after:
            if per_channel:
                if channels is None or k not in channels:
                    raise ValueError(f"per_channel cross-stitch after block {k} needs channels[{k}]")
                units[str(k)] = nn.Parameter(init[:, :, None].repeat(1, 1, channels[k]))  # (T, T, C)
            else:
                units[str(k)] = nn.Parameter(init.clone())  # (T, T)
        self.alpha = nn.ParameterDict(units)

    def forward(self, x: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        hs = [x] * len(self.tasks)
        for k in range(len(self.nets[0])):
            hs = [net[k](h) for net, h in zip(self.nets, hs)]
            if k in self.stitch_after:
                H = torch.stack(hs)  # (T, B, C, ...)
                a = self.alpha[str(k)]
                if self.per_channel:
                    shape = a.shape + (1,) * (H.dim() - 3)  # (T, T, C, 1, ...)
                    H = (a.view(shape)[:, :, None] * H[None]).sum(1)  # (T, B, C, ...)
                else:
                    H = torch.einsum("ij,j...->i...", a, H)
                hs = list(H.unbind(0))
        out = {t: self.heads[t](h) for t, h in zip(self.tasks, hs)}
        return out, torch.stack(hs)

    def forward_tasks(self, xs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Each task's output on its own inputs (see :meth:`HardSharing.forward_tasks`).

        With cross-stitch units every column must see the same images, so all columns run on the concatenated
        inputs and task t keeps its rows; without units (independent networks) column t runs on ``xs[t]`` only.
        """
        names = list(xs)
        if not self.stitch_after:
            out = {}
            for t in names:
                h = xs[t]
                for block in self.nets[self.tasks.index(t)]:
                    h = block(h)
                out[t] = self.heads[t](h)
            return out
        sizes = [xs[t].shape[0] for t in names]
        out, _ = self(torch.cat([xs[t] for t in names]))
        return {t: out[t].split(sizes)[i] for i, t in enumerate(names)}

    def stitch_parameters(self) -> list[nn.Parameter]:
        return list(self.alpha.parameters())

    def shared_parameters(self) -> list[nn.Parameter]:
        """The parameters several tasks' losses reach, whose task gradients can conflict (what an aggregator
        combines): with stitch units everything but the heads, since the units carry every task's loss into every
        column; without units (independent networks) none."""
        if not self.stitch_after:
            return []
        return [p for n, p in self.named_parameters() if not n.startswith("heads.")]

    def task_parameters(self, task: str | None = None) -> list[nn.Parameter]:
        """The heads' parameters (of ``task``, or of every task)."""
        heads = [self.heads[task]] if task is not None else list(self.heads.values())
        return [p for h in heads for p in h.parameters()]
