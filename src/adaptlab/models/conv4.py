"""The standard 4-block convolutional backbone of few-shot learning.

Each block is ``Conv2d(3x3, 64, padding=1) -> BatchNorm2d -> ReLU -> MaxPool2d(2)``; four blocks map a
28x28 image to 64x1x1 (105x105 to 64x6x6). With ``n_classes`` a linear ``head`` follows the flattened
features (the MAML / fine-tuning classifier); without it the network is an embedding (Prototypical Networks).

Batch norm uses the statistics of the batch it sees and keeps no running averages by default
(``track_running_stats=False``), as in MAML's reference code: every episode is normalised with its own
statistics, train and test behave alike, and ``torch.func.vmap`` over episodes needs no buffer updates.

``Conv4.forward_tasks`` runs T copies of the network with per-task weights in one pass (MAML's task-batched
forward, picked automatically by :func:`adaptlab.meta.maml.maml_meta_loss`): the tasks are folded into the
channel dimension, ``(n, T*C, H, W)``, every convolution is one grouped convolution (``groups=T``) and every
batch norm one plain batch norm over ``T*C`` channels, which normalizes each task with its own statistics.
The activations stay contiguous in that layout from the first layer to the head, and each layer folds the
tasks in chunks whose activations fit ``Conv4.fold_bytes`` (:func:`fold_chunk`), so the memory-bound batch-norm
work (and its double backward) runs on cache-sized tensors; batch norm and max-pooling are the exact
re-formulations of :mod:`adaptlab.models.fastops`. ``torch.vmap`` over tasks computes the same thing but leaves
the batch-norm and pooling tensors permuted, whose elementwise kernels (and their double backward) then
dominate a meta-step on CPU.

Example::

    >>> net = Conv4(n_classes=5)
    >>> net(torch.zeros(10, 1, 28, 28)).shape
    torch.Size([10, 5])
    >>> Conv4().feature_dim(28)
    64

References:
    O. Vinyals et al. Matching networks for one shot learning. NeurIPS 2016.
    C. Finn, P. Abbeel, S. Levine. Model-agnostic meta-learning for fast adaptation of deep networks. ICML 2017.
    J. Snell, K. Swersky, R. Zemel. Prototypical networks for few-shot learning. NeurIPS 2017.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from adaptlab.models.fastops import batch_norm_train, max_pool2
from adaptlab.models.registry import register


def conv_block(c_in: int, c_out: int, track_running_stats: bool = False) -> nn.Sequential:
    """``Conv3x3 -> BN -> ReLU -> MaxPool2``: halves the spatial size (floor)."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1),
                         nn.BatchNorm2d(c_out, track_running_stats=track_running_stats),
                         nn.ReLU(), nn.MaxPool2d(2))


def fold_chunk(n: int, hidden: int, pixels: int, budget: int, itemsize: int = 4) -> int:
    """Tasks per folded chunk at one layer: the most whose activations ``(n, c*hidden, H, W)`` fit in ``budget``
    bytes (at least 1). :meth:`Conv4.forward_tasks` applies it layer by layer with ``Conv4.fold_bytes`` = 1 MiB
    per thread. At one thread 5-way 1-shot Omniglot tasks then run the 28x28 layer one task at a time (its
    batch-norm and pooling tensors, 1 MB, stay in a core's 2 MB cache; its convolution is then the per-task
    loop's own, which also brings the float32 meta-gradient to the loop's) and the 14, 7 and 3 px layers in
    chunks of 4, 16 and 91 tasks; at two threads in chunks of 2, 8, 33 and 182 (one task per chunk at the first
    layer was 1.4x slower there: too little work per parallel kernel). Measured in
    benchmarks/results/maml_conv_profile.md.

    Example::

        >>> [fold_chunk(n=5, hidden=64, pixels=s * s, budget=1 << 20) for s in (28, 14, 7, 3)]
        [1, 4, 16, 91]
    """
    return max(1, budget // (n * hidden * pixels * itemsize))


@register("conv4", input_shape=(1, 28, 28), output_shape=lambda b: (b, 64))
class Conv4(nn.Module):
    """Four conv blocks, then (optionally) a linear classifier ``head``.

    Args:
        in_channels: image channels (1 for Omniglot).
        hidden: filters per block (64 in the papers).
        n_classes: size of the linear head; ``None`` returns the flattened features.
        image_size: input side, used to size the head (28 -> 64 features, 105 -> 2304).
        track_running_stats: keep BN running averages (standard supervised pretraining) instead of
            always using batch statistics.
    """

    def __init__(self, in_channels: int = 1, hidden: int = 64, n_classes: int | None = None,
                 image_size: int = 28, track_running_stats: bool = False):
        super().__init__()
        self.features = nn.Sequential(conv_block(in_channels, hidden, track_running_stats),
                                      *(conv_block(hidden, hidden, track_running_stats) for _ in range(3)))
        self.hidden = hidden
        self.head = nn.Linear(self.feature_dim(image_size), n_classes) if n_classes else None

    fold_bytes = 1 << 20  # forward_tasks folds, per layer, as many tasks as fit in this many bytes per thread
    # (fold_chunk with fold_bytes * torch.get_num_threads())

    def feature_dim(self, image_size: int) -> int:
        side = image_size
        for _ in range(4):
            side //= 2
        return self.hidden * side * side

    def embed(self, x: torch.Tensor) -> torch.Tensor:   # (n, C, H, W) -> (n, D)
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (n, C, H, W) -> (n, n_classes or D)
        z = self.embed(x)
        return self.head(z) if self.head is not None else z

    def forward_tasks(self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                      x: torch.Tensor) -> torch.Tensor:
        """T networks at once: ``params`` and ``buffers`` hold per-task copies ``(T, *shape)`` by name.

        Equal to ``torch.stack([functional_call(self, (p_t, b_t), (x[t],)) for t in range(T)])`` (batch norm
        in the module's own train/eval mode; running statistics, when tracked, are updated per task in place
        in ``buffers``), computed with tasks folded into channels: one grouped convolution per chunk of tasks
        and layer. Each layer folds :func:`fold_chunk` tasks per chunk (a fixed rule: a chunk's activations at
        that layer fit in ``self.fold_bytes`` per intra-op thread, ``torch.get_num_threads()``), so the
        elementwise batch-norm, ReLU and pooling work runs on cache-sized tensors; the ReLU is applied after
        the max-pool (the two commute exactly, values and gradients), and batch norm and pooling are
        :mod:`adaptlab.models.fastops` (torch's values and derivatives, a cheaper double backward and a
        vectorized pooling kernel on CPU).

        Args:
            params: every parameter of the module by name, each ``(T, *shape)`` (expanded views are fine).
            buffers: the batch-norm buffers by name, each ``(T, *shape)`` (empty without running statistics).
            x: the tasks' images ``(T, n, C, H, W)``.

        Returns:
            ``(T, n, n_classes)``, or ``(T, n, D)`` features without a head.

        Example::

            >>> net = Conv4(hidden=8, n_classes=3)
            >>> p = {k: v.expand(2, *v.shape) for k, v in net.named_parameters()}
            >>> net.forward_tasks(p, {}, torch.randn(2, 4, 1, 28, 28)).shape
            torch.Size([2, 4, 3])
        """
        T, n = x.shape[:2]
        budget = self.fold_bytes * torch.get_num_threads()   # each thread's share of a chunk: fold_bytes
        hs, c_prev = [x.transpose(0, 1).reshape(n, T * x.shape[2], *x.shape[3:])], T   # [(n, T*C, H, W)]
        for i, block in enumerate(self.features):
            c = min(T, fold_chunk(n, self.hidden, hs[0].shape[-2] * hs[0].shape[-1], budget,
                                  x.element_size()))                           # tasks per chunk at this layer
            if c != c_prev:  # re-chunk: whole groups of the previous chunks when c is a multiple, else cat + split
                if c > c_prev and c % c_prev == 0:
                    k = c // c_prev
                    hs = [torch.cat(hs[j:j + k], 1) if len(hs[j:j + k]) > 1 else hs[j] for j in range(0, len(hs), k)]
                else:
                    h = torch.cat(hs, 1) if len(hs) > 1 else hs[0]
                    hs = list(h.split(c * (h.shape[1] // T), 1))
                c_prev = c
            # split, not slices: a split's backward is one concatenation, each slice's a zero-filled (T, ...) tensor
            ps = {k: v.split(c) for k, v in params.items() if k.startswith(f"features.{i}.")}
            bs = {k: v.split(c) for k, v in buffers.items() if k.startswith(f"features.{i}.")}
            hs = [self._block(i, block, {k: v[j] for k, v in ps.items()}, {k: v[j] for k, v in bs.items()}, h)
                  for j, h in enumerate(hs)]                                  # [(n, c*O, H/2, W/2)]
        h = torch.cat(hs, 1) if len(hs) > 1 else hs[0]                        # (n, T*O, H', W')
        z = h.reshape(n, T, -1).transpose(0, 1)                              # (T, n, D)
        if self.head is None:
            return z
        return torch.baddbmm(params["head.bias"].unsqueeze(1), z, params["head.weight"].transpose(1, 2))

    def _block(self, i: int, block: nn.Module, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
               h: torch.Tensor) -> torch.Tensor:
        """Block ``i`` of one chunk of c tasks folded into channels: ``(n, c*C, H, W) -> (n, c*O, H/2, W/2)``."""
        conv, bn = f"features.{i}.0.", f"features.{i}.1."
        w = params[conv + "weight"]                                           # (c, O, C, k, k)
        h = F.conv2d(h, w.reshape(-1, *w.shape[2:]), params[conv + "bias"].reshape(-1), padding=1,
                     groups=w.shape[0])                                       # (n, c*O, H, W)
        stats = bn + "running_mean" in buffers
        mean = buffers[bn + "running_mean"].view(-1) if stats else None      # views: updated in place
        var = buffers[bn + "running_var"].view(-1) if stats else None
        if stats and block[1].momentum is None:
            raise ValueError("BatchNorm momentum=None (cumulative average) is not supported by "
                             "forward_tasks; expected a float momentum (the default 0.1)")
        gamma, beta = params[bn + "weight"].reshape(-1), params[bn + "bias"].reshape(-1)
        if block[1].training or not stats:   # batch statistics: a closed-form double backward (fastops)
            h = batch_norm_train(h, gamma, beta, mean, var, block[1].momentum or 0.0, block[1].eps)
        else:
            h = F.batch_norm(h, mean, var, gamma, beta, training=False, eps=block[1].eps)
        if stats and block[1].training:
            buffers[bn + "num_batches_tracked"].add_(1)
        return F.relu(max_pool2(h))  # = max_pool(relu(h)), 4x fewer ReLU elements; (n, c*O, H/2, W/2)
