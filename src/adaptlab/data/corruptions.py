"""Image corruptions in the manner of ImageNet-C / MNIST-C, at severities 1-5, written in torch.

Every corruption is ``f(x, severity, generator) -> x'`` on a float batch ``(N, C, H, W)`` in [0, 1]; the
output has the same shape and lies in [0, 1]. Randomness comes only from ``generator``, so a corrupted
target set is reproduced exactly from its seed. Severity parameters are Hendrycks & Dietterich's ImageNet-C
values where the corruption is size-free (noise, contrast, brightness, JPEG quality, pixelate factor; the
milder CIFAR-10-C values barely move an MNIST model) and are scaled to 32 px images where it is not (blur
radii, elastic displacement).

=================  ==========================================================================
name               x' (before clipping to [0, 1]), parameter by severity 1..5
=================  ==========================================================================
gaussian_noise     x + N(0, s^2),                     s = .08 .12 .18 .26 .38
shot_noise         Poisson(x c) / c,                  c = 60 25 12 5 3
impulse_noise      a fraction a of pixels set to 0 or 1, a = .03 .06 .09 .17 .27
defocus_blur       disk kernel of radius r,           r = 1 1.5 2 2.5 3 px
motion_blur        line kernel of length l, random angle in [-45, 45] deg, l = 3 5 7 9 11 px
contrast           (x - mean) c + mean,               c = .4 .3 .2 .1 .05
brightness         x + b,                             b = .1 .2 .3 .4 .5
pixelate           area-downsample by f, nearest-upsample, f = .6 .5 .4 .3 .25
jpeg               PIL JPEG round trip at quality q,  q = 25 18 15 10 7
elastic            smooth random displacement field of RMS d px, d = 1 1.5 2 2.5 3
=================  ==========================================================================

Example::

    >>> import torch
    >>> x = torch.full((2, 1, 32, 32), 0.5)
    >>> y = corrupt(x, "gaussian_noise", 3, torch.Generator().manual_seed(0))
    >>> y.shape, round(float((y - x).std()), 2)
    (torch.Size([2, 1, 32, 32]), 0.18)

References:
    D. Hendrycks, T. Dietterich. Benchmarking neural network robustness to common corruptions and
    perturbations. ICLR 2019.
    N. Mu, J. Gilmer. MNIST-C: a robustness benchmark for computer vision. 2019.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

PARAMS: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "shot_noise": (60, 25, 12, 5, 3),
    "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
    "defocus_blur": (1.0, 1.5, 2.0, 2.5, 3.0),
    "motion_blur": (3, 5, 7, 9, 11),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
    "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
    "jpeg": (25, 18, 15, 10, 7),
    "elastic": (1.0, 1.5, 2.0, 2.5, 3.0),
}
CORRUPTIONS = tuple(PARAMS)


def _blur(x: Tensor, kernels: Tensor) -> Tensor:
    """Convolve each image with its own kernel(s): ``kernels`` (k, k) shared or (N, k, k) per image."""
    n, c, h, w = x.shape
    k = kernels.shape[-1]
    kern = kernels.expand(n, k, k) if kernels.dim() == 2 else kernels
    kern = kern.to(x).repeat_interleave(c, 0).unsqueeze(1)  # (N C, 1, k, k)
    pad = k // 2
    xp = F.pad(x.reshape(1, n * c, h, w), (pad, pad, pad, pad), mode="replicate")
    return F.conv2d(xp, kern, groups=n * c).reshape(n, c, h, w)


def disk_kernel(radius: float, dtype=torch.float32) -> Tensor:
    """Normalised disk of ``radius`` px, anti-aliased by 4x4 supersampling: (2 ceil(r) + 1, 2 ceil(r) + 1)."""
    half = math.ceil(radius)
    sub = (torch.arange(4, dtype=dtype) + 0.5) / 4 - 0.5
    ax = (torch.arange(-half, half + 1, dtype=dtype)[:, None] + sub).flatten()  # (4 k,)
    inside = (ax[:, None] ** 2 + ax[None, :] ** 2 <= radius ** 2).to(dtype)
    k = 2 * half + 1
    kern = inside.reshape(k, 4, k, 4).mean(dim=(1, 3))
    return kern / kern.sum()


def motion_kernels(length: int, angles: Tensor) -> Tensor:
    """(N, length, length) line kernels through the centre at ``angles`` (radians), bilinearly splatted."""
    half = (length - 1) / 2
    t = torch.linspace(-half, half, 4 * length, dtype=angles.dtype)              # (T,)
    px = half + t[None] * torch.cos(angles)[:, None]                             # (N, T)
    py = half - t[None] * torch.sin(angles)[:, None]
    kern = angles.new_zeros(angles.shape[0], length * length)
    for dx in (0, 1):
        for dy in (0, 1):
            ix, iy = px.floor() + dx, py.floor() + dy
            wgt = (1 - (px - ix).abs()) * (1 - (py - iy).abs())
            ok = (ix >= 0) & (ix < length) & (iy >= 0) & (iy < length)
            idx = (iy.clamp(0, length - 1) * length + ix.clamp(0, length - 1)).long()
            kern.scatter_add_(1, idx, wgt * ok)
    kern = kern.reshape(-1, length, length)
    return kern / kern.sum(dim=(1, 2), keepdim=True)


def _gaussian_smooth(field: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian smoothing of (N, C, H, W) with reflect padding."""
    half = max(1, math.ceil(3 * sigma))
    ax = torch.arange(-half, half + 1, dtype=field.dtype)
    g = torch.exp(-ax ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    n, c, h, w = field.shape
    f = field.reshape(n * c, 1, h, w)
    f = F.conv2d(F.pad(f, (half, half, 0, 0), mode="reflect"), g.view(1, 1, 1, -1))
    f = F.conv2d(F.pad(f, (0, 0, half, half), mode="reflect"), g.view(1, 1, -1, 1))
    return f.reshape(n, c, h, w)


def _jpeg(x: Tensor, quality: int) -> Tensor:
    import numpy as np
    from PIL import Image

    out = torch.empty_like(x)
    arr = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()  # (N, H, W, C)
    for i, a in enumerate(arr):
        img = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=int(quality))
        dec = np.asarray(Image.open(buf).convert("L" if a.shape[-1] == 1 else "RGB"), dtype=np.float32)
        out[i] = torch.from_numpy(dec.reshape(a.shape)).permute(2, 0, 1).to(x) / 255.0
    return out


def _elastic(x: Tensor, rms: float, g: torch.Generator) -> Tensor:
    n, _, h, w = x.shape
    field = torch.rand(n, 2, h, w, generator=g, dtype=x.dtype) * 2 - 1
    field = _gaussian_smooth(field, sigma=3.0)
    field = field / field.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(1e-12) * rms  # px
    ys, xs = torch.meshgrid(torch.arange(h, dtype=x.dtype), torch.arange(w, dtype=x.dtype), indexing="ij")
    gx = (xs + field[:, 0]) * 2 / (w - 1) - 1                                     # (N, H, W)
    gy = (ys + field[:, 1]) * 2 / (h - 1) - 1
    grid = torch.stack([gx, gy], dim=-1).to(x.device)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _apply(name: str, x: Tensor, c: float, g: torch.Generator) -> Tensor:
    n = x.shape[0]
    if name == "gaussian_noise":
        return x + c * torch.randn(x.shape, generator=g, dtype=x.dtype).to(x.device)
    if name == "shot_noise":
        return torch.poisson((x * c).cpu(), generator=g).to(x) / c
    if name == "impulse_noise":
        u = torch.rand(x.shape, generator=g, dtype=x.dtype).to(x.device)
        salt = torch.rand(x.shape, generator=g, dtype=x.dtype).to(x.device) < 0.5
        return torch.where(u < c, salt.to(x.dtype), x)
    if name == "defocus_blur":
        return _blur(x, disk_kernel(c, x.dtype))
    if name == "motion_blur":
        angles = (torch.rand(n, generator=g, dtype=torch.float64) * 90 - 45) * math.pi / 180
        return _blur(x, motion_kernels(int(c), angles).to(x.dtype))
    if name == "contrast":
        m = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - m) * c + m
    if name == "brightness":
        return x + c
    if name == "pixelate":
        h, w = x.shape[-2:]
        small = F.interpolate(x, size=(max(1, round(h * c)), max(1, round(w * c))), mode="area")
        return F.interpolate(small, size=(h, w), mode="nearest")
    if name == "jpeg":
        return _jpeg(x, int(c))
    return _elastic(x, c, g)


def corrupt(x: Tensor, name: str, severity: int, generator: torch.Generator | None = None,
            batch: int = 2000) -> Tensor:
    """Corrupt a batch ``x`` (N, C, H, W) in [0, 1] with corruption ``name`` at ``severity`` (1..5).

    Args:
        x: images; a (N, H, W) batch is read as one channel.
        name: one of :data:`CORRUPTIONS`.
        severity: 1 (mild) .. 5 (strong).
        generator: the random source (CPU); default a fresh one seeded 0.
        batch: images per chunk (memory).

    Returns:
        The corrupted images, same shape and dtype, clipped to [0, 1].

    Raises:
        ValueError: unknown name or severity outside 1..5 (the message lists what is accepted).
    """
    if name not in PARAMS:
        raise ValueError(f"corruption {name!r} is unknown; expected one of {', '.join(CORRUPTIONS)}")
    if isinstance(severity, bool) or severity not in (1, 2, 3, 4, 5):
        raise ValueError(f"severity={severity!r} is invalid; expected an integer in 1..5")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    squeeze = x.dim() == 3
    xs = x.unsqueeze(1) if squeeze else x
    c = PARAMS[name][severity - 1]
    out = torch.cat([_apply(name, xs[i:i + batch], c, g).clamp(0, 1) for i in range(0, xs.shape[0], batch)])
    return out.squeeze(1) if squeeze else out


CorruptFn = Callable[[Tensor, int, torch.Generator], Tensor]

__all__ = ["CORRUPTIONS", "PARAMS", "corrupt", "disk_kernel", "motion_kernels"]
