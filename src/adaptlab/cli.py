"""The ``adaptlab`` command: list, run and show experiments. Parses and validates; never computes."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from adaptlab.errors import AdaptlabError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one clear line, exit code 2 (argparse's default prints usage too)
        raise _UsageError(f"{self.prog}: {message}")


class _UsageError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="adaptlab", description="Meta-learning, multi-task, few-shot and compression experiments.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="list the experiments, one line each")
    r = sub.add_parser("run", help="run an experiment into a run folder")
    r.add_argument("name", help="experiment name (see 'adaptlab list')")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="typed dotted config override, e.g. --set train.steps=300 (repeatable)")
    r.add_argument("--out", type=Path, default=None, help="run folder (default: runs/NAME)")
    r.add_argument("--seed", type=int, default=None, help="random seed (overrides the config's)")
    r.add_argument("--device", default=None, help="cpu or cuda")
    r.add_argument("--quick", action="store_true", help="the reduced form that finishes in under a minute")
    r.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    r.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    s = sub.add_parser("show", help="summarise a finished run folder")
    s.add_argument("dir", type=Path)
    return p


def _default_out(name: str) -> Path:
    base = Path("runs") / name
    out, i = base, 1
    while (out / "results.json").exists():
        i += 1
        out = Path(f"{base}-{i}")
    return out


def _cmd_list() -> int:
    from adaptlab.experiments import registry

    reg = registry()
    width = max(len(n) for n in reg)
    for name, exp in reg.items():
        print(f"{name:<{width}}  {exp.description}")
    return 0


def _cmd_run(args) -> int:
    from adaptlab.config import save_json
    from adaptlab.experiments import get
    from adaptlab.runner import is_main_process, run_experiment

    exp = get(args.name)
    fields = {}
    if args.seed is not None:
        fields["seed"] = args.seed
    if args.device is not None:
        fields["device"] = args.device
    cfg = exp.config(args.overrides, quick=args.quick, **fields)
    if args.print_config:
        print(save_json(cfg))
        return 0
    if args.out is None and args.resume:
        raise _UsageError("adaptlab run: --resume needs --out DIR naming the interrupted run")
    out = args.out if args.out is not None else _default_out(exp.name)
    explicit = bool(args.overrides or fields or args.quick)
    res = run_experiment(exp, cfg, out, resume=args.resume, explicit_config=explicit)
    if not is_main_process():
        return 0
    if res.resumed_complete:
        print(f"{exp.name}: run in {res.out_dir} had already finished; nothing to do")
    else:
        print(f"{exp.name}: finished in {res.seconds:.1f} s")
    print(f"  numbers: {res.out_dir / 'results.json'}")
    print(f"  summary: {res.out_dir / 'summary.md'}")
    for f in res.figures:
        print(f"  figure:  {res.out_dir / f}")
    return 0


def _cmd_show(args) -> int:
    d: Path = args.dir
    summary, results = d / "summary.md", d / "results.json"
    if not d.is_dir():
        raise _UsageError(f"adaptlab show: {d} is not a folder")
    if not results.exists():
        state = "an unfinished run (resume it with 'adaptlab run NAME --resume --out DIR')" \
            if (d / "config.json").exists() else "no run"
        raise _UsageError(f"adaptlab show: {d} holds {state}; results.json is missing")
    try:
        json.loads(results.read_text())
    except json.JSONDecodeError:
        raise _UsageError(f"adaptlab show: {results} is corrupt (not JSON)") from None
    print(summary.read_text() if summary.exists() else results.read_text())
    figs = sorted(p.name for p in d.glob("*.png"))
    if figs:
        print("Figures: " + ", ".join(figs))
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "list":
            return _cmd_list()
        if args.command == "run":
            return _cmd_run(args)
        return _cmd_show(args)
    except (_UsageError, AdaptlabError) as e:
        print(f"error: {e}" if not str(e).startswith("adaptlab") else str(e), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; resume with --resume --out DIR", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early: no traceback
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
