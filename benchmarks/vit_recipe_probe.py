"""Probe a vit-windowed training recipe: one ViT on a random-placed MNIST digit, test accuracy along the way.

The probes that chose the experiment's defaults (d = 32, 2 heads, an 8-channel stem, lr 3e-3) were run with
this script; their output is in ``benchmarks/results/vit_recipe_probe.md``. It is a scratch loop (AdamW,
weight decay 0.05, its own warmup + cosine), not the experiment's ``fit`` (Adam, no weight decay), and one seed:
read it as a ranking of recipes at a fixed CPU budget, not as the experiment's numbers.

    python benchmarks/vit_recipe_probe.py VARIANT CANVAS STEPS BATCH LR WARMUP POSITIONS STEM DIM HEADS [EVERY]
    python benchmarks/vit_recipe_probe.py global 56 1000 64 3e-3 100 learned 8 32 2
"""

from __future__ import annotations

import math
import sys
import time

import torch
import torch.nn.functional as F


def main(argv: list[str]) -> None:
    from adaptlab.data.captions import paste_digit
    from adaptlab.data.mnist import load_mnist
    from adaptlab.models.vit import ViT

    torch.set_num_threads(1)
    variant, canvas, steps, bs, lr, warm = argv[0], int(argv[1]), int(argv[2]), int(argv[3]), float(argv[4]), \
        int(argv[5])
    pos, stem, dim, heads = argv[6], int(argv[7]), int(argv[8]), int(argv[9])
    every = int(argv[10]) if len(argv) > 10 else 250
    ds = load_mnist()
    g = torch.Generator().manual_seed(1)
    tx, ty = paste_digit(ds.test_x, ds.test_y, 1000, canvas, g)  # 1000 MNIST-test images
    torch.manual_seed(0)
    net = ViT(image_size=canvas, patch=7, dim=dim, depth=2, heads=heads, window=4 if variant == "windowed" else None,
              causal=variant == "causal", positions=pos, n_classes=10, stem=stem)
    opt = torch.optim.AdamW(net.parameters(), lr, weight_decay=0.05)

    def sched(s: int) -> float:
        if s < warm:
            return lr * (s + 1) / warm
        return lr * 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm)))

    c0, t0 = time.process_time(), time.perf_counter()
    for s in range(steps):
        for gr in opt.param_groups:
            gr["lr"] = sched(s)
        x, y = paste_digit(ds.train_x, ds.train_y, bs, canvas, g)  # fresh placements every step
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        if (s + 1) % every == 0:
            net.eval()
            with torch.no_grad():
                acc = (net(tx).argmax(-1) == ty).float().mean().item()
            net.train()
            print(f"{variant} step {s + 1} loss {loss.item():.3f} acc {acc:.3f} cpu {time.process_time() - c0:.0f} "
                  f"wall {time.perf_counter() - t0:.0f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
