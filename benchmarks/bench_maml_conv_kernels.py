"""Grouped vs per-task vs plain convolutions of Conv4's three layer shapes (T = 32 tasks of 5 images), 1 thread.

    python benchmarks/bench_maml_conv_kernels.py

Prints, per (input channels, side), the minimum of 7 CPU times (ms, ``time.process_time``) of the forward and of
``aten::convolution_backward`` (input and/or weight gradient) for one grouped convolution over the folded
tasks, the same in channels_last, a plain convolution over all images with shared weights, and a per-task loop.
The output is quoted in ``benchmarks/results/maml_conv_fold.md``.
"""

from __future__ import annotations

import os
import time

import torch
import torch.nn.functional as F


def tm(f, r=7):
    f()
    ts = []
    for _ in range(r):
        c0 = time.process_time()
        f()
        ts.append(time.process_time() - c0)
    return round(min(ts) * 1e3, 1)


def layer(C_in: int, H: int, T: int = 32, n: int = 5, C: int = 64) -> dict:
    s, cb = [1, 1], torch.ops.aten.convolution_backward
    x, w = torch.randn(n, T * C_in, H, H), torch.randn(T * C, C_in, 3, 3)
    xp, wp = torch.randn(n * T, C_in, H, H), torch.randn(C, C_in, 3, 3)
    xl, wl = [torch.randn(n, C_in, H, H) for _ in range(T)], [torch.randn(C, C_in, 3, 3) for _ in range(T)]
    gy, gyl = torch.randn(n, T * C, H, H), [torch.randn(n, C, H, H) for _ in range(T)]
    xcl, gycl = (v.contiguous(memory_format=torch.channels_last) for v in (x, gy))

    def bwd(g, a, b, groups, mask):
        return cb(g, a, b, None, s, s, s, False, [0, 0], groups, mask)
    return {"fwd grouped": tm(lambda: F.conv2d(x, w, padding=1, groups=T)),
            "fwd grouped CL": tm(lambda: F.conv2d(xcl, w, padding=1, groups=T)),
            "fwd plain": tm(lambda: F.conv2d(xp, wp, padding=1)),
            "fwd loop": tm(lambda: [F.conv2d(a, b, padding=1) for a, b in zip(xl, wl)]),
            "bwd gx+gw grouped": tm(lambda: bwd(gy, x, w, T, [True, True, False])),
            "bwd gw grouped": tm(lambda: bwd(gy, x, w, T, [False, True, False])),
            "bwd gx grouped": tm(lambda: bwd(gy, x, w, T, [True, False, False])),
            "bwd gx+gw grouped CL": tm(lambda: bwd(gycl, xcl, w, T, [True, True, False])),
            "bwd gx+gw loop": tm(lambda: [bwd(g, a, b, 1, [True, True, False]) for g, a, b in zip(gyl, xl, wl)]),
            "bwd gx plain": tm(lambda: bwd(gy.view(n * T, C, H, H), xp, wp, 1, [True, False, False]))}


def main() -> None:
    torch.set_num_threads(1)
    for C_in, H in ((1, 28), (64, 14), (64, 7)):
        print(C_in, H, layer(C_in, H), flush=True)
    print(os.getloadavg())


if __name__ == "__main__":
    main()
