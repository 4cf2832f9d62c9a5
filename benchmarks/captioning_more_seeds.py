"""More training seeds for the captioning gaps: train seeds beyond a committed run's, one torch thread.

``python -m adaptlab run captioning --set seeds=N`` always trains seeds 0..N-1, so adding seeds 3 and 4 to a
3-seed folder would re-train the first three. This script trains only the new ones, with the experiment's own
``train_decoder`` and exactly the initialisation / batch-stream seeds ``adaptlab run captioning --set seeds=5``
would give them (the decoder index is its place in the default decoder list, ``joint`` 0, ``alternating`` 1, so
a joint-only probe run pairs with the main run, as in ``captioning_gaps.py``). Each variant is a name, a decoder
and ``--set`` style overrides; every finished model is appended to
``benchmarks/results/captioning_more_seeds.json`` at once (a rerun skips what is there), with the metrics that
``captioning_gaps.py`` pairs by seed and its one-thread CPU time:

    python benchmarks/captioning_more_seeds.py 3,4 alternating=alternating image_kv=joint:model.image_kv=true \\
        joint=joint
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

OUT = Path(__file__).parent / "results" / "captioning_more_seeds.json"
INDEX = {"joint": 0, "alternating": 1}


def parse(spec: str) -> tuple[str, str, list[str]]:
    name, sep, rest = spec.partition("=")
    decoder, *overrides = rest.split(":")
    if not sep or decoder not in INDEX:
        raise SystemExit(f"variant {spec!r} is invalid; expected NAME=joint|alternating[:key=value...]")
    return name, decoder, overrides


def main(argv: list[str]) -> None:
    from adaptlab.config import apply_overrides
    from adaptlab.experiments.captioning import SEED_METRICS, CaptioningConfig, build_data, train_decoder

    if len(argv) < 2:
        raise SystemExit(__doc__)
    torch.set_num_threads(1)
    seeds = [int(s) for s in argv[0].split(",")]
    done = json.loads(OUT.read_text()) if OUT.exists() else {}
    data, data_key = None, None
    for s in seeds:
        for spec in argv[1:]:
            name, decoder, overrides = parse(spec)
            key = f"{name}#{s}"
            if key in done:
                continue
            cfg = apply_overrides(CaptioningConfig(), overrides)
            if data is None or data_key != cfg.data:
                data, data_key = build_data(cfg), cfg.data
            w0 = time.perf_counter()
            rec = train_decoder(decoder, cfg, data, INDEX[decoder], s)
            done[key] = {"name": name, "decoder": decoder, "overrides": overrides, "seed": s,
                         "metrics": {k: f(rec) for k, f in SEED_METRICS.items()},
                         "block_params": rec["decoder_block_params"],
                         "cpu_seconds": rec["cpu_seconds"], "wall_seconds": time.perf_counter() - w0,
                         "load": os.getloadavg()[0]}
            OUT.parent.mkdir(exist_ok=True)
            OUT.write_text(json.dumps(dict(sorted(done.items())), indent=1) + "\n")
            m = done[key]["metrics"]
            print(f"{key}: exact seen {m['exact_seen']:.1f} held-out {m['exact_held_out']:.1f} "
                  f"cpu {rec['cpu_seconds']:.0f} s load {done[key]['load']:.1f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
