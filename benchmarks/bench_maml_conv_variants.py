"""What each change to the folded Conv4 MAML path gives, measured on the whole meta-step against the loop.

    python benchmarks/bench_maml_conv_variants.py 32 1 0 loop,old,split,pool,bn,default   # T K first_order variants
    REP=5 python benchmarks/bench_maml_conv_variants.py 32 1 1 loop,default,k1-8-8-8
    THREADS=2 OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_maml_conv_variants.py 32 1 0 loop,default,bn,vmap

One MAML meta-step (meta-loss and its gradient) of 5-way 1-shot Omniglot, 1 query per class, Conv4 with 64
channels, inner lr 0.4 (the batch of ``bench_omniglot.py --part maml-paths``), with ``Conv4.forward_tasks``
replaced by each variant (the cumulative changes of this round, then the chunk sizes tried):

* ``old``: the previous round's folded path: every layer in chunks of 4 tasks taken by slicing the per-task
  parameters, torch's batch norm and ``max_pool2d``;
* ``split``: ``old`` with the chunks taken by ``Tensor.split`` (one concatenation in the backward instead of a
  zero-filled ``(T, ...)`` tensor per slice);
* ``pool``: ``split`` + :func:`adaptlab.models.fastops.max_pool2`;
* ``bn``: ``pool`` + :func:`adaptlab.models.fastops.batch_norm_train` (closed-form double backward);
* ``kA-B-C-D``: ``bn`` with A, B, C, D tasks per chunk at the 28, 14, 7, 3 px layers;
  ``layer4M``: per-layer chunks of a 4 MiB budget (4, 16, 66, 32);
* ``bmm1``: ``k1-4-16-32`` with the first convolution as unfold + one batched matmul per chunk;
* ``cl1``: ``bn`` with the first block (convolution, batch norm, native pooling) in ``channels_last``;
* ``default``: the library's ``Conv4.forward_tasks`` (per-layer chunks of ``Conv4.fold_bytes`` = 1 MiB:
  1, 4, 16, 32); ``loop``: learn2learn's per-task clone()/adapt() loop (``bench_omniglot._l2l_loop``);
  ``vmap``: ``vectorize=True``. ``THREADS`` (default 1) sets torch's intra-op threads.

Prints each variant's meta-gradient relative difference to the loop (float32), then the CPU seconds
(``time.process_time``; one thread) of ``REP`` interleaved rounds (default 3), their median, loop median /
variant median, and the load average. Output in ``benchmarks/results/maml_conv_profile.md``.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from adaptlab.meta.maml import maml_meta_loss  # noqa: E402
from adaptlab.models.conv4 import Conv4  # noqa: E402
from adaptlab.models.fastops import batch_norm_train, max_pool2  # noqa: E402
from bench_omniglot import _episodes, _l2l_loop  # noqa: E402


def make(chunks=(4, 4, 4, 4), split=True, pool=True, bn=True, cl1=False, bmm1=False):
    """A folded ``forward_tasks`` (no running statistics) with ``chunks[i]`` tasks per chunk at block i."""
    def block(i, h, p, c):
        pre = f"features.{i}."
        w = p[pre + "0.weight"]                                               # (c, O, C, 3, 3)
        if bmm1 and i == 0:                                                   # conv as unfold + bmm
            n, _, H, W = h.shape
            C, O = w.shape[2], w.shape[1]
            U = F.unfold(h.transpose(0, 1).reshape(c * n, C, H, W), 3, padding=1)          # (c*n, C*9, HW)
            U = U.view(c, n, C * 9, H * W).transpose(1, 2).reshape(c, C * 9, n * H * W)
            out = torch.baddbmm(p[pre + "0.bias"].unsqueeze(-1), w.reshape(c, O, C * 9), U)  # (c, O, n*HW)
            h = out.view(c * O, n, H * W).transpose(0, 1).reshape(n, c * O, H, W)
        else:
            if cl1 and i == 0:
                h = h.contiguous(memory_format=torch.channels_last)
            h = F.conv2d(h, w.reshape(-1, *w.shape[2:]), p[pre + "0.bias"].reshape(-1), padding=1, groups=c)
        gw, gb = p[pre + "1.weight"].reshape(-1), p[pre + "1.bias"].reshape(-1)
        h = batch_norm_train(h, gw, gb) if bn else F.batch_norm(h, None, None, gw, gb, training=True)
        if cl1 and i == 0:
            return F.relu(F.max_pool2d(h, 2)).contiguous()
        return F.relu(max_pool2(h) if pool else F.max_pool2d(h, 2))

    def forward_tasks(self, params, buffers, x):
        T, n = x.shape[:2]
        hs, prev = [x.transpose(0, 1).reshape(n, T * x.shape[2], *x.shape[3:])], T
        for i in range(4):
            c = min(T, chunks[i])
            if c != prev:
                if c > prev and c % prev == 0:
                    hs = [torch.cat(hs[j:j + c // prev], 1) for j in range(0, len(hs), c // prev)]
                else:
                    h = torch.cat(hs, 1)
                    hs = list(h.split(c * (h.shape[1] // T), 1))
                prev = c
            names = [k for k in params if k.startswith(f"features.{i}.")]
            if split:
                sp = {k: params[k].split(c) for k in names}
                parts = [{k: sp[k][j] for k in names} for j in range(len(hs))]
            else:
                parts = [{k: params[k][j * c:(j + 1) * c] for k in names} for j in range(len(hs))]
            hs = [block(i, h, p, p[f"features.{i}.0.weight"].shape[0]) for h, p in zip(hs, parts)]
        z = torch.cat(hs, 1).reshape(n, T, -1).transpose(0, 1)
        return torch.baddbmm(params["head.bias"].unsqueeze(1), z, params["head.weight"].transpose(1, 2))
    return forward_tasks


VARIANTS = {"old": make(split=False, pool=False, bn=False), "split": make(pool=False, bn=False),
            "pool": make(bn=False), "bn": make(), "layer4M": make((4, 16, 66, 32)),
            "bmm1": make((1, 4, 16, 32), bmm1=True), "cl1": make(cl1=True)}
for _ks in ("1-4-16-32", "1-4-4-4", "1-8-8-8", "2-4-4-4", "1-2-4-8", "1-1-1-1", "2-8-16-32", "1-8-32-32", "1-1-16-32",
            "2-8-32-32", "4-16-32-32", "1-16-32-32"):
    VARIANTS["k" + _ks] = make(tuple(int(v) for v in _ks.split("-")))


def main() -> None:
    torch.set_num_threads(int(os.environ.get("THREADS", 1)))
    torch.manual_seed(0)
    model = Conv4(n_classes=5)
    params = dict(model.named_parameters())
    leaves = list(params.values())
    sampler, g = _episodes(5, 1, 1, 1)
    T, K, fo = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
    b = {t: sampler.sample(t, g) for t in (8, 32)}[T]  # the grid's batches
    sel = sys.argv[4].split(",")
    native = Conv4.forward_tasks

    def run(name):
        if name == "loop":
            return torch.autograd.grad(_l2l_loop(model, params, b, K, 0.4, fo), leaves)
        if name == "vmap":
            return torch.autograd.grad(maml_meta_loss(params, {}, b, model=model, loss_fn=F.cross_entropy, steps=K,
                                                      lr=0.4, first_order=fo, vectorize=True)[0], leaves)
        Conv4.forward_tasks = VARIANTS.get(name, native)  # "default": the library's own
        try:
            return torch.autograd.grad(maml_meta_loss(params, {}, b, model=model, loss_fn=F.cross_entropy, steps=K,
                                                      lr=0.4, first_order=fo, vectorize="folded")[0], leaves)
        finally:
            Conv4.forward_tasks = native

    ref = torch.cat([x.flatten() for x in run("loop")])
    for name in sel:
        gr = torch.cat([x.flatten() for x in run(name)])
        print(f"{name} meta-grad rel. diff vs loop {float((gr - ref).norm() / ref.norm()):.1e}", flush=True)
    cpu = {k: [] for k in sel}
    for _ in range(int(os.environ.get("REP", 3))):
        for name in sel:                                                  # interleaved
            c0 = time.process_time()
            run(name)
            cpu[name].append(time.process_time() - c0)
    lo = statistics.median(cpu["loop"]) if "loop" in cpu else float("nan")
    print(f"T={T} K={K} order {1 if fo else 2}, {torch.get_num_threads()} thread(s); CPU s per meta-step, median of "
          f"{len(cpu[sel[0]])}:")
    for k, v in cpu.items():
        m = statistics.median(v)
        print(f"{k:12s} median {m:.3f}  loop/this {lo / m:.2f}x  runs {[round(a, 3) for a in v]}", flush=True)
    print("load", [round(v, 1) for v in os.getloadavg()])


if __name__ == "__main__":
    main()
