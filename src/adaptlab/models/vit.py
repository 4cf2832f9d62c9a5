"""A vision transformer with global or Swin-style windowed attention.

The image is cut into P x P patches (one ``Conv2d`` of stride P), each patch becomes a token, positions are
added (learned or fixed 2-D sinusoids) and pre-norm blocks ``x + attn(LN x)``, ``x + mlp(LN x)`` follow.
Attention is :func:`torch.nn.functional.scaled_dot_product_attention` either over all ``N = (H/P)^2`` tokens
(cost ``O(D N^2) = O(D (H/P)^4)``) or inside non-overlapping K x K windows of the patch grid
(``O(D N K^2) = O(D (H/P)^2 K^2)``). Odd blocks shift the windows by K/2 (a cyclic roll of the grid), so
information crosses window borders; tokens that the roll brought together from opposite image borders are
kept apart by a boolean mask (:func:`shift_window_mask`), as in Swin.

``embed="conv"`` replaces the single patch convolution by a convolutional stem: ``log2 P`` 3 x 3
convolutions of stride 2 (GELU between them, channels doubling up to D), so the grid stays ``H / P`` while the
token of cell k sees pixels ``P k - P + 1 .. P k + P - 1`` (its patch and the previous one's, a 2P - 1 receptive
field) and has seen local strokes before attention starts
(the "early convolutions" of Xiao et al.); P must then be a power of two.

``causal=True`` (global attention only) lets token i see tokens 0..i in raster order: the decoder-style
encoder of the "encoder or decoder?" question.

``rel_pos=True`` adds Swin's relative position bias to every block's attention logits: a learned table
``B[(2S - 1)^2, heads]`` (S = K for windows, S = G for global attention) read at the offset (dr, dc) of query
and key, ``softmax(Q K^T / sqrt(d_h) + B[dr, dc] + M) V``, where M is the shift (or causal) mask as 0 / -inf.
The bias depends on the offset only, so it is the same in every window; the tables start at zero.

Example::

    >>> net = ViT(image_size=32, patch=4, dim=16, depth=2, heads=2, window=4, n_classes=10)
    >>> net(torch.zeros(3, 1, 32, 32)).shape
    torch.Size([3, 10])
    >>> net.encode(torch.zeros(3, 1, 32, 32)).shape      # (batch, tokens, dim)
    torch.Size([3, 64, 16])

References:
    A. Dosovitskiy et al. An image is worth 16x16 words: transformers for image recognition at scale. ICLR 2021.
    T. Xiao et al. Early convolutions help transformers see better. NeurIPS 2021.
    Z. Liu et al. Swin transformer: hierarchical vision transformer using shifted windows. ICCV 2021.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from adaptlab.errors import ConfigError
from adaptlab.models.registry import register


def check_grid(image_size: int, patch: int, window: int | None) -> int:
    """The patch-grid side ``image_size // patch``; raises ConfigError for sizes that do not tile."""
    if patch < 1 or image_size < patch or image_size % patch:
        raise ConfigError(f"image_size={image_size} is invalid for patch={patch}; expected a multiple of the "
                          "patch size")
    grid = image_size // patch
    if window is not None and (window < 1 or window > grid or grid % window):
        raise ConfigError(f"window={window} is invalid for a {grid}x{grid} patch grid (image_size={image_size}, "
                          f"patch={patch}); expected a divisor of {grid}")
    return grid


def sinusoidal_2d(grid: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine/cosine positions (grid*grid, dim): half the channels encode the row, half the column."""
    if dim % 4:
        raise ConfigError(f"dim={dim} is invalid for sinusoidal positions; expected a multiple of 4")
    q = dim // 4
    freq = torch.exp(-math.log(10000.0) * torch.arange(q, dtype=torch.float64) / q)  # (q,)
    pos = torch.arange(grid, dtype=torch.float64)[:, None] * freq  # (grid, q)
    one = torch.cat([pos.sin(), pos.cos()], 1)  # (grid, dim/2)
    rows = one[:, None, :].expand(grid, grid, dim // 2)
    cols = one[None, :, :].expand(grid, grid, dim // 2)
    return torch.cat([rows, cols], -1).reshape(grid * grid, dim).float()


def window_partition(x: torch.Tensor, k: int) -> torch.Tensor:
    """(B, G, G, D) -> (B * (G/k)^2, k*k, D): the tokens of each k x k window, windows in raster order."""
    b, g, _, d = x.shape
    x = x.view(b, g // k, k, g // k, k, d).transpose(2, 3)  # (B, G/k, G/k, k, k, D)
    return x.reshape(-1, k * k, d)


def window_merge(w: torch.Tensor, k: int, g: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * (g/k)^2, k*k, D) -> (B, g, g, D)."""
    d = w.shape[-1]
    x = w.view(-1, g // k, g // k, k, k, d).transpose(2, 3)
    return x.reshape(-1, g, g, d)


def relative_index(side: int, device=None) -> torch.Tensor:
    """(side^2, side^2) long: the row of a ``(2 side - 1)^2`` table for the offset of query i and key j.

    Tokens are the cells of a side x side square in raster order; the offset (dr, dc) = (r_i - r_j, c_i - c_j)
    has each coordinate in -(side - 1)..side - 1, and maps to row ``(dr + side - 1) (2 side - 1) + dc + side - 1``.

    >>> relative_index(2)
    tensor([[4, 3, 1, 0],
            [5, 4, 2, 1],
            [7, 6, 4, 3],
            [8, 7, 5, 4]])
    """
    r, c = torch.meshgrid(torch.arange(side, device=device), torch.arange(side, device=device), indexing="ij")
    r, c = r.flatten(), c.flatten()  # (side^2,)
    dr, dc = r[:, None] - r[None, :] + side - 1, c[:, None] - c[None, :] + side - 1  # (side^2, side^2)
    return dr * (2 * side - 1) + dc


def shift_window_mask(g: int, k: int, s: int, device=None) -> torch.Tensor:
    """Boolean mask (n_windows, k*k, k*k), True = may attend, for windows of a grid rolled by ``-s``.

    After ``torch.roll(x, (-s, -s))`` the last row/column of windows holds tokens from both image borders;
    each axis splits into the regions [0, g-k), [g-k, g-s), [g-s, g) and tokens attend only within their
    region in both axes.
    """
    label = torch.zeros(g, g, dtype=torch.long, device=device)
    if s:
        cuts = (slice(0, g - k), slice(g - k, g - s), slice(g - s, g))
        for i, r in enumerate(cuts):
            for j, c in enumerate(cuts):
                label[r, c] = 3 * i + j
    lw = window_partition(label[None, :, :, None], k)[..., 0]  # (n_windows, k*k)
    return lw[:, :, None] == lw[:, None, :]


class Attention(nn.Module):
    """Multi-head self-attention through ``F.scaled_dot_product_attention`` with an optional mask.

    The mask is boolean (True = attend) or float (added to the logits, -inf = hidden), of shape (n, n),
    (b, n, n) or, per head, (b, h, n, n) (b may be 1: broadcast over the batch).
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ConfigError(f"dim={dim} is invalid for heads={heads}; expected a multiple of heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        b, n, d = x.shape  # mask: (n, n), (b, n, n) or (b | 1, h, n, n); bool True = attend, or float
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # (b, h, n, dh)
        if mask is not None and mask.dim() == 3:
            mask = mask[:, None]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)  # (b, h, n, dh)
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


def conv_stem(in_channels: int, dim: int, patch: int) -> nn.Sequential:
    """``log2 patch`` stride-2 3 x 3 convolutions, GELU between: (B, C, H, W) -> (B, dim, H / P, W / P)."""
    n = patch.bit_length() - 1
    if patch < 2 or 1 << n != patch:
        raise ConfigError(f"patch={patch} is invalid for embed='conv'; expected a power of two >= 2")
    widths = [in_channels] + [max(8, dim >> (n - 1 - i)) for i in range(n)]  # ..., dim / 2, dim
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [nn.Conv2d(widths[i], widths[i + 1], 3, stride=2, padding=1)] + ([nn.GELU()] if i < n - 1 else [])
    return nn.Sequential(*layers)


def mlp(dim: int, ratio: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, int(dim * ratio)), nn.GELU(), nn.Linear(int(dim * ratio), dim))


class Block(nn.Module):
    """Pre-norm transformer block over a (B, G, G, D) token grid, global or in (shifted) K x K windows.

    ``rel_pos=True`` adds a learned relative position bias (Swin) to the attention logits: a table of
    ``(2S - 1)^2 x heads`` entries, S = K (windows) or G (global), zero at initialisation.
    """

    def __init__(self, dim: int, heads: int, grid: int, window: int | None = None, shift: int = 0,
                 mlp_ratio: float = 4.0, causal: bool = False, rel_pos: bool = False):
        super().__init__()
        self.grid, self.window, self.shift, self.causal = grid, window, shift, causal
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), mlp(dim, mlp_ratio)
        if window is not None and shift:
            self.register_buffer("mask", shift_window_mask(grid, window, shift), persistent=False)
        else:
            self.mask = None
        if rel_pos:  # zero start: at initialisation the block computes what it would without the bias
            side = grid if window is None else window
            self.rel_table = nn.Parameter(torch.zeros((2 * side - 1) ** 2, heads))
            self.register_buffer("rel_index", relative_index(side), persistent=False)
        else:
            self.rel_table = None

    def rel_bias(self) -> torch.Tensor:
        """The (1, heads, S^2, S^2) relative position bias of one window (or of the whole grid)."""
        return self.rel_table[self.rel_index].permute(2, 0, 1)[None]

    def attend(self, x: torch.Tensor) -> torch.Tensor:  # (B, G, G, D) -> (B, G, G, D), the attention alone
        b, g, _, d = x.shape
        if self.window is None:
            t = x.reshape(b, g * g, d)
            if self.rel_table is None:
                return self.attn(t, causal=self.causal).view(b, g, g, d)
            bias = self.rel_bias()  # (1, h, N, N)
            if self.causal:  # the diagonal stays visible: no row is fully masked
                bias = bias.masked_fill(~x.new_ones(g * g, g * g, dtype=torch.bool).tril(), float("-inf"))
            return self.attn(t, bias).view(b, g, g, d)
        k, s = self.window, self.shift
        if s:
            x = torch.roll(x, (-s, -s), (1, 2))
        w = window_partition(x, k)  # (B * nW, k*k, D)
        if self.rel_table is None:
            mask = None if self.mask is None else self.mask.repeat(b, 1, 1)  # (B * nW, k*k, k*k)
        else:
            mask = self.rel_bias()  # (1, h, k*k, k*k), the same in every window
            if self.mask is not None:  # (B * nW, h, k*k, k*k): -inf where the shift mask hides a key
                mask = mask.masked_fill(~self.mask[:, None], float("-inf")).repeat(b, 1, 1, 1)
        y = window_merge(self.attn(w, mask), k, g)
        return torch.roll(y, (s, s), (1, 2)) if s else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attend(self.norm1(x))
        return x + self.mlp(self.norm2(x))


@register("vit", input_shape=(1, 28, 28), output_shape=lambda b: (b, 10))
class ViT(nn.Module):
    """Patch embedding, positions, ``depth`` pre-norm blocks, a final LayerNorm and an optional linear head.

    Args:
        image_size: input side H = W (a multiple of ``patch``).
        patch: patch side P; the grid is G = H / P.
        in_channels: image channels.
        dim: token width D. depth: number of blocks. heads: attention heads. mlp_ratio: MLP hidden / D.
        window: K for K x K windows (a divisor of G; odd blocks shifted by K // 2 when K < G), None = global.
        positions: ``"learned"`` (trained, initialised N(0, 0.02^2)) or ``"sinusoidal"`` (fixed).
        causal: raster-order causal attention (global only): token i sees tokens 0..i.
        stem: channels of an optional convolutional stem, a 3x3 convolution + GELU at full resolution before
            the patch embedding (0, the default: none). It gives every token local stroke features, which
            makes a small ViT trained from scratch converge in far fewer steps (Xiao et al. 2021); its cost
            grows like H^2, like the patch embedding's.
        pool: how ``forward`` pools the tokens for the head, ``"mean"`` (the default) or ``"max"`` (per
            channel; a small object on a blank canvas is not diluted by the blank tokens).
        stem_depth: 3x3 convolutions (each + GELU, ``stem`` channels, full resolution) in that stem (1, the
            default: one). Each one widens a token's receptive field by 2 pixels and adds a nonlinearity.
        n_classes: size of the head on the pooled tokens (``pool``); None: ``forward`` returns the tokens.
        embed: the patch embedding, ``"patch"`` (one P x P convolution of stride P) or ``"conv"`` (``log2 P``
            stride-2 3 x 3 convolutions; same grid, P a power of two; after the ``stem`` if there is one).
        rel_pos: add Swin's learned relative position bias to every block's attention (False, the default:
            absolute positions only); a ``(2K - 1)^2 x heads`` table per block for windows, ``(2G - 1)^2 x
            heads`` for global attention.
    """

    def __init__(self, image_size: int = 28, patch: int = 7, in_channels: int = 1, dim: int = 32, depth: int = 2,
                 heads: int = 4, mlp_ratio: float = 2.0, window: int | None = 2, positions: str = "learned",
                 causal: bool = False, n_classes: int | None = 10, stem: int = 0, embed: str = "patch",
                 stem_depth: int = 1, pool: str = "mean", rel_pos: bool = False):
        super().__init__()
        self.grid = grid = check_grid(image_size, patch, window)
        if positions not in ("learned", "sinusoidal"):
            raise ConfigError(f"positions={positions!r} is invalid; expected 'learned' or 'sinusoidal'")
        if causal and window is not None:
            raise ConfigError(f"causal=True is invalid with window={window}; expected window=None (global)")
        if stem < 0:
            raise ConfigError(f"stem={stem} is invalid; expected 0 (no stem) or a positive number of channels")
        if stem_depth < 1:
            raise ConfigError(f"stem_depth={stem_depth} is invalid; expected a positive number of convolutions")
        if pool not in ("mean", "max"):
            raise ConfigError(f"pool={pool!r} is invalid; expected 'mean' or 'max'")
        if embed not in ("patch", "conv"):
            raise ConfigError(f"embed={embed!r} is invalid; expected 'patch' or 'conv'")
        if not isinstance(rel_pos, bool):
            raise ConfigError(f"rel_pos={rel_pos!r} is invalid; expected True or False")
        self.image_size, self.patch, self.in_channels, self.pool = image_size, patch, in_channels, pool
        self.stem = nn.Sequential(*[m for i in range(stem_depth) for m in (
            nn.Conv2d(stem if i else in_channels, stem, 3, padding=1), nn.GELU())]) if stem else None
        if embed == "patch":
            self.embed = nn.Conv2d(stem or in_channels, dim, patch, stride=patch)
        else:
            self.embed = conv_stem(stem or in_channels, dim, patch)
        if positions == "learned":
            self.pos = nn.Parameter(0.02 * torch.randn(grid * grid, dim))
        else:
            self.register_buffer("pos", sinusoidal_2d(grid, dim), persistent=False)
        shift = 0 if window is None or window == grid else window // 2
        self.blocks = nn.ModuleList(Block(dim, heads, grid, window, shift if i % 2 else 0, mlp_ratio, causal,
                                          rel_pos) for i in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes) if n_classes else None

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, N, D)
        if x.dim() == 3:
            x = x[:, None]
        if tuple(x.shape[1:]) != (self.in_channels, self.image_size, self.image_size):
            raise ConfigError(f"image shape {tuple(x.shape[1:])} is invalid; expected "
                              f"({self.in_channels}, {self.image_size}, {self.image_size})")
        if self.stem is not None:
            x = self.stem(x)  # (B, stem, H, W)
        t = self.embed(x).permute(0, 2, 3, 1)  # (B, G, G, D)
        t = t + self.pos.view(self.grid, self.grid, -1)
        for blk in self.blocks:
            t = blk(t)
        return self.norm(t.flatten(1, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, n_classes) or (B, N, D)
        z = self.encode(x)
        if self.head is None:
            return z
        return self.head(z.mean(1) if self.pool == "mean" else z.amax(1))
