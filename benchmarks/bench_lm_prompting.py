"""Where lm-prompting's time goes, and the one-pass read: score_options + generate vs generate_scored.

A lettered strategy is read two ways (scored letters and a greedy answer). The old path ran each prompt through
the model twice: ``score_options`` (letters from the context's last state) and ``generate`` (the same context
again, then one more token). ``generate_scored`` reads the letters from the first greedy step's logits, so the
context runs once. Both are timed on the same MMLU questions (the default subjects of lm-prompting), for a
zero-shot and a 4-shot prompt, interleaved, with one thread; process CPU time (what an idle core would take)
is reported next to wall time, with the load average. Scores and texts are compared.

Run: ``python benchmarks/bench_lm_prompting.py --questions 24`` (writes benchmarks/results/lm_prompting.json/.md).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from adaptlab.experiments.lm_prompting import PromptingConfig, load_model, questions
from adaptlab.lm.decode import generate, generate_scored
from adaptlab.lm.prompts import build_prompts
from adaptlab.lm.scoring import score_options

OUT = Path(__file__).resolve().parent / "results"


def timed(fn):
    t, c = time.perf_counter(), time.process_time()
    r = fn()
    return r, time.perf_counter() - t, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=24)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = PromptingConfig()
    lm = load_model(cfg)
    test, pool = questions(cfg, "mmlu")
    test = test[:args.questions]
    letters = [" A", " B", " C", " D"]
    rows = []
    for strategy, k in (("qa_instruction", 0), ("incorrect_few_shot", 4)):
        prefix, prompts = build_prompts(strategy, test, pool, k, 1000)
        (lp, w_s, c_s) = timed(lambda p=prompts, f=prefix: score_options(
            lm, p, [letters] * len(test), prefix=f, batch_size=32)["logprob"])
        (texts, w_g, c_g) = timed(lambda p=prompts, f=prefix: generate(lm, p, prefix=f, max_new_tokens=2,
                                                                       batch_size=32))
        ((texts1, lp1), w_1, c_1) = timed(lambda p=prompts, f=prefix: generate_scored(
            lm, p, letters, prefix=f, max_new_tokens=2, batch_size=32))
        rows.append({"strategy": strategy, "k": k, "questions": len(test),
                     "two_pass": {"score_wall_s": w_s, "score_cpu_s": c_s, "generate_wall_s": w_g,
                                  "generate_cpu_s": c_g},
                     "one_pass": {"wall_s": w_1, "cpu_s": c_1},
                     "cpu_ratio": (c_s + c_g) / c_1, "max_abs_score_diff": float((lp - lp1).abs().max()),
                     "texts_equal": texts == texts1,
                     "argmax_equal": bool((lp.argmax(1) == lp1.argmax(1)).all())})
    res = {"rows": rows, "loadavg": os.getloadavg(), "threads": 1, "torch": torch.__version__}
    OUT.mkdir(exist_ok=True)
    (OUT / "lm_prompting.json").write_text(json.dumps(res, indent=1) + "\n")
    md = [f"# lm-prompting: one pass vs two per lettered prompt, SmolLM2-135M, {len(test)} MMLU questions, 1 thread",
          "", "`python benchmarks/bench_lm_prompting.py --questions " f"{args.questions}`", "",
          "| prompt | score CPU s | generate CPU s | one-pass CPU s | CPU ratio | wall two-pass / one-pass s | "
          "max score diff | same texts |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t, o = r["two_pass"], r["one_pass"]
        md.append(f"| {r['strategy']}, k = {r['k']} | {t['score_cpu_s']:.1f} | {t['generate_cpu_s']:.1f} | "
                  f"{o['cpu_s']:.1f} | {r['cpu_ratio']:.2f}x | {t['score_wall_s'] + t['generate_wall_s']:.1f} / "
                  f"{o['wall_s']:.1f} | {r['max_abs_score_diff']:.1e} | {r['texts_equal']} |")
    md += ["", f"Load average {res['loadavg'][0]:.1f} / {res['loadavg'][1]:.1f} / {res['loadavg'][2]:.1f} on "
           f"{os.cpu_count()} cores."]
    (OUT / "lm_prompting.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
