"""Where the folded Conv4 MAML step spends its time, and what each change to ``forward_tasks`` gives.

    python benchmarks/bench_maml_conv_fold.py 32 5 0 loop,orig,pc8,gc8,pc4          # T K first_order variants
    REP=5 python benchmarks/bench_maml_conv_fold.py 32 1 0 loop,orig,pool_relu,gconv,pc8,gc8,pc4
    REP=1 PROF=gconv SHAPES=1 python benchmarks/bench_maml_conv_fold.py 32 1 0 gconv   # + a torch.profiler table

One MAML meta-step (meta-loss and its gradient) of 5-way 1-shot Omniglot, 1 query per class, Conv4 with 64
channels, inner lr 0.4, on the folded path with ``Conv4.forward_tasks`` replaced by each variant:

* ``orig``: the folded forward before this benchmark (all T tasks in one grouped convolution per layer,
  native batch norm, ReLU then max-pool);
* ``pool_relu``: max-pool then ReLU (they commute exactly, values and gradients; 4x fewer ReLU elements);
* ``bn_manual``: batch norm written out as mean / variance / affine ops (autograd differentiates those instead
  of the native batch-norm double backward);
* ``gconv``: the grouped convolution as a custom autograd Function whose backward is one
  ``aten::convolution_backward`` and whose double backward is two grouped convolutions and two
  ``convolution_backward`` calls (torch's own grouped-convolution double backward loops over the groups);
* ``cN`` / ``pcN`` / ``gcN``: ``orig`` / ``pool_relu`` / ``gconv`` folded in chunks of N tasks;
* ``loop``: learn2learn's per-task clone()/adapt() loop (``bench_omniglot._l2l_loop``).

It prints each variant's meta-gradient relative difference to ``orig`` (float32), then the CPU seconds
(``time.process_time``; one thread) and wall seconds of ``REP`` interleaved rounds (default 2) and the load
average. Used to choose ``Conv4.fold_bytes``; its outputs are in ``benchmarks/results/maml_conv_fold.md``.
"""

from __future__ import annotations

import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from adaptlab.meta.maml import maml_meta_loss  # noqa: E402
from adaptlab.models.conv4 import Conv4  # noqa: E402
from bench_omniglot import _episodes, _l2l_loop  # noqa: E402


class GConvBack(torch.autograd.Function):
    """(gx, gw) of a grouped 3x3 convolution (padding 1), differentiable once more by grouped convolutions."""

    @staticmethod
    def forward(ctx, gy, x, w, T):
        ctx.save_for_backward(gy, x, w)
        ctx.T = T
        gx, gw, _ = torch.ops.aten.convolution_backward(gy, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], T,
                                                         [True, True, False])
        return gx, gw

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, ggx, ggw):
        gy, x, w = ctx.saved_tensors
        T = ctx.T
        g_gy = g_x = g_w = None
        if ggx is not None:
            g_gy = F.conv2d(ggx, w, padding=1, groups=T)
            g_w = torch.ops.aten.convolution_backward(gy, ggx, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], T,
                                                      [False, True, False])[1]
        if ggw is not None:
            t = F.conv2d(x, ggw, padding=1, groups=T)
            g_gy = t if g_gy is None else g_gy + t
            g_x = torch.ops.aten.convolution_backward(gy, x, ggw, None, [1, 1], [1, 1], [1, 1], False, [0, 0], T,
                                                      [True, False, False])[0]
        return g_gy, g_x, g_w, None


class GConv(torch.autograd.Function):
    """A grouped 3x3 convolution (padding 1) whose backward is :class:`GConvBack`."""

    @staticmethod
    def forward(ctx, x, w, b, T):
        ctx.save_for_backward(x, w)
        ctx.T = T
        return F.conv2d(x, w, b, padding=1, groups=T)

    @staticmethod
    def backward(ctx, gy):
        x, w = ctx.saved_tensors
        gx, gw = GConvBack.apply(gy, x, w, ctx.T)
        return gx, gw, gy.sum((0, 2, 3)), None


def make(bn_manual, relu_after_pool, gconv):
    """A folded ``forward_tasks`` (no running statistics) with the given changes."""
    def forward_tasks(self, params, buffers, x):
        T, n = x.shape[:2]
        h = x.transpose(0, 1).reshape(n, T * x.shape[2], *x.shape[3:])          # (n, T*C, H, W)
        for i, block in enumerate(self.features):
            conv, bn = f"features.{i}.0.", f"features.{i}.1."
            w = params[conv + "weight"]
            if gconv:
                h = GConv.apply(h, w.reshape(-1, *w.shape[2:]), params[conv + "bias"].reshape(-1), T)
            else:
                h = F.conv2d(h, w.reshape(-1, *w.shape[2:]), params[conv + "bias"].reshape(-1), padding=1, groups=T)
            gw, gb = params[bn + "weight"].reshape(-1), params[bn + "bias"].reshape(-1)
            if bn_manual:
                mu = h.mean((0, 2, 3), keepdim=True)
                c = h - mu
                var = (c * c).mean((0, 2, 3), keepdim=True)
                h = c * (torch.rsqrt(var + block[1].eps) * gw.view(1, -1, 1, 1)) + gb.view(1, -1, 1, 1)
            else:
                h = F.batch_norm(h, None, None, gw, gb, training=True, eps=block[1].eps)
            h = F.relu(F.max_pool2d(h, 2)) if relu_after_pool else F.max_pool2d(F.relu(h), 2)
        z = h.reshape(n, T, -1).transpose(0, 1)
        return torch.baddbmm(params["head.bias"].unsqueeze(1), z, params["head.weight"].transpose(1, 2))
    return forward_tasks


def chunked(fwd, c):
    def f(self, params, buffers, x):
        T = x.shape[0]
        outs = [fwd(self, {k: v[i:i + c] for k, v in params.items()}, buffers, x[i:i + c]) for i in range(0, T, c)]
        return torch.cat(outs)
    return f


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = Conv4(n_classes=5)
    model.fold_bytes = 1 << 62  # the variants do their own chunking
    params = dict(model.named_parameters())
    sampler, g = _episodes(5, 1, 1, 1)
    T, K, fo = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
    b = sampler.sample(T, g)
    leaves = list(params.values())
    orig = make(False, False, False)
    variants = {"orig": orig, "pool_relu": make(False, True, False), "bn_manual": make(True, True, False),
                "gconv": make(False, True, True), "gconv_bnman": make(True, True, True)}
    for c in (2, 4, 8, 16):
        variants[f"c{c}"] = chunked(orig, c)
        variants[f"gc{c}"] = chunked(make(False, True, True), c)
        variants[f"pc{c}"] = chunked(make(False, True, False), c)
    sel = sys.argv[4].split(",") if len(sys.argv) > 4 else list(variants)
    native = Conv4.forward_tasks

    def run(name):
        if name == "loop":
            return torch.autograd.grad(_l2l_loop(model, params, b, K, 0.4, fo), leaves)
        Conv4.forward_tasks = variants[name]
        try:
            return torch.autograd.grad(maml_meta_loss(params, {}, b, model=model, loss_fn=F.cross_entropy, steps=K,
                                                      lr=0.4, first_order=fo, vectorize="folded")[0], leaves)
        finally:
            Conv4.forward_tasks = native

    ref = torch.cat([x.flatten() for x in run("orig")])
    for name in sel:
        gr = torch.cat([x.flatten() for x in run(name)])
        print(name, "rel diff", float((gr - ref).norm() / ref.norm()), flush=True)
    times = {k: [] for k in sel}
    for _ in range(int(os.environ.get("REP", 2))):
        for name in sel:
            c0, t0 = time.process_time(), time.perf_counter()
            run(name)
            times[name].append((time.process_time() - c0, time.perf_counter() - t0))
    for k, v in times.items():
        print(k, "cpu min", round(min(a for a, _ in v), 3), "cpu", [round(a, 2) for a, _ in v],
              "wall", [round(w, 2) for _, w in v], flush=True)
    print("load", os.getloadavg())
    if os.environ.get("PROF"):
        from torch.profiler import profile

        with profile(record_shapes=bool(os.environ.get("SHAPES"))) as p:
            run(os.environ["PROF"])
        if os.environ.get("SHAPES"):
            print(p.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=25,
                                                                  max_name_column_width=40,
                                                                  max_shapes_column_width=90))
        else:
            print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main()
