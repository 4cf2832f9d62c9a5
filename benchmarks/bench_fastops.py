"""fastops against torch's own kernels on the folded Conv4 activations (CPU, one thread).

    python benchmarks/bench_fastops.py

For a (5, 256, 28, 28) and a (5, 256, 14, 14) float32 tensor (5 images, 4 folded tasks of 64 channels: the
28 and 14 px layers of a 5-way 1-shot chunk) it prints the minimum of 7 CPU times (ms, ``time.process_time``)
of: ``F.max_pool2d(x, 2)`` and :func:`adaptlab.models.fastops.max_pool2`, forward and forward + backward;
``F.batch_norm(training=True)`` and :func:`~adaptlab.models.fastops.batch_norm_train`, forward + backward,
and the MAML pattern (a gradient taken with ``create_graph=True``, then differentiated). Output in
``benchmarks/results/maml_conv_profile.md``.
"""

from __future__ import annotations

import os
import time

import torch
import torch.nn.functional as F

from adaptlab.models.fastops import batch_norm_train, max_pool2


def tm(f, r: int = 7) -> float:
    f()
    ts = []
    for _ in range(r):
        c0 = time.process_time()
        f()
        ts.append(time.process_time() - c0)
    return round(min(ts) * 1e3, 2)


def native_bn(x, w, b):
    return F.batch_norm(x, None, None, w, b, training=True)


def one_shape(shape: tuple, g: torch.Generator) -> None:
    x = torch.randn(*shape, generator=g).requires_grad_()
    w = (torch.rand(shape[1], generator=g) + 0.5).requires_grad_()
    b = torch.randn(shape[1], generator=g).requires_grad_()
    v = torch.randn(*shape, generator=g)

    def fb_pool(f):
        return lambda: torch.autograd.grad(f(x).sum(), x)

    def fb_bn(f):
        return lambda: torch.autograd.grad((f(x, w, b) * v).sum(), (x, w, b))

    def maml_bn(f):
        def run():
            gx, gw = torch.autograd.grad((f(x, w, b) * v).sum(), (x, w), create_graph=True)
            return torch.autograd.grad((gx * v).sum() + gw.sum(), (x, w))
        return run
    with torch.no_grad():
        pool_f = {"max_pool2d": tm(lambda: F.max_pool2d(x, 2)), "max_pool2": tm(lambda: max_pool2(x))}
    print(shape, "pool forward", pool_f, "forward+backward",
          {"max_pool2d": tm(fb_pool(lambda t: F.max_pool2d(t, 2))), "max_pool2": tm(fb_pool(max_pool2))}, flush=True)
    print(shape, "batch norm forward+backward", {"torch": tm(fb_bn(native_bn)), "fastops": tm(fb_bn(batch_norm_train))},
          "grad with create_graph, then its grad",
          {"torch": tm(maml_bn(native_bn)), "fastops": tm(maml_bn(batch_norm_train))}, flush=True)


def main() -> None:
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    for shape in ((5, 256, 28, 28), (5, 256, 14, 14)):
        one_shape(shape, g)
    print("load", [round(v, 1) for v in os.getloadavg()])


if __name__ == "__main__":
    main()
