"""Reduced SimCLR runs behind the simclr-omniglot defaults (docs/simclr.md, "Choosing the defaults").

Each call trains the experiment's SimCLR stage (``_pretrain``, minimal set 1 with rotations) with the given
overrides, then scores the frozen features of several Conv4 layers (``eval.features`` taps) on 400 5-way and
400 20-way 1-shot episodes of the held-out alphabets (cosine to the class means, the same episodes for every
run), and appends one JSON line to ``benchmarks/results/simclr_sweep.jsonl`` with the one-thread CPU time.

    python benchmarks/simclr_sweep.py tau0.1 '{"train.steps": 80, "train.temperature": 0.1}'
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from adaptlab.data.omniglot import load_characters
from adaptlab.eval.metrics import episode_accuracy
from adaptlab.experiments.omniglot import held_out
from adaptlab.experiments.simclr import TAPS, FeatureTap, SimCLRConfig, _cosine_head, _pretrain
from adaptlab.meta.protonet import embed_all
from adaptlab.models.conv4 import Conv4

OUT = Path(__file__).parent / "results" / "simclr_sweep.jsonl"


def main(tag: str, overrides: dict) -> dict:
    torch.set_num_threads(1)
    cfg = SimCLRConfig()
    overrides = {"eval.curve_every": 10 ** 6, **overrides}                # no 20-run curve during the sweep
    for key, value in overrides.items():
        group, name = key.split(".")
        setattr(cfg, group, dataclasses.replace(getattr(cfg, group), **{name: value}))
    x, _ = load_characters("small1").with_rotations().labelled()
    wall, cpu = time.perf_counter(), time.process_time()
    out = _pretrain(cfg, x)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    net = Conv4(track_running_stats=True)
    net.load_state_dict(out["encoder"])
    tx, ty = held_out("small1").labelled()
    from adaptlab.tasks.episodes import EpisodeSampler

    res = {"tag": tag, "overrides": overrides, "train_wall_s": round(wall, 1), "train_cpu_s": round(cpu, 1),
           "loss_last10": round(sum(out["history"]["loss"][-10:]) / 10, 3)}
    for tap in TAPS:
        z = embed_all(FeatureTap(net, tap), tx)
        for i, way in enumerate((5, 20)):
            g = torch.Generator().manual_seed(100 + i)
            acc = episode_accuracy(_cosine_head, EpisodeSampler(z, ty, way, 1, 5), 400, g, 50)["accuracy"]
            res[f"{way}-way 1-shot {tap}"] = round(acc, 3)
    OUT.parent.mkdir(exist_ok=True)
    with OUT.open("a") as f:
        f.write(json.dumps(res) + "\n")
    return res


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})))
