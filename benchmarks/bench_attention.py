"""Cost of global vs windowed attention as the image grows: counted FLOPs and measured time, log-log slopes.

Patch P = 8, width d = 64, 4 heads, batch 1. Image side H from 64 to 1024 px for K = 4 (grids 8..128) and
from 56 to 896 px for K = 7 (the grid H/8 must be a multiple of 7: 7..112). Three levels:

* ``core``: ``F.scaled_dot_product_attention`` on ready q, k, v (global: N tokens; windowed: N/K^2 windows of
  K^2 tokens, the shift mask included) — the ``O(D N^2)`` vs ``O(D N K^2)`` part alone;
* ``block``: one pre-norm transformer block (LayerNorm, qkv, attention, projection, MLP) of the ViT;
* ``vit``: the 2-layer d = 64 ViT (one plain, one shifted block), forward and forward + backward.

FLOPs are counted with :func:`adaptlab.eval.flops.count_flops` on meta tensors (every size, no compute);
time is the median of at least ``--repeats`` runs (more for fast calls, until they add up to 0.2 s), measured
as this process's CPU time on CPU (one thread: what an idle core takes, whatever the machine's load) and as
synchronised wall time on CUDA. Global attention is timed up to ``--max-global`` px for the core and the block
(1024: CPU SDPA never materialises the N x N scores there) and up to ``--max-global-vit`` px for the 2-layer ViT
(its forward + backward at 1024 px costs minutes of CPU); above, its cost is known from the counted FLOPs.
Slopes are least-squares fits of log(cost) against log(tokens) over the largest three measured sizes
(tokens ~ H^2, so slope s in tokens is 2s in H).

    python benchmarks/bench_attention.py               # writes benchmarks/results/attention.{json,md,png}
    python benchmarks/bench_attention.py --max-global-vit 1024 --repeats 5 --out /tmp/gpu --device cuda
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

OUT = Path(__file__).resolve().parent / "results"
SIZES = {4: [64, 128, 256, 512, 1024], 7: [56, 112, 224, 448, 896]}
P, D, HEADS = 8, 64, 4


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def median_time(fn, repeats: int, device: str, min_seconds: float = 0.2) -> float:
    """Median seconds of one call of ``fn``: CPU time of this process on CPU (one thread: what an idle core
    would take, whatever the machine's load), synchronised wall time on CUDA. At least ``repeats`` calls, more
    for fast calls until they add up to ``min_seconds``."""
    clock = time.perf_counter if device.startswith("cuda") else time.process_time
    fn()  # warm-up
    _sync(device)
    ts: list[float] = []
    while len(ts) < repeats or (sum(ts) < min_seconds and len(ts) < 1000):
        t0 = clock()
        fn()
        _sync(device)
        ts.append(clock() - t0)
    return statistics.median(ts)


def core_fn(h: int, k: int | None, device: str):
    """SDPA over ready q, k, v of an H-pixel image (global, or windows with the shift mask)."""
    from adaptlab.models.vit import shift_window_mask

    g = h // P
    if k is None:
        q = torch.randn(1, HEADS, g * g, D // HEADS, device=device)
        return lambda: F.scaled_dot_product_attention(q, q, q)
    nw = (g // k) ** 2
    q = torch.randn(nw, HEADS, k * k, D // HEADS, device=device)
    mask = shift_window_mask(g, k, k // 2, device=device)[:, None]  # (nW, 1, K^2, K^2)
    return lambda: F.scaled_dot_product_attention(q, q, q, attn_mask=mask)


def block_fn(h: int, k: int | None, device: str):
    from adaptlab.models.vit import Block

    g = h // P
    blk = Block(D, HEADS, g, window=k, shift=0 if k is None else k // 2).to(device).eval()
    x = torch.randn(1, g, g, D, device=device)
    return lambda: blk(x)


def vit_fn(h: int, k: int | None, device: str, backward: bool):
    from adaptlab.models.vit import ViT

    net = ViT(image_size=h, patch=P, dim=D, depth=2, heads=HEADS, window=k, n_classes=10).to(device)
    x = torch.randn(1, 1, h, h, device=device)
    if not backward:
        net.eval()
        return lambda: net(x)
    return lambda: net(x).square().sum().backward()


def build(level: str, h: int, k: int | None, device: str):
    if level == "core":
        return core_fn(h, k, device)
    if level == "block":
        return block_fn(h, k, device)
    return vit_fn(h, k, device, backward=level == "vit-fwd-bwd")


LEVELS = ("core", "block", "vit-fwd", "vit-fwd-bwd")


def counted_flops(level: str, h: int, k: int | None) -> int:
    from adaptlab.eval.flops import count_flops

    if level == "vit-fwd-bwd":
        return 0  # not counted (the forward count times ~3)
    with torch.device("meta"):
        fn = build(level, h, k, "meta")
    return count_flops(fn)


def slope(xs: list[float], ys: list[float]) -> float:
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def run(args) -> dict:
    torch.manual_seed(0)
    res: dict = {"machine": {"platform": platform.platform(), "torch": torch.__version__, "device": args.device,
                             "threads": torch.get_num_threads(), "load_avg": os.getloadavg()},
                 "patch": P, "dim": D, "heads": HEADS, "repeats": args.repeats, "max_global": args.max_global,
                 "max_global_vit": args.max_global_vit, "clock": "wall" if args.device.startswith("cuda") else "cpu",
                 "runs": {}}
    for k, sizes in SIZES.items():
        for level in LEVELS:
            for variant in ("global", f"window{k}"):
                if variant == "global" and k != 4 and level != "core":
                    continue  # global does not depend on K: measured once, with the K = 4 sizes
                key = f"{level}/{variant}" if variant != "global" else f"{level}/global@K{k}"
                rows = []
                for h in sizes:
                    kk = None if variant == "global" else k
                    row = {"H": h, "tokens": (h // P) ** 2, "flops": counted_flops(level, h, kk)}
                    limit = args.max_global if level in ("core", "block") else args.max_global_vit
                    if variant != "global" or h <= limit:
                        row["seconds"] = median_time(build(level, h, kk, args.device), args.repeats, args.device)
                    rows.append(row)
                    print(key, row, flush=True)
                res["runs"][key] = rows
    fits = {}
    for key, rows in res["runs"].items():
        timed = [r for r in rows if "seconds" in r][-3:]
        counted = [r for r in rows if r["flops"]][-3:]
        fits[key] = {"time_slope_tokens": slope([r["tokens"] for r in timed], [r["seconds"] for r in timed])
                     if len(timed) >= 2 else None,
                     "flops_slope_tokens": slope([r["tokens"] for r in counted], [r["flops"] for r in counted])
                     if len(counted) >= 2 else None,
                     "time_ratio_per_4x_tokens": [b["seconds"] / a["seconds"] for a, b in zip(timed, timed[1:])]}
    res["fits"] = fits
    res["speedup"] = {}
    for level in LEVELS:
        g = {r["H"]: r.get("seconds") for r in res["runs"][f"{level}/global@K4"]}
        w = {r["H"]: r.get("seconds") for r in res["runs"][f"{level}/window4"]}
        res["speedup"][level] = {str(h): g[h] / w[h] for h in g if g[h] and w[h]}
    return res


def markdown(res: dict, cmd: str) -> str:
    lines = ["# Global vs windowed attention: counted FLOPs and measured time", "",
             f"`{cmd}` on {res['machine']['device']} ({res['machine']['platform']}, torch {res['machine']['torch']}, "
             f"{res['machine']['threads']} thread(s), load average {res['machine']['load_avg'][0]:.2f}). "
             f"Patch {res['patch']}, d = {res['dim']}, {res['heads']} heads, batch 1; median of "
             f"{res['repeats']}+ runs of {res['clock']} time; global timed up to {res['max_global']} px "
             f"(core, block) and {res['max_global_vit']} px (ViT).", "",
             "Slopes: log-log least squares over the largest three sizes, in tokens N = (H/P)^2 "
             "(double them for H). Theory: global attention 2 (the (H/P)^4 law), windowed 1 ((H/P)^2 K^2).", "",
             "| run | FLOPs slope (tokens) | time slope (tokens) | time ratio per 4x tokens |", "|---|---|---|---|"]
    for key, f in res["fits"].items():
        fs = "—" if f["flops_slope_tokens"] is None else f"{f['flops_slope_tokens']:.2f}"
        ts = "—" if f["time_slope_tokens"] is None else f"{f['time_slope_tokens']:.2f}"
        lines.append(f"| {key} | {fs} | {ts} | {' → '.join(f'×{r:.1f}' for r in f['time_ratio_per_4x_tokens'])} |")
    lines += ["", "Speed-up of windowed (K = 4) over global, measured:", "",
              "| level | " + " | ".join(f"{h} px" for h in SIZES[4]) + " |", "|---|" + "---|" * len(SIZES[4])]
    for level, per in res["speedup"].items():
        lines.append(f"| {level} | " + " | ".join(f"{per[str(h)]:.1f}×" if str(h) in per else "—"
                                                  for h in SIZES[4]) + " |")
    lines += ["", "Counted forward FLOPs (G) per image:", "", "| run | " + " | ".join(["size 1", "2", "3", "4", "5"]) +
              " |", "|---|---|---|---|---|---|"]
    for key, rows in res["runs"].items():
        if rows[0]["flops"]:
            lines.append(f"| {key} ({rows[0]['H']}..{rows[-1]['H']} px) | " +
                         " | ".join(f"{r['flops'] / 1e9:.3g}" for r in rows) + " |")
    return "\n".join(lines) + "\n"


def figure(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, level in zip(axes, ("core", "block", "vit-fwd")):
        for key, rows in res["runs"].items():
            if not key.startswith(level + "/"):
                continue
            timed = [r for r in rows if "seconds" in r]
            f = res["fits"][key]
            lab = key.split("/")[1] + (f" (slope {f['time_slope_tokens']:.2f})" if f["time_slope_tokens"] else "")
            ax.plot([r["tokens"] for r in timed], [r["seconds"] for r in timed], "o-", label=lab)
        ax.set(xscale="log", yscale="log", xlabel="tokens N = (H/8)^2", ylabel=f"{res['clock']} seconds (median)",
               title=f"{level}: measured time")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, level in zip(axes, ("core", "block")):
        for key, rows in res["runs"].items():
            if key.startswith(level + "/"):
                f = res["fits"][key]
                ax.plot([r["tokens"] for r in rows], [r["flops"] for r in rows], "o-",
                        label=f"{key.split('/')[1]} (slope {f['flops_slope_tokens']:.2f})")
        ax.set(xscale="log", yscale="log", xlabel="tokens N = (H/8)^2", ylabel="counted FLOPs",
               title=f"{'attention core' if level == 'core' else 'whole block'}: counted FLOPs")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path.with_name(path.stem + "_flops.png"), dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-global", type=int, default=1024,
                    help="largest image side (px) timed with global attention, core and block")
    ap.add_argument("--max-global-vit", type=int, default=512,
                    help="largest image side (px) timed with global attention, the 2-layer ViT")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--name", default="attention")
    args = ap.parse_args()
    res = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    cmd = "python benchmarks/bench_attention.py" + (f" --device {args.device}" if args.device != "cpu" else "") + \
        (f" --max-global {args.max_global}" if args.max_global != 1024 else "") + \
        (f" --max-global-vit {args.max_global_vit}" if args.max_global_vit != 512 else "")
    (args.out / f"{args.name}.json").write_text(json.dumps(res, indent=1))
    (args.out / f"{args.name}.md").write_text(markdown(res, cmd))
    figure(res, args.out / f"{args.name}.png")
    print(markdown(res, cmd))


if __name__ == "__main__":
    main()
