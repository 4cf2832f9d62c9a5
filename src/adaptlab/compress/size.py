"""Model size accounting in bits, and CPU latency measurement.

Conventions (the same as the deep-compression literature's "model size"):

* dense float: 32 bits per parameter;
* fine-grained pruned: 32 bits per *non-zero* parameter (the index overhead of a sparse format is not
  counted; a CSR matrix would add roughly 4-16 bits per non-zero);
* k-means n-bit: n bits per element of each quantized tensor + a 2^n x 32-bit codebook, other tensors 32 bits;
* int8 linear: see :meth:`adaptlab.compress.integer.IntegerCNN.size_bits`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping

import torch

MIB = 8 * 1024 * 1024  # bits in a MiB


def dense_bits(params: Mapping[str, torch.Tensor], bits: int = 32) -> int:
    """``bits`` per element of every tensor."""
    return sum(p.numel() for p in params.values()) * bits


def sparse_bits(params: Mapping[str, torch.Tensor], bits: int = 32) -> int:
    """``bits`` per non-zero element (pruned weights are free; index overhead not counted)."""
    return sum(int((p != 0).sum()) for p in params.values()) * bits


def kmeans_bits(params: Mapping[str, torch.Tensor], quantized: Mapping[str, int], float_bits: int = 32
                ) -> int:
    """n bits per element + 2^n float centroids for each ``quantized`` name (``{name: n}``); others 32-bit."""
    total = 0
    for name, p in params.items():
        n = quantized.get(name)
        total += p.numel() * n + (2 ** n) * float_bits if n is not None else p.numel() * float_bits
    return total


def mib(bits: int) -> float:
    return bits / MIB


@torch.no_grad()
def latency(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, repeats: int = 30, warmup: int = 5
            ) -> dict[str, float]:
    """Wall-clock time of ``fn(x)``: median / p10 / p90 over ``repeats`` calls in milliseconds."""
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return {"median_ms": statistics.median(times), "p10_ms": times[int(0.1 * (len(times) - 1))],
            "p90_ms": times[int(0.9 * (len(times) - 1))]}
