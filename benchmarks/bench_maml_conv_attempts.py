"""What was tried to make MAML on Conv4 beat the per-task loop on CPU, each measured against the loop.

    python benchmarks/bench_maml_conv_attempts.py     # writes benchmarks/results/maml_conv_attempts.{json,md}

1. **Per-sample-gradient trick for the shared-theta support pass** (one conv layer of Conv4: 64 -> 64
   channels, 14x14, T = 32 tasks of 5 images). Before the first inner step every task has the same weights, so
   the forward is one plain convolution over all T*n images; the per-task weight gradients are then
   ``einsum(grad_output, unfold(input))`` summed within each task (the differential-privacy recipe).
   Compared with a per-task loop of convolutions and with one grouped convolution (tasks folded into
   channels), each taking the per-task gradient with ``create_graph=True``, one adapted step and the
   backward to theta.
2. **Hand-batched adapted forward**: the same layer with per-task weights, as ``unfold`` + one batched matmul
   (``bmm`` over tasks) instead of the grouped convolution.
3. **channels_last** memory format for the folded Conv4 meta-step.
4. **torch.compile** of ``Conv4.forward_tasks`` (first order: compile time and steady-state time; second order:
   whether it runs at all).

Everything is interleaved (A, B, C, A, B, C, ...) and the medians are reported with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]


def _interleaved(fns: dict, repeats: int, clock=time.perf_counter) -> dict:
    for f in fns.values():
        f()                                                         # warm-up
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = clock()
            f()
            times[k].append(clock() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def layer_attempts(repeats: int, T: int = 32, n: int = 5, C: int = 64, H: int = 14) -> dict:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(T, n, C, H, H, generator=g).requires_grad_()      # (T, n, C, H, W)
    theta = (0.05 * torch.randn(C, C, 3, 3, generator=g)).requires_grad_()

    def out(w, how):  # per-task weights w (T, O, C, 3, 3) -> (T, n, O, H, W)
        if how == "loop":
            return torch.stack([F.conv2d(x[t], w[t], padding=1) for t in range(T)])
        if how == "grouped":
            y = F.conv2d(x.transpose(0, 1).reshape(n, T * C, H, H), w.reshape(T * C, C, 3, 3), padding=1,
                         groups=T)                                      # (n, T*O, H, W)
            return y.reshape(n, T, C, H, H).transpose(0, 1)
        u = F.unfold(x.reshape(T * n, C, H, H), 3, padding=1).reshape(T, n, C * 9, H * H)
        y = torch.bmm(w.reshape(T, C, C * 9), u.transpose(1, 2).reshape(T, C * 9, n * H * H))  # (T, O, n*L)
        return y.reshape(T, C, n, H, H).transpose(1, 2)

    def support_grad(how):  # per-task gradients of sum_t ||y_t||^2 at the shared theta
        if how == "persample":
            y = F.conv2d(x.reshape(T * n, C, H, H), theta, padding=1)  # one plain conv over all images
            (gy,) = torch.autograd.grad((y ** 2).sum(), y, create_graph=True)
            u = F.unfold(x.reshape(T * n, C, H, H), 3, padding=1).reshape(T, n, C * 9, H * H)
            return torch.einsum("tnol,tnkl->tok", gy.reshape(T, n, C, H * H), u).reshape(T, C, C, 3, 3)
        w = theta.unsqueeze(0).expand(T, *theta.shape)
        return torch.autograd.grad((out(w, how) ** 2).sum(), w, create_graph=True)[0]

    def step(support, query):
        w = theta - 1e-3 * support_grad(support)                       # one adapted step, (T, O, C, 3, 3)
        torch.autograd.grad((out(w, query) ** 2).sum(), [theta, x])

    ref = support_grad("loop")
    check = {h: float((support_grad(h) - ref).norm() / ref.norm()) for h in ("grouped", "persample")}
    fns = {"loop / loop": lambda: step("loop", "loop"), "grouped / grouped": lambda: step("grouped", "grouped"),
           "per-sample trick / loop": lambda: step("persample", "loop"),
           "per-sample trick / grouped": lambda: step("persample", "grouped"),
           "grouped / unfold+bmm": lambda: step("grouped", "unfold")}
    med = _interleaved(fns, repeats)
    return {"shape": {"T": T, "n": n, "C": C, "H": H}, "seconds_median": med,
            "speedup_vs_loop": {k: med["loop / loop"] / v for k, v in med.items()},
            "support_grad_rel_diff_vs_loop": check}


def _meta_step(model, params, batch, first_order, forward_tasks):
    from adaptlab.meta.maml import _sgd_steps

    T = batch.support_y.shape[0]

    def losses(p, x, y):
        return torch.vmap(F.cross_entropy)(forward_tasks(p, {}, x), y)  # (T,)

    fast = _sgd_steps({k: v.expand(T, *v.shape) for k, v in params.items()},
                      lambda p: losses(p, batch.support_x, batch.support_y).sum(), 1, 0.4, first_order)
    torch.autograd.grad(losses(fast, batch.query_x, batch.query_y).mean(), list(params.values()))


def model_attempts(repeats: int, T: int, compile_: bool, compile_only: bool = False) -> dict:
    from adaptlab.models.conv4 import Conv4
    from adaptlab.tasks.batch import SupportQuery

    torch.manual_seed(0)
    model = Conv4(n_classes=5)
    params = dict(model.named_parameters())
    g = torch.Generator().manual_seed(0)
    y = torch.arange(5).repeat(T, 1)
    batch = SupportQuery(torch.randn(T, 5, 1, 28, 28, generator=g), y, torch.randn(T, 5, 1, 28, 28, generator=g), y)

    def folded_cl(p, b, x):  # channels_last from the first grouped convolution on
        T_, n = x.shape[:2]
        h = x.transpose(0, 1).reshape(n, T_ * x.shape[2], *x.shape[3:]).contiguous(memory_format=torch.channels_last)
        return _forward_from(model, p, h, T_, n)

    res = {}
    for first_order in (() if compile_only else (False, True)):
        fns = {"folded (eager)": lambda fo=first_order: _meta_step(model, params, batch, fo, model.forward_tasks),
               "folded channels_last": lambda fo=first_order: _meta_step(model, params, batch, fo, folded_cl)}
        res["first" if first_order else "second"] = _interleaved(fns, repeats)
    if compile_:
        compiled = torch.compile(model.forward_tasks, dynamic=False)
        out = {}
        t0 = time.perf_counter()
        _meta_step(model, params, batch, True, compiled)
        out["first_call_s"] = time.perf_counter() - t0
        fns = {"folded (eager)": lambda: _meta_step(model, params, batch, True, model.forward_tasks),
               "folded torch.compile": lambda: _meta_step(model, params, batch, True, compiled)}
        out["first_order_steady_state_s"] = _interleaved(fns, repeats)
        if compile_only:  # a loaded machine: CPU seconds of this process too
            out["first_order_steady_state_cpu_s"] = _interleaved(fns, repeats, time.process_time)
        torch._dynamo.reset()  # a fresh compilation without donated buffers (they forbid create_graph outright)
        torch._functorch.config.donated_buffer = False
        try:
            _meta_step(model, params, batch, False, torch.compile(model.forward_tasks, dynamic=False))
            out["second_order"] = "ran"
        except Exception as e:  # noqa: BLE001 - the failure is the measurement
            out["second_order"] = f"{type(e).__name__}: {str(e)[:160]}"
        res["torch.compile"] = out
    return {"T": T, **res}


def _forward_from(model, params, h, T, n):
    """Conv4.forward_tasks after the input fold (used by the channels_last attempt)."""
    for i in range(4):
        w = params[f"features.{i}.0.weight"]
        h = F.conv2d(h, w.reshape(-1, *w.shape[2:]), params[f"features.{i}.0.bias"].reshape(-1), padding=1, groups=T)
        h = F.batch_norm(h, None, None, params[f"features.{i}.1.weight"].reshape(-1),
                         params[f"features.{i}.1.bias"].reshape(-1), training=True)
        h = F.max_pool2d(F.relu(h), 2)
    z = h.reshape(n, T, -1).transpose(0, 1)
    return torch.baddbmm(params["head.bias"].unsqueeze(1), z, params["head.weight"].transpose(1, 2))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--meta-batch", type=int, default=32)
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile attempt (minutes to compile)")
    p.add_argument("--compile-only", action="store_true",
                   help="only the torch.compile attempt; writes maml_conv_compile.{json,md}")
    a = p.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    if a.compile_only:
        res = model_attempts(a.repeats, a.meta_batch, True, compile_only=True)
        meta = {"nproc": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
                "torch": torch.__version__, "threads": 1,
                "command": "python benchmarks/bench_maml_conv_attempts.py " + " ".join(sys.argv[1:])}
        out = ROOT / "benchmarks" / "results"
        (out / "maml_conv_compile.json").write_text(json.dumps({"meta": meta, **res}, indent=1) + "\n")
        c = res["torch.compile"]
        st, cs = c["first_order_steady_state_s"], c["first_order_steady_state_cpu_s"]
        lines = [f"# torch.compile of Conv4.forward_tasks, first-order MAML meta-step, T = {a.meta_batch}, 1 inner "
                 f"step (CPU, {meta['nproc']} cores, 1 thread, load average {load_before[0]:.1f} before / "
                 f"{meta['loadavg_after'][0]:.1f} after; shared machine)", "",
                 f"Command: `{meta['command']}`; torch {meta['torch']}; medians of {a.repeats} interleaved repeats "
                 "(wall seconds).", "",
                 f"First call (compilation): {c['first_call_s']:.1f} s. Steady state: compiled "
                 f"{st['folded torch.compile']:.3f} s vs eager {st['folded (eager)']:.3f} s "
                 f"({st['folded (eager)'] / st['folded torch.compile']:.2f}x); CPU seconds: compiled "
                 f"{cs['folded torch.compile']:.3f} vs eager {cs['folded (eager)']:.3f} "
                 f"({cs['folded (eager)'] / cs['folded torch.compile']:.2f}x). Second order: {c['second_order']}."]
        (out / "maml_conv_compile.md").write_text("\n".join(lines) + "\n")
        return print("\n".join(lines))
    res = {"layer": layer_attempts(a.repeats), "model": model_attempts(a.repeats, a.meta_batch, not a.no_compile)}
    meta = {"nproc": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
            "torch": torch.__version__, "python": platform.python_version(), "threads": 1,
            "command": "python benchmarks/bench_maml_conv_attempts.py " + " ".join(sys.argv[1:])}
    out = ROOT / "benchmarks" / "results"
    (out / "maml_conv_attempts.json").write_text(json.dumps({"meta": meta, **res}, indent=1) + "\n")
    L, M = res["layer"], res["model"]
    lines = [f"# MAML on Conv4: attempts against the per-task loop (CPU, {meta['nproc']} cores, 1 thread, load "
             f"average {load_before[0]:.1f} before / {meta['loadavg_after'][0]:.1f} after; shared machine)", "",
             f"Command: `{meta['command']}`; torch {meta['torch']}; medians of {a.repeats} interleaved repeats.", "",
             f"One conv layer (64 -> 64, {L['shape']['H']}x{L['shape']['H']}, T = {L['shape']['T']} tasks of "
             f"{L['shape']['n']} images): per-task support gradient at the shared theta (create_graph), one "
             "adapted step, adapted forward, backward to theta. Speed-up = loop time / time.", "",
             "| support gradient / adapted forward | ms | speed-up vs loop |", "|---|---|---|"]
    lines += [f"| {k} | {v * 1e3:.1f} | {L['speedup_vs_loop'][k]:.2f}x |" for k, v in L["seconds_median"].items()]
    lines += ["", f"Per-task support gradients, rel. difference to the loop: grouped "
              f"{L['support_grad_rel_diff_vs_loop']['grouped']:.1e}, per-sample trick "
              f"{L['support_grad_rel_diff_vs_loop']['persample']:.1e}.", "",
              f"Whole Conv4 meta-step, 5-way 1-shot, 1 query per class, T = {M['T']}, 1 inner step (seconds):", "",
              "| order | folded (eager) | folded channels_last | channels_last / eager |", "|---|---|---|---|"]
    for order in ("second", "first"):
        r = M[order]
        lines.append(f"| {order} | {r['folded (eager)']:.3f} | {r['folded channels_last']:.3f} | "
                     f"{r['folded channels_last'] / r['folded (eager)']:.2f} |")
    if "torch.compile" in M:
        c = M["torch.compile"]
        st = c["first_order_steady_state_s"]
        lines += ["", "torch.compile of `Conv4.forward_tasks` (`dynamic=False`): first order, first call "
                  f"(compilation) {c['first_call_s']:.1f} s; steady state "
                  f"{st['folded torch.compile']:.3f} s vs eager {st['folded (eager)']:.3f} s "
                  f"({st['folded (eager)'] / st['folded torch.compile']:.2f}x); second order: "
                  f"{c['second_order']}."]
    (out / "maml_conv_attempts.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
