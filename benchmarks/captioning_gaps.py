"""Joint-decoder variants of the captioning experiment against the main run's alternating decoder, paired by seed.

Each probe folder is a finished ``adaptlab run captioning --set decoders=joint ...`` run that changes one thing in
the joint decoder (``model.image_kv``, ``model.image_norm``, ``train.lr``); its training seed s has the same
initialisation and batch-stream seeds as seed s of the main run (the joint decoder is first in both decoder
lists, :func:`adaptlab.experiments.captioning.train_seeds`), so its gaps pair with the main run's seeds. The
script reads results.json, config.json and timings.json of every folder, trains nothing, and writes
``benchmarks/results/captioning_gaps.{md,json}``:

    python benchmarks/captioning_gaps.py docs/results/captioning-seeds \\
        image_kv=docs/results/captioning-imagekv image_norm=docs/results/captioning-imagenorm \\
        --more benchmarks/results/captioning_more_seeds.json

``--more FILE`` appends the seeds that ``captioning_more_seeds.py`` trained beyond a folder's (by variant name:
``joint`` and ``alternating`` extend the main run, any other name the probe of that name); a seed is appended
only if it is the next one, so the lists stay in seed order and pair seed by seed.

Intervals are Student-t 95% over the paired seeds (n - 1 degrees of freedom); a one-seed probe gets its one
difference and no interval. The test images are the same for every folder (fixed by ``seed``), so the seed
interval does not cover their sampling error (about 1.5 points for 1000 images, the main run's summary).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

METRICS = {"exact_seen": "exact (seen)", "exact_held_out": "exact (held-out pairs)", "digit_seen": "digit slots"}
OUT = Path(__file__).parent / "results"


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def per_seed(results: dict, decoder: str) -> dict[str, list[float]]:
    """``{metric: [seed 0, seed 1, ...]}`` of one decoder of a finished run (one value for a one-seed run)."""
    if "seeds" in results and decoder in results["seeds"]["per_decoder"]:
        return {k: results["seeds"]["per_decoder"][decoder][k]["per_seed"] for k in METRICS}
    r = results["decoders"][decoder]
    s = r["seen"]["slots"]
    return {"exact_seen": [r["seen"]["exact"]], "exact_held_out": [r["held-out"]["exact"]],
            "digit_seen": [(s["digit1"] + s["digit2"]) / 2]}


def interval(values: list[float]) -> dict:
    from adaptlab.eval.stats import mean_t_ci95

    mean, half = mean_t_ci95(values) if len(values) > 1 else (values[0], None)
    return {"mean": mean, "ci95": half, "per_seed": values}


def load(folder: Path) -> dict:
    return {f: json.loads((folder / f"{f}.json").read_text()) for f in ("results", "config", "timings")}


def cpu_per_step(timings: dict, decoder: str) -> float:
    """Mean one-thread CPU seconds per training step over the decoder's seeds (``joint``, ``joint#1``, ...)."""
    v = [t["train_cpu_seconds_per_step"] for k, t in timings.items()
         if isinstance(t, dict) and (k == decoder or k.startswith(decoder + "#"))]
    return sum(v) / len(v)


def extend(vals: dict[str, list[float]], more: dict, name: str) -> dict[str, list[float]]:
    """``vals`` with the next seeds of variant ``name`` from a ``captioning_more_seeds.json`` dict appended."""
    vals = {k: list(v) for k, v in vals.items()}
    while (rec := more.get(f"{name}#{len(vals['exact_seen'])}")) is not None:
        for k in vals:
            vals[k].append(rec["metrics"][k])
    return vals


def compare(main: Path, probes: dict[str, Path], more: dict | None = None) -> dict:
    more = more or {}
    m = load(main)
    ref = {d: extend(per_seed(m["results"], d), more, d) for d in ("joint", "alternating")}
    base_cfg = _flat(m["config"])
    rows = {"joint": ("", m, ref["joint"]), **{n: (str(p), load(p), None) for n, p in probes.items()}}
    out = {"main": str(main), "alternating": {k: interval(v) for k, v in ref["alternating"].items()},
           "alternating_block_params": m["results"]["decoders"]["alternating"]["decoder_block_params"],
           "variants": {}}
    for name, (folder, run, vals) in rows.items():
        vals = vals or extend(per_seed(run["results"], "joint"), more, name)
        n = min(len(vals["exact_seen"]), len(ref["alternating"]["exact_seen"]))
        vals = {k: v[:n] for k, v in vals.items()}
        changed = {k: v for k, v in _flat(run["config"]).items() if k not in ("decoders", "seeds")
                   and base_cfg.get(k) != v}
        rec = {"folder": folder or str(main), "changes": changed, "seeds": n,
               "block_params": run["results"]["decoders"]["joint"]["decoder_block_params"],
               "cpu_ms_per_step": 1000 * cpu_per_step(run["timings"], "joint"),
               "values": {k: interval(v) for k, v in vals.items()},
               "minus_alternating": {k: interval([a - b for a, b in zip(v, ref["alternating"][k][:n])])
                                     for k, v in vals.items()}}
        if name != "joint":
            rec["minus_joint"] = {k: interval([a - b for a, b in zip(v, ref["joint"][k][:n])])
                                  for k, v in vals.items()}
        out["variants"][name] = rec
    return out


def _cell(c: dict) -> str:
    vals = ", ".join(f"{v:+.1f}" for v in c["per_seed"])
    return f"{vals}" if c["ci95"] is None else f"{c['mean']:+.1f} ± {c['ci95']:.1f} ({vals})"


def verdict(c: dict, fewer: bool) -> str:
    if c["ci95"] is None:
        return "one seed: no interval"
    lo, hi = c["mean"] - c["ci95"], c["mean"] + c["ci95"]
    side = ("more than 2 points behind beyond seed noise" if hi < -2 else
            "within 2 points beyond seed noise" if lo > -2 else "CI straddles -2: undecided")
    return side + ("" if fewer else "; not fewer parameters per block")


def markdown(res: dict) -> str:
    alt = res["alternating"]["exact_seen"]
    lines = ["# Joint-decoder variants vs the alternating decoder (captioning, paired by training seed)", "",
             f"Main run `{res['main']}`: alternating exact match on seen pairs "
             f"{alt['mean']:.1f} ± {alt['ci95']:.1f} ({', '.join(f'{v:.1f}' for v in alt['per_seed'])}), "
             f"{res['alternating_block_params']:,} parameters per decoder block. Gaps in points of exact match, "
             "mean ± Student-t 95% CI over seeds (per-seed values in brackets).", "",
             "| joint variant | folder | seeds | params / block | CPU ms / step | exact (seen) | "
             "− alternating, exact (seen) | − alternating, held-out | − alternating, digit slots | − joint, exact "
             "(seen) | verdict (within 2 points of alternating) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in res["variants"].items():
        what = name if not r["changes"] else f"{name} ({', '.join(f'{k}={v}' for k, v in r['changes'].items())})"
        v, g = r["values"]["exact_seen"], r["minus_alternating"]
        own = ", ".join(f"{x:.1f}" for x in v["per_seed"])
        own = own if v["ci95"] is None else f"{v['mean']:.1f} ± {v['ci95']:.1f} ({own})"
        vs_joint = _cell(r["minus_joint"]["exact_seen"]) if "minus_joint" in r else "—"
        fewer = r["block_params"] < res["alternating_block_params"]
        lines.append(f"| {what} | `{r['folder']}` | {r['seeds']} | {r['block_params']:,} | "
                     f"{r['cpu_ms_per_step']:.1f} | {own} | {_cell(g['exact_seen'])} | {_cell(g['exact_held_out'])} | "
                     f"{_cell(g['digit_seen'])} | {vs_joint} | {verdict(g['exact_seen'], fewer)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit(__doc__)
    more = {}
    if "--more" in argv:
        i = argv.index("--more")
        more = json.loads(Path(argv[i + 1]).read_text())
        argv = argv[:i] + argv[i + 2:]
    probes = {}
    for a in argv[1:]:
        name, sep, folder = a.partition("=")
        if not sep:
            raise SystemExit(f"probe {a!r} is invalid; expected NAME=FOLDER")
        probes[name] = Path(folder)
    res = compare(Path(argv[0]), probes, more)
    OUT.mkdir(exist_ok=True)
    (OUT / "captioning_gaps.json").write_text(json.dumps(res, indent=1) + "\n")
    md = markdown(res)
    (OUT / "captioning_gaps.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main(sys.argv[1:])
