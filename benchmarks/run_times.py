"""Measure every experiment's run times for `adaptlab list` / `describe`: full form and quick form.

    python benchmarks/run_times.py            # writes src/adaptlab/experiments/times.json

The full-form time is the wall time recorded in the committed run folder ``docs/results/NAME``
(``summary.md``: "Wall time: ... s"): the default form, except where an experiment's docs page says its committed
run is reduced (captioning, lm-prompting, lm-probe this round). The quick-form time is measured
here, one torch thread, in a subprocess per experiment (so imports and data loading count, as a user sees them).
The load average is recorded beside.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "adaptlab" / "experiments" / "times.json"


def main() -> None:
    from adaptlab.experiments import registry

    env = {**os.environ, "ADAPTLAB_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    env.setdefault("ADAPTLAB_DATA", str(ROOT.parent / "shared" / "data"))
    times: dict[str, dict] = {}
    load_before = os.getloadavg()[0]
    for name in registry():
        entry: dict = {}
        summary = ROOT / "docs" / "results" / name / "summary.md"
        if summary.is_file():
            m = re.search(r"Wall time: ([0-9.]+) s", summary.read_text())
            if m:
                entry["full_s"] = round(float(m.group(1)), 1)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "adaptlab", "run", name, "--quick", "--threads", "1", "--out",
                            str(Path(tmp) / name)], check=True, env=env, capture_output=True)
            entry["quick_s"] = round(time.perf_counter() - t0, 1)
        times[name] = entry
        print(f"{name:<30} full {entry.get('full_s', '-'):>8} s   quick {entry['quick_s']:>6} s", flush=True)
    doc = {"measured": time.strftime("%Y-%m-%d"), "load_average": [round(load_before, 2),
                                                                   round(os.getloadavg()[0], 2)],
           "cores": os.cpu_count(), "experiments": times}
    OUT.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
