"""Contrastive self-supervised pretraining (SimCLR): the NT-Xent loss, a projection head, torch augmentations.

Two random views ``v1 = a1(x)``, ``v2 = a2(x)`` of every image of a batch of N go through the encoder
:math:`f` and a projection head :math:`g`; with :math:`z = g(f(v)) / \\lVert g(f(v)) \\rVert` for the 2N views
and :math:`p(i)` the index of the other view of the same image, the NT-Xent loss (normalised temperature-scaled
cross-entropy) is

.. math::

    \\ell_i = -\\log \\frac{\\exp(z_i^\\top z_{p(i)} / \\tau)}{\\sum_{k \\ne i} \\exp(z_i^\\top z_k / \\tau)},
    \\qquad L = \\frac{1}{2N} \\sum_{i=1}^{2N} \\ell_i

(a 2N-way classification of each view's partner among the other 2N - 1 views). :func:`nt_xent` computes it
from one ``(2N, 2N)`` similarity matrix; :func:`nt_xent_reference` is the per-anchor loop it is tested against.
The encoder's features :math:`f(v)` (not the projections) are what few-shot evaluators use afterwards.

The augmentations are batched torch code driven by an explicit ``torch.Generator``: a random affine map
(rotation, scale, shear, translation) and an elastic deformation (a random displacement field smoothed by a
Gaussian, Simard et al. 2003) are composed into one sampling grid, so each view costs one ``grid_sample``;
cutout (DeVries & Taylor 2017) then blanks a random square. Background is 0 (Omniglot's ink is 1).

Example::

    >>> import torch
    >>> from torch import nn
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.rand(8, 1, 28, 28, generator=g)
    >>> v1, v2 = two_views(x, g)
    >>> v1.shape, bool((v1 != v2).any())
    (torch.Size([8, 1, 28, 28]), True)
    >>> z = torch.randn(2, 8, 16, generator=g)
    >>> bool(nt_xent(z[0], z[0], temperature=0.1) < nt_xent(z[0], z[1], temperature=0.1))  # matched views
    True
    >>> model = SimCLR(nn.Sequential(nn.Flatten(), nn.Linear(784, 32)), feature_dim=32, proj_dim=8)
    >>> loss = model.loss(x, g); loss.backward(); model.embed(x).shape
    torch.Size([8, 32])

References:
    T. Chen, S. Kornblith, M. Norouzi, G. Hinton. A simple framework for contrastive learning of visual
    representations (SimCLR). ICML 2020.
    P. Y. Simard, D. Steinkraus, J. C. Platt. Best practices for convolutional neural networks applied to
    visual document analysis. ICDAR 2003.
    T. DeVries, G. W. Taylor. Improved regularization of convolutional neural networks with cutout. 2017.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from adaptlab.config import check

# ------------------------------------------------------------------------------------------ the loss


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent loss of paired projections ``z1[i] <-> z2[i]`` (scalar, mean over the 2N views).

    Args:
        z1, z2: (N, D) projections of the two views (normalised here; any scale works).
        temperature: :math:`\\tau > 0`; smaller sharpens the softmax over the 2N - 1 candidates.
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"nt_xent: z1 {tuple(z1.shape)} and z2 {tuple(z2.shape)} must both be (N, D)")
    if not temperature > 0:
        raise ValueError(f"nt_xent: temperature={temperature}; expected a positive number")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)                                 # (2N, D)
    sim = z @ z.T / temperature                                                 # (2N, 2N)
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))                             # a view is not its own candidate
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)  # (2N,)
    return F.cross_entropy(sim, partner)


def nt_xent_reference(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """The same loss written straight from the formula, one anchor at a time (the oracle of tests and benchmarks):
    numerator from the partner, denominator over the 2N - 1 other views (the anchor removed by index)."""
    z = torch.cat([z1, z2])
    n2 = z.shape[0]
    losses = []
    for i in range(n2):
        zi = z[i] / z[i].norm()                                                 # (D,)
        others = torch.cat([z[:i], z[i + 1:]])
        others = others / others.norm(dim=1, keepdim=True)                      # (2N - 1, D)
        p = (i + n2 // 2) % n2
        num = torch.exp(zi @ (z[p] / z[p].norm()) / temperature)
        den = torch.exp(others @ zi / temperature).sum()
        losses.append(-torch.log(num / den))
    return torch.stack(losses).mean()


# ------------------------------------------------------------------------------------------ augmentations


@dataclass(frozen=True)
class Augment:
    """Strengths of the random view (each 0 switches that part off); out-of-range values are a ConfigError."""

    rotate: float = 15.0           # max |rotation| (degrees)
    scale: float = 0.15            # scale drawn from [1 - scale, 1 + scale]
    shear: float = 10.0            # max |shear| (degrees)
    translate: float = 0.1         # max |shift| as a fraction of the image side
    elastic_alpha: float = 1.5     # elastic displacement size (pixels, after smoothing)
    elastic_sigma: float = 3.0     # Gaussian smoothing of the displacement field (pixels)
    cutout: float = 0.3            # side of the blanked square as a fraction of the image side
    cutout_p: float = 0.5          # probability that an image gets a cutout

    def __post_init__(self):
        check(0 <= self.rotate <= 180, "augment.rotate", self.rotate, "degrees in 0..180")
        check(0 <= self.scale < 1, "augment.scale", self.scale, "a number in [0, 1)")
        check(0 <= self.shear < 60, "augment.shear", self.shear, "degrees in [0, 60)")
        check(0 <= self.translate <= 1, "augment.translate", self.translate, "a fraction in 0..1")
        check(0 <= self.elastic_alpha <= 20, "augment.elastic_alpha", self.elastic_alpha, "pixels in 0..20")
        check(0 < self.elastic_sigma <= 20, "augment.elastic_sigma", self.elastic_sigma, "pixels in (0, 20]")
        check(0 <= self.cutout <= 1, "augment.cutout", self.cutout, "a fraction in 0..1")
        check(0 <= self.cutout_p <= 1, "augment.cutout_p", self.cutout_p, "a probability in 0..1")


def _uniform(n: int, bound: float, g: torch.Generator) -> torch.Tensor:  # (n,) in [-bound, bound]
    return (2 * torch.rand(n, generator=g, dtype=torch.float64) - 1) * bound


def affine_matrices(n: int, aug: Augment, g: torch.Generator) -> torch.Tensor:
    """``(n, 2, 3)`` random affine maps in ``affine_grid``'s normalised coordinates (rotation @ shear @ scale)."""
    a, sh = torch.deg2rad(_uniform(n, aug.rotate, g)), torch.deg2rad(_uniform(n, aug.shear, g))
    s = 1 + _uniform(n, aug.scale, g)
    t = 2 * torch.stack([_uniform(n, aug.translate, g), _uniform(n, aug.translate, g)], 1)   # (n, 2)
    rot = torch.stack([torch.cos(a), -torch.sin(a), torch.sin(a), torch.cos(a)], 1).view(n, 2, 2)
    shear = torch.eye(2, dtype=torch.float64).repeat(n, 1, 1)
    shear[:, 0, 1] = torch.tan(sh)
    lin = rot @ shear * s.view(n, 1, 1)                                          # (n, 2, 2)
    return torch.cat([lin, t.unsqueeze(-1)], 2).float()


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(n, c, H, W)`` (zero padding), radius 3 sigma."""
    r = max(1, int(math.ceil(3 * sigma)))
    k = torch.exp(-torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) ** 2 / (2 * sigma ** 2))
    k = (k / k.sum()).repeat(x.shape[1], 1, 1)                                  # (c, 1, 2r+1)
    c = x.shape[1]
    x = F.conv2d(x, k.unsqueeze(2), padding=(0, r), groups=c)
    return F.conv2d(x, k.unsqueeze(3), padding=(r, 0), groups=c)


def elastic_field(n: int, size: int, aug: Augment, g: torch.Generator) -> torch.Tensor:
    """``(n, size, size, 2)`` smooth random displacements in normalised coordinates (max about ``alpha`` px)."""
    d = 2 * torch.rand(n, 2, size, size, generator=g) - 1                      # (n, 2, S, S) white noise
    if aug.elastic_sigma > 0:
        d = _gaussian_blur(d, aug.elastic_sigma)
    d = d / d.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)         # peak 1 per image
    return (d * aug.elastic_alpha * 2 / size).permute(0, 2, 3, 1)


def cutout_mask(n: int, size: int, aug: Augment, g: torch.Generator) -> torch.Tensor:
    """``(n, 1, size, size)`` float mask: 0 inside one random square per chosen image, 1 elsewhere."""
    side = aug.cutout * size
    cy, cx = (torch.rand(2, n, generator=g) * size).unbind(0)
    on = torch.rand(n, generator=g) < aug.cutout_p
    pos = torch.arange(size) + 0.5
    inside_y = (pos.view(1, -1) - cy.view(-1, 1)).abs() < side / 2             # (n, S)
    inside_x = (pos.view(1, -1) - cx.view(-1, 1)).abs() < side / 2
    box = inside_y.unsqueeze(2) & inside_x.unsqueeze(1) & on.view(n, 1, 1)      # (n, S, S)
    return (~box).float().unsqueeze(1)


def augment(x: torch.Tensor, g: torch.Generator, aug: Augment = Augment()) -> torch.Tensor:
    """One random view of each ``(n, c, S, S)`` image: affine + elastic in one ``grid_sample``, then cutout.

    All draws come from ``g`` (on the CPU), so the views are reproducible and independent of the device.
    """
    n, _, h, w = x.shape
    if h != w:
        raise ValueError(f"augment: images are {h}x{w}; expected square images (n, c, S, S)")
    grid = F.affine_grid(affine_matrices(n, aug, g), [n, 1, h, w], align_corners=False)   # (n, S, S, 2)
    if aug.elastic_alpha > 0:
        grid = grid + elastic_field(n, h, aug, g)
    out = F.grid_sample(x, grid.to(x.device, x.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)
    if aug.cutout > 0 and aug.cutout_p > 0:
        out = out * cutout_mask(n, h, aug, g).to(x.device, x.dtype)
    return out


def two_views(x: torch.Tensor, g: torch.Generator, aug: Augment = Augment()) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent random views of every image: ``((n, ...), (n, ...))``."""
    return augment(x, g, aug), augment(x, g, aug)


# ------------------------------------------------------------------------------------------ the model


def projection_head(feature_dim: int, hidden: int = 128, out: int = 64) -> nn.Sequential:
    """SimCLR's MLP head ``Linear -> ReLU -> Linear`` from encoder features to the contrastive space."""
    return nn.Sequential(nn.Linear(feature_dim, hidden), nn.ReLU(), nn.Linear(hidden, out))


def simclr_loss(params: Mapping[str, torch.Tensor], buffers: Mapping[str, torch.Tensor], views, *,
                model: nn.Module, temperature: float = 0.5) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """NT-Xent of ``model`` (encoder then head) over a pair of view batches, pure over ``params``.

    Both views go through the network as one batch of 2N (batch norm sees both).

    Returns:
        ``(loss, aux)`` with ``aux["positive_rank_1"]``: the fraction of views whose most similar other view is
        their partner (the contrastive task's top-1 accuracy).
    """
    v1, v2 = views
    n = v1.shape[0]
    z = functional_call(model, (dict(params), dict(buffers)), (torch.cat([v1, v2]),))     # (2N, P)
    loss = nt_xent(z[:n], z[n:], temperature)
    with torch.no_grad():
        zn = F.normalize(z, dim=1)
        sim = (zn @ zn.T).fill_diagonal_(float("-inf"))
        partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
        top1 = (sim.argmax(1) == partner).float().mean()
    return loss, {"positive_rank_1": top1}


class SimCLR(nn.Module):
    """Thin wrapper: ``encoder`` (images -> (n, feature_dim)) plus a projection head, and the pure loss above.

    Args:
        encoder: the network whose features are kept (e.g. ``Conv4(track_running_stats=True)``).
        feature_dim: size of the encoder's output. proj_hidden, proj_dim: the head's sizes.
        temperature: NT-Xent's :math:`\\tau`. aug: the view distribution.
    """

    def __init__(self, encoder: nn.Module, feature_dim: int, proj_hidden: int = 128, proj_dim: int = 64,
                 temperature: float = 0.5, aug: Augment = Augment()):
        super().__init__()
        self.encoder, self.head = encoder, projection_head(feature_dim, proj_hidden, proj_dim)
        self.temperature, self.aug = temperature, aug

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (n, ...) -> (n, proj_dim)
        return self.head(self.encoder(x))

    def functional(self):
        """The pure core ``loss(params, buffers, views) -> (loss, aux)`` with this model bound."""
        return functools.partial(simclr_loss, model=self, temperature=self.temperature)

    def loss(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """NT-Xent of two fresh views of ``x`` drawn from ``g`` (differentiable scalar)."""
        return self.functional()(dict(self.named_parameters()), dict(self.named_buffers()),
                                 two_views(x, g, self.aug))[0]

    @torch.no_grad()
    def embed(self, x: torch.Tensor, chunk: int = 512) -> torch.Tensor:
        """Encoder features ``(M, feature_dim)`` in eval mode (no projection head), in chunks."""
        was = self.training
        self.eval()
        try:
            return torch.cat([self.encoder(x[i: i + chunk]) for i in range(0, len(x), chunk)])
        finally:
            self.train(was)
