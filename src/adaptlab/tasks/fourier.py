"""The 1D Fourier task family: y = sum_{s in S} alpha_s phi_s(x) on [-1, 1].

Features are orthonormal under x ~ U[-1, 1] (d odd)::

    phi_0(x) = 1,   phi_{2k-1}(x) = sqrt(2) sin(k pi x),   phi_{2k}(x) = sqrt(2) cos(k pi x),   k = 1..(d-1)/2

so E[phi_i phi_j] = delta_ij. A task draws alpha_S ~ U[-1, 1]^|S| and normalises it to unit norm, so every
task has E_x[f(x)^2] = 1. Training labels carry Gaussian noise of std sigma; test labels are clean.

Example::

    >>> import torch
    >>> tasks = FourierTasks(d=11, support=[5, 6], n_support=8, n_query=16)
    >>> batch = tasks.sample(4, torch.Generator().manual_seed(0))
    >>> batch.support_x.shape, batch.coef.shape
    (torch.Size([4, 8]), torch.Size([4, 11]))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from adaptlab.errors import ConfigError
from adaptlab.tasks.batch import SupportQuery

XType = Literal["grid", "uniform"]


def fourier_features(x: Tensor, d: int) -> Tensor:
    """Orthonormal Fourier features of ``x``: shape (..., n) -> (..., n, d), dtype of ``x``."""
    if d < 1 or d % 2 == 0:
        raise ConfigError(f"d={d!r} is invalid; expected an odd positive integer")
    k = torch.arange(1, (d - 1) // 2 + 1, dtype=x.dtype, device=x.device)  # (K,)
    arg = math.pi * x.unsqueeze(-1) * k  # (..., n, K)
    sc = math.sqrt(2.0) * torch.stack([torch.sin(arg), torch.cos(arg)], dim=-1)  # (..., n, K, 2)
    ones = torch.ones_like(x).unsqueeze(-1)  # (..., n, 1)
    return torch.cat([ones, sc.flatten(-2)], dim=-1)  # (..., n, d): 1, sin 1, cos 1, sin 2, ...


def grid_points(n: int, dtype=torch.float64, device=None) -> Tensor:
    """n evenly spaced points on [-1, 1), right end excluded: x_j = -1 + 2j/n. Same n, same points."""
    return -1.0 + 2.0 * torch.arange(n, dtype=dtype, device=device) / n


def _rand(shape, generator, dtype, device, normal: bool = False) -> Tensor:
    """Draw on the generator's device (a CPU generator cannot fill a CUDA tensor), then move to ``device``."""
    gdev = generator.device if generator is not None else device
    draw = torch.randn if normal else torch.rand
    return draw(shape, generator=generator, dtype=dtype, device=gdev).to(device)


def sample_x(kind: XType, num_tasks: int, n: int, generator: torch.Generator | None = None,
             dtype=torch.float64, device=None) -> Tensor:
    """Input points for ``num_tasks`` tasks: (T, n). ``grid`` is shared by all tasks; ``uniform`` is i.i.d."""
    if kind == "grid":
        return grid_points(n, dtype, device).expand(num_tasks, n)
    if kind == "uniform":
        return 2.0 * _rand((num_tasks, n), generator, dtype, device) - 1.0
    raise ConfigError(f"x={kind!r} is invalid; expected 'grid' or 'uniform'")


def sign_labels(f: Tensor, flip_prob: float = 0.0, generator: torch.Generator | None = None) -> Tensor:
    """Classification labels in {-1, +1}: sign(f) with sign(0) = +1, each flipped with prob. ``flip_prob``."""
    y = torch.where(f >= 0, torch.ones_like(f), -torch.ones_like(f))
    if flip_prob > 0:
        flip = _rand(f.shape, generator, f.dtype, f.device) < flip_prob
        y = torch.where(flip, -y, y)
    return y


@dataclass(frozen=True)
class FourierBatch(SupportQuery):
    """A batch of T Fourier tasks as stacked tensors (a :class:`SupportQuery`).

    Attributes:
        support_x, support_y: (T, n_support) training inputs and (noisy / possibly flipped) labels.
        query_x, query_y: (T, n_query) fresh inputs and clean labels.
        coef: (T, d) true coefficients alpha (zero outside S).
        support_phi, query_phi: (T, n, d) features of the inputs, computed once at sampling (optional).
    """

    coef: Tensor
    support_phi: Tensor | None = None
    query_phi: Tensor | None = None


TaskBatch = FourierBatch  # the name before every task family shared SupportQuery


class FourierTasks:
    """Distribution over 1D functions on a fixed, unknown support S of Fourier features.

    Args:
        d: number of features (odd).
        support: indices S of the features that carry the function (each in [0, d)).
        x: how support (training) inputs are drawn: ``"grid"`` or ``"uniform"``. Query inputs are uniform.
        n_support: training points per task; n_query: fresh points per task (the meta loss).
        noise: std sigma of the Gaussian noise on training labels (regression).
        labels: ``"regression"`` (y = f(x)) or ``"sign"`` (y = sign(f(x)) in {-1, +1}).
        flip_prob: probability of flipping a training sign label.
        dtype: float64 by default: the linear algebra of this family is ill-conditioned on purpose.
    """

    def __init__(self, d: int = 501, support: Sequence[int] = tuple(range(5, 11)), x: XType = "grid",
                 n_support: int = 32, n_query: int = 64, noise: float = 0.1,
                 labels: Literal["regression", "sign"] = "regression", flip_prob: float = 0.0,
                 dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"):
        validate_fourier(d, list(support), x, n_support, n_query, noise, labels, flip_prob)
        self.d, self.support, self.x = d, sorted(set(int(s) for s in support)), x
        self.n_support, self.n_query, self.noise = n_support, n_query, noise
        self.labels, self.flip_prob, self.dtype, self.device = labels, flip_prob, dtype, torch.device(device)

    def features(self, x: Tensor) -> Tensor:
        return fourier_features(x, self.d)

    def support_mask(self) -> Tensor:
        """(d,) 1.0 on S, 0.0 elsewhere."""
        m = torch.zeros(self.d, dtype=self.dtype, device=self.device)
        m[self.support] = 1.0
        return m

    def sample_coef(self, num_tasks: int, generator: torch.Generator | None = None) -> Tensor:
        """(T, d) coefficients: U[-1, 1] on S, normalised to unit norm, zero elsewhere."""
        a = 2 * _rand((num_tasks, len(self.support)), generator, self.dtype, self.device) - 1
        a = a / a.norm(dim=-1, keepdim=True)
        coef = torch.zeros(num_tasks, self.d, dtype=self.dtype, device=self.device)
        coef[:, self.support] = a
        return coef

    def function(self, coef: Tensor, x: Tensor, phi: Tensor | None = None) -> Tensor:
        """f(x) for each task: coef (T, d), x (T, n) -> (T, n). ``phi``: features of x, if already known."""
        phi = self.features(x) if phi is None else phi
        return (phi @ coef.unsqueeze(-1)).squeeze(-1)  # (T, n)

    def training_labels(self, coef: Tensor, x: Tensor, generator: torch.Generator | None = None,
                        phi: Tensor | None = None) -> Tensor:
        """Noisy regression labels, or (possibly flipped) sign labels, for training points."""
        f = self.function(coef, x, phi)
        if self.labels == "sign":
            return sign_labels(f, self.flip_prob, generator)
        noise = _rand(f.shape, generator, f.dtype, f.device, normal=True)
        return f + self.noise * noise

    def clean_labels(self, coef: Tensor, x: Tensor, phi: Tensor | None = None) -> Tensor:
        f = self.function(coef, x, phi)
        return sign_labels(f) if self.labels == "sign" else f

    def sample(self, num_tasks: int, generator: torch.Generator | None = None, *, n_support: int | None = None,
               x: XType | None = None) -> FourierBatch:
        """A batch of tasks with support points (``x`` type, noisy labels) and uniform clean query points."""
        n_s = self.n_support if n_support is None else n_support
        coef = self.sample_coef(num_tasks, generator)
        kind = x or self.x
        xs = sample_x(kind, num_tasks, n_s, generator, self.dtype, self.device)
        # On a grid every task has the same inputs: one feature matrix, broadcast (stride 0) over the tasks,
        # which lets solvers factor it once (see meta.feature_weights.closed_form_inner).
        phis = self.features(xs[:1]).expand(num_tasks, -1, -1) if kind == "grid" else self.features(xs)
        ys = self.training_labels(coef, xs, generator, phis)
        xq = sample_x("uniform", num_tasks, self.n_query, generator, self.dtype, self.device)
        phiq = self.features(xq)
        return FourierBatch(xs, ys, xq, self.clean_labels(coef, xq, phiq), coef, phis, phiq)


def validate_fourier(d, support, x, n_support, n_query, noise, labels="regression", flip_prob=0.0,
                     prefix: str = "", names: dict[str, str] | None = None) -> None:
    """Raise ConfigError naming the first invalid setting of a Fourier task family.

    ``prefix`` and ``names`` (argument name -> config key) make the message name the caller's config keys.
    """
    from adaptlab.config import check as _check

    def check(ok, key, value, accepted):
        _check(ok, prefix + (names or {}).get(key[len(prefix):], key[len(prefix):]), value, accepted)

    check(isinstance(d, int) and d >= 1 and d % 2 == 1, prefix + "d", d, "an odd positive integer (e.g. 501)")
    check(len(support) > 0, prefix + "support", support, "a non-empty list of feature indices")
    bad = [s for s in support if not 0 <= s < d]
    check(not bad, prefix + "support", support, f"indices in [0, {d - 1}] (d={d})")
    check(x in ("grid", "uniform"), prefix + "x", x, "'grid' or 'uniform'")
    check(n_support >= 1, prefix + "n_support", n_support, "a positive integer")
    check(n_query >= 1, prefix + "n_query", n_query, "a positive integer")
    check(noise >= 0, prefix + "noise", noise, "a non-negative number")
    check(labels in ("regression", "sign"), prefix + "labels", labels, "'regression' or 'sign'")
    check(0 <= flip_prob < 0.5, prefix + "flip_prob", flip_prob, "a probability in [0, 0.5)")
