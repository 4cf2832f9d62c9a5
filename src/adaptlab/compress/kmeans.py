"""k-means (weight-sharing) quantization and quantization-aware training of the centroids.

An n-bit k-means quantized tensor stores a codebook of K = 2^n float32 centroids and one n-bit label per
element; the weights are W_ij = c[label_ij]. Lloyd's algorithm fits the codebook (linear initialisation
between min and max, as Han et al. found best for keeping the rare large weights):

    label_ij = argmin_k |W_ij - c_k|,      c_k = mean{W_ij : label_ij = k}        (repeat)

Quantization-aware training keeps the labels fixed and trains the centroids: with W = c[labels], the chain
rule gives dL/dc_k = sum_{ij: label_ij = k} dL/dW_ij, which is exactly what autograd computes for the gather
``codebook[labels]``. :func:`kmeans_params` builds that gather as a pure function of the codebooks, so QAT is
ordinary training of ``{name: codebook}`` leaves through ``torch.func.functional_call``.

Size: numel * n bits of labels + 2^n * 32 bits of codebook per tensor (see :mod:`adaptlab.compress.size`).

References:
    S. Han, H. Mao, W. Dally. Deep compression: compressing deep neural networks with pruning, trained
    quantization and Huffman coding. ICLR 2016.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from adaptlab.errors import ConfigError


@dataclass
class KMeansCode:
    """One k-means quantized tensor: ``codebook`` (2^bits,) float, ``labels`` (numel,) int64, ``shape``."""

    codebook: torch.Tensor
    labels: torch.Tensor
    shape: tuple[int, ...]
    bits: int

    def decode(self, codebook: torch.Tensor | None = None) -> torch.Tensor:
        """W = codebook[labels] reshaped; pass a (trainable) ``codebook`` to differentiate through it."""
        c = self.codebook if codebook is None else codebook
        return c[self.labels].view(self.shape)


def check_bits(bits: int, key: str = "bits") -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
        raise ConfigError(f"{key}={bits!r} is invalid; expected an integer number of bits in 1..16")
    return bits


def _assign(x: torch.Tensor, codebook: torch.Tensor, chunk: int = 1 << 16) -> torch.Tensor:
    """Nearest-centroid labels of the flat tensor ``x``: (numel,) -> (numel,) int64 (chunked for memory)."""
    return torch.cat([(x[i:i + chunk, None] - codebook[None]).abs().argmin(dim=1)
                      for i in range(0, x.numel(), chunk)])


@torch.no_grad()
def kmeans_quantize(tensor: torch.Tensor, bits: int, iters: int = 30) -> KMeansCode:
    """Fit a 2^bits-entry codebook to ``tensor`` with Lloyd's algorithm (deterministic linear init).

    Args:
        tensor: any shape (float).
        bits: label width n; K = 2^n centroids.
        iters: Lloyd iterations (stops early when the labels stop changing).

    Returns:
        :class:`KMeansCode`; ``decode()`` has at most 2^bits distinct values. An empty cluster keeps its
        previous centroid.
    """
    check_bits(bits)
    x = tensor.detach().flatten().to(torch.float32)                # (numel,)
    k = 2 ** bits
    lo, hi = float(x.min()), float(x.max())
    codebook = torch.linspace(lo, hi, k, dtype=x.dtype, device=x.device)  # (K,)
    labels = _assign(x, codebook)
    for _ in range(iters):
        sums = x.new_zeros(k).index_add_(0, labels, x)
        counts = x.new_zeros(k).index_add_(0, labels, torch.ones_like(x))
        codebook = torch.where(counts > 0, sums / counts.clamp_min(1), codebook)
        new = _assign(x, codebook)
        if torch.equal(new, labels):
            break
        labels = new
    return KMeansCode(codebook.to(tensor.dtype), labels, tuple(tensor.shape), bits)


def quantize_model_kmeans(params: Mapping[str, torch.Tensor], names, bits: int, iters: int = 30
                          ) -> dict[str, KMeansCode]:
    """k-means quantize each named tensor of a parameter dict: ``{name: KMeansCode}``."""
    check_bits(bits)
    return {n: kmeans_quantize(params[n], bits, iters) for n in names}


def kmeans_params(params: Mapping[str, torch.Tensor], codes: Mapping[str, KMeansCode],
                  codebooks: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Pure: a parameter dict whose quantized tensors are ``codebook[labels]`` (others passed through).

    With ``codebooks`` (trainable leaves, e.g. during QAT) gradients flow into them: dL/dc_k is the sum of
    dL/dW over the weights labelled k.
    """
    out = dict(params)
    for n, code in codes.items():
        out[n] = code.decode(None if codebooks is None else codebooks[n])
    return out


def centroid_gradient(grad_w: torch.Tensor, code: KMeansCode) -> torch.Tensor:
    """The explicit centroid gradient dL/dc_k = sum over label==k of dL/dW: (shape) -> (2^bits,).

    Equal to what autograd gives through :meth:`KMeansCode.decode`; kept as the readable reference.
    """
    k = code.codebook.numel()
    return grad_w.flatten().new_zeros(k).index_add_(0, code.labels, grad_w.flatten())
