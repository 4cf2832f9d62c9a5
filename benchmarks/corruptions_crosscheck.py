"""Our torch corruptions against the ``imagecorruptions`` package on 32-px padded MNIST.

    python -m venv /tmp/icvenv && /tmp/icvenv/bin/pip install imagecorruptions==1.1.2 "setuptools<81"
    python benchmarks/corruptions_crosscheck.py --ic-python /tmp/icvenv/bin/python \
        --source-cache /tmp/adaptlab_surgical_bn_probe_source.pt   # optional: reuse a trained source model
    # -> benchmarks/results/corruptions_crosscheck.{json,md}

The package (Michaelis et al.'s ImageNet-C code, ``pip install imagecorruptions``) needs ``setuptools<81`` and
breaks glass blur, Gaussian blur and fog on NumPy 2, none of which is one of ours; it is run under its own
interpreter (``benchmarks/imagecorruptions_ref.py``), never imported by the project. For each of our 10
corruptions and severities 1-5, on the same ``--n`` MNIST test images (uint8, padded to 32 x 32):

* the mean and standard deviation of the corrupted pixels, and the RMS change from the clean image;
* the accuracy under each of surgical-finetune's source model (the default ResNet-8, trained here with the
  experiment's own code and seed: the same weights as the committed run's source stage).

Names: ours -> the package's (``jpeg`` -> ``jpeg_compression``, ``elastic`` -> ``elastic_transform``).
Expected differences, by construction: the package keeps ImageNet-C's pixel radii for defocus and motion blur
(3-10 and 10-20 px, made for 224-px images) where ours are scaled to 32 px (1-3 and 3-11 px), and its
elastic transform is defined relative to the image size with a different field.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
OUT = HERE / "results"
NAMES = {"gaussian_noise": "gaussian_noise", "shot_noise": "shot_noise", "impulse_noise": "impulse_noise",
         "defocus_blur": "defocus_blur", "motion_blur": "motion_blur", "contrast": "contrast",
         "brightness": "brightness", "pixelate": "pixelate", "jpeg": "jpeg_compression",
         "elastic": "elastic_transform"}
SEVERITIES = (1, 2, 3, 4, 5)


def stats(x: torch.Tensor, clean: torch.Tensor) -> dict:
    """Pixel mean, std and RMS change from ``clean`` of a (N, 1, H, W) batch in [0, 1]."""
    return {"mean": float(x.mean()), "std": float(x.std()), "rms_change": float((x - clean).pow(2).mean().sqrt())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ic-python", required=True, help="an interpreter with imagecorruptions installed")
    ap.add_argument("--n", type=int, default=500, help="MNIST test images (default 500)")
    ap.add_argument("--source-cache", default="", help="a .pt file holding the trained source model's state "
                    "(written on the first run, read after: the weights are the same either way)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from adaptlab.data.corruptions import corrupt
    from adaptlab.data.mnist import load_mnist
    from adaptlab.data.shift import pad32
    from adaptlab.eval.metrics import accuracy
    from adaptlab.experiments.surgical import SurgicalConfig, _new_model, _source, train_source

    t0, load = time.process_time(), os.getloadavg()[0]
    m = load_mnist()
    clean = pad32(m.test_x[5000:5000 + args.n])  # the experiment's test half, (N, 1, 32, 32) in [0, 1]
    labels = m.test_y[5000:5000 + args.n]
    # the bundled MNIST pickle stores k / 256 (k = 0..255): exactly the uint8 image k, which the package needs;
    # both sides then start from k / 255 (a 0.4% brighter scale than the experiment's images)
    assert float((clean * 256 - (clean * 256).round()).abs().max()) == 0.0
    u8 = (clean[:, 0] * 256).round().to(torch.uint8).numpy()
    clean = torch.from_numpy(u8.astype(np.float32) / 255).unsqueeze(1)
    with tempfile.TemporaryDirectory() as tmp:
        np.save(f"{tmp}/clean.npy", u8)
        t_ref = time.perf_counter()
        subprocess.run([args.ic_python, str(HERE / "imagecorruptions_ref.py"), f"{tmp}/clean.npy", f"{tmp}/ref.npz",
                        ",".join(NAMES.values()), ",".join(map(str, SEVERITIES))], check=True)
        ref_wall = time.perf_counter() - t_ref
        with np.load(f"{tmp}/ref.npz") as z:
            ref = {k: torch.from_numpy(z[k].astype(np.float32) / 255).unsqueeze(1) for k in z.files
                   if not k.startswith("_")}
            ref_cpu = dict(zip(NAMES.values(), z["_seconds"].tolist()))
    cfg = SurgicalConfig()
    net = _new_model(cfg)
    cache = Path(args.source_cache) if args.source_cache else None
    if cache is not None and cache.is_file():
        net.load_state_dict(torch.load(cache))
    else:
        net.load_state_dict(train_source(cfg, _source(cfg)[0])["model"])
        if cache is not None:
            torch.save(net.state_dict(), cache)
    net.eval()
    out: dict = {"n": args.n, "load_before": load, "rows": {}, "package_cpu_s": ref_cpu, "package_wall_s": ref_wall,
                 "clean": {**stats(clean, clean), "acc": accuracy(net, clean, labels)}}
    for i, (ours, theirs) in enumerate(NAMES.items()):
        for sev in SEVERITIES:
            a = corrupt(clean, ours, sev, torch.Generator().manual_seed(1000 * sev + i))
            b = ref[f"{theirs}@{sev}"]
            out["rows"][f"{ours}:{sev}"] = {
                "ours": {**stats(a, clean), "acc": accuracy(net, a, labels)},
                "package": {**stats(b, clean), "acc": accuracy(net, b, labels)},
                "rms_between": float((a - b).pow(2).mean().sqrt())}
    out["cpu_s"] = time.process_time() - t0
    OUT.mkdir(exist_ok=True)
    (OUT / "corruptions_crosscheck.json").write_text(json.dumps(out, indent=1) + "\n")
    c = out["clean"]
    lines = ["# Our torch corruptions vs the imagecorruptions package (MNIST padded to 32 px)", "",
             f"`python benchmarks/corruptions_crosscheck.py --ic-python /tmp/icvenv/bin/python` (imagecorruptions "
             f"1.1.2 in its own venv, NumPy 2); {args.n} MNIST test images; load average {load:.1f}; "
             f"{out['cpu_s']:.0f} s CPU in this process, the package {sum(ref_cpu.values()):.0f} s CPU.", "",
             f"Clean: pixel mean {c['mean']:.3f}, std {c['std']:.3f}; accuracy of surgical-finetune's source model "
             f"(ResNet-8) {c['acc']:.3f}. Per corruption and severity: pixel mean / std, RMS change from the clean "
             "image, source-model accuracy, for ours and the package's; last column the RMS difference between "
             "the two corrupted images (different random draws: for the noises it is about sqrt(2) x their "
             "change).", "",
             "| corruption | mean ours / pkg | std ours / pkg | RMS change ours / pkg | accuracy ours / pkg | "
             "RMS ours - pkg |", "|---|---|---|---|---|---|"]
    for key, r in out["rows"].items():
        o, p = r["ours"], r["package"]
        lines.append(f"| {key} | {o['mean']:.3f} / {p['mean']:.3f} | {o['std']:.3f} / {p['std']:.3f} | "
                     f"{o['rms_change']:.3f} / {p['rms_change']:.3f} | {o['acc']:.3f} / {p['acc']:.3f} | "
                     f"{r['rms_between']:.3f} |")
    (OUT / "corruptions_crosscheck.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
