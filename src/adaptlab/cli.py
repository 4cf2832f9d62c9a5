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
    r.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch CPU threads (default: $ADAPTLAB_THREADS, else torch's default of one per core); "
                        "on a busy machine 1 is often several times faster for the small models here")
    r.add_argument("--quick", action="store_true", help="the reduced form that finishes in under a minute")
    r.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    r.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    d = sub.add_parser("describe", help="what an experiment does and every config key it takes")
    d.add_argument("name", help="experiment name (see 'adaptlab list')")
    s = sub.add_parser("show", help="summarise a finished run folder, or list the runs in a folder of runs")
    s.add_argument("dir", type=Path)
    rd = sub.add_parser("redraw", help="draw the figures, summary and report of finished run folders again "
                                       "with this version (the numbers are kept as they are)")
    rd.add_argument("dirs", type=Path, nargs="+", metavar="DIR", help="finished run folders")
    rd.add_argument("--name", default=None, help="the experiment, when summary.md does not name it")
    rep = sub.add_parser("report", help="write one self-contained HTML page for one or more run folders")
    rep.add_argument("dirs", type=Path, nargs="+", metavar="DIR", help="finished run folders")
    rep.add_argument("--out", type=Path, default=None,
                     help="HTML file to write (default: report.html, or DIR/report.html for one run)")
    return p


def _default_out(name: str) -> Path:
    base = Path("runs") / name
    out, i = base, 1
    while (out / "results.json").exists():
        i += 1
        out = Path(f"{base}-{i}")
    return out


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def _times() -> dict:
    from importlib.resources import files

    try:
        return json.loads(files("adaptlab.experiments").joinpath("times.json").read_text())["experiments"]
    except (OSError, ValueError, KeyError):
        return {}


def _cmd_list() -> int:
    from adaptlab.experiments import registry

    reg, times = registry(), _times()
    width = max(len(n) for n in reg)
    print(f"{'experiment':<{width}}  {'full':>7}  {'quick':>6}  what it does")
    for name, exp in reg.items():
        t = times.get(name, {})
        print(f"{name:<{width}}  {_duration(t.get('full_s')):>7}  {_duration(t.get('quick_s')):>6}  "
              f"{exp.description}")
    print("\n(full / quick: measured run times, 2 shared CPU cores; see benchmarks/run_times.py)")
    return 0


def _set_threads(n: int | None) -> str:
    """Apply ``--threads``; returns a note for the end of the run when the machine is busy and it was unset."""
    import os

    if n is None and os.environ.get("ADAPTLAB_THREADS"):
        try:
            n = int(os.environ["ADAPTLAB_THREADS"])
        except ValueError:
            raise _UsageError(f"ADAPTLAB_THREADS={os.environ['ADAPTLAB_THREADS']!r} is invalid; expected an "
                              "integer >= 1") from None
    cores = os.cpu_count() or 1
    if n is not None and not 1 <= n <= 4 * cores:
        raise _UsageError(f"--threads {n} is invalid; expected an integer from 1 to {4 * cores}")
    import torch

    if n is not None:
        torch.set_num_threads(n)
    elif torch.get_num_threads() > 1 and hasattr(os, "getloadavg") and os.getloadavg()[0] > cores:
        return (f"note: this machine is busy (load {os.getloadavg()[0]:.1f} on {cores} cores); --threads 1 is "
                "often several times faster here")
    return ""


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
        raise _UsageError("--resume needs --out DIR naming the interrupted run")
    out = args.out if args.out is not None else _default_out(exp.name)
    note = _set_threads(args.threads)
    explicit = bool(args.overrides or fields or args.quick)
    try:
        res = run_experiment(exp, cfg, out, resume=args.resume, explicit_config=explicit)
    except KeyboardInterrupt:
        resumable = (out / "config.json").exists()
        hint = f"; resume with: adaptlab run {exp.name} --resume --out {out}" if resumable else \
            " before its first checkpoint; nothing was kept"
        print(f"interrupted{hint}", file=sys.stderr)
        return 130
    if not is_main_process():
        return 0
    if res.resumed_complete:
        print(f"{exp.name}: run in {res.out_dir} had already finished; nothing to do")
    else:
        print(f"{exp.name}: finished in {res.seconds:.1f} s")
    print(f"  numbers: {res.out_dir / 'results.json'}")
    print(f"  summary: {res.out_dir / 'summary.md'}")
    print(f"  report:  {res.out_dir / 'report.html'}")
    for f in res.figures:
        print(f"  figure:  {res.out_dir / f}")
    if note and not res.resumed_complete:
        print(note, file=sys.stderr)
    return 0


def _read(path: Path) -> str:
    """The text of a run-folder file, or a one-line error naming what is wrong with it."""
    try:
        return path.read_text()
    except IsADirectoryError:
        raise _UsageError(f"{path} is a folder, not a file") from None
    except UnicodeDecodeError:
        raise _UsageError(f"{path} is corrupt (not text)") from None
    except OSError as e:
        raise _UsageError(f"{path} cannot be read ({e.strerror})") from None


def _run_state(d: Path) -> str | None:
    if (d / "results.json").is_file():
        return "finished"
    if (d / "config.json").is_file():
        return "unfinished"
    return None


def _cmd_show(args) -> int:
    d: Path = args.dir
    if not d.is_dir():
        raise _UsageError(f"{d} is not a folder")
    results = d / "results.json"
    if not results.exists():
        runs = [(p, _run_state(p)) for p in sorted(d.iterdir()) if p.is_dir() and _run_state(p)]
        if runs:  # a folder of run folders: list them
            width = max(len(p.name) for p, _ in runs)
            for p, state in runs:
                title = _read(p / "summary.md").partition("\n")[0].lstrip("# ") if (p / "summary.md").is_file() \
                    else ""
                print(f"{p.name:<{width}}  {state:<10}  {title}".rstrip())
            return 0
        state = "an unfinished run (resume it with 'adaptlab run NAME --resume --out DIR')" \
            if (d / "config.json").exists() else "no run"
        raise _UsageError(f"{d} holds {state}; results.json is missing")
    try:
        json.loads(_read(results))
    except json.JSONDecodeError:
        raise _UsageError(f"{results} is corrupt (not JSON)") from None
    summary = d / "summary.md"
    print(_read(summary) if summary.exists() else _read(results))
    figs = sorted(p.name for p in d.glob("*.png"))
    if figs:
        print("Figures: " + ", ".join(figs))
    return 0


def _cmd_describe(name: str) -> int:
    from adaptlab.configdoc import describe, format_help
    from adaptlab.experiments import get

    exp = get(name)
    t = _times().get(name, {})
    print(f"{exp.name}: {exp.description}\n")
    print(f"run time: full {_duration(t.get('full_s'))}, --quick {_duration(t.get('quick_s'))} "
          "(measured on 2 shared CPU cores)\n")
    print(f"usage: adaptlab run {exp.name} [--quick] [--set KEY=VALUE ...] [--out DIR] [--seed N] [--threads N] "
          "[--resume] [--print-config]\n")
    if exp.quick:
        print("--quick sets: " + ", ".join(f"{k}={v}" for k, v in exp.quick.items()) + "\n")
    print("config keys (--set KEY=VALUE; defaults shown):")
    print(format_help(describe(exp.config())))
    return 0


def _cmd_report(args) -> int:
    from adaptlab.report import write_report

    out = args.out or (args.dirs[0] / "report.html" if len(args.dirs) == 1 else Path("report.html"))
    print(f"report: {write_report(args.dirs, out)}")
    return 0


def _cmd_redraw(args) -> int:
    from adaptlab.experiments import get
    from adaptlab.runner import redraw_experiment

    for d in args.dirs:  # check every folder before redrawing any
        if not (d / "results.json").is_file():
            raise _UsageError(f"redraw: {d} holds no finished run (results.json is missing)")
    for d in args.dirs:
        name = args.name
        if name is None:
            first = _read(d / "summary.md").partition("\n")[0] if (d / "summary.md").is_file() else ""
            if not first.startswith("# "):
                raise _UsageError(f"redraw: {d}/summary.md does not name the experiment; pass --name NAME")
            name = first[2:].strip()
        res = redraw_experiment(get(name), d)
        print(f"{name}: redrew {d} ({len(res.figures)} figures, summary.md, report.html)")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        if len(argv) >= 3 and argv[0] == "run" and not argv[1].startswith("-") and \
                any(a in ("-h", "--help") for a in argv[2:]):
            return _cmd_describe(argv[1])  # `adaptlab run NAME --help` teaches that experiment's keys
        args = build_parser().parse_args(argv)
        if args.command == "list":
            return _cmd_list()
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "describe":
            return _cmd_describe(args.name)
        if args.command == "report":
            return _cmd_report(args)
        if args.command == "redraw":
            return _cmd_redraw(args)
        return _cmd_show(args)
    except (_UsageError, AdaptlabError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early: no traceback
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as e:  # last resort: a bug, not a user error; one line unless debugging
        import os

        if os.environ.get("ADAPTLAB_DEBUG", "") not in ("", "0"):
            raise
        msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        print(f"error: unexpected {type(e).__name__}{': ' + msg if msg else ''} (this is a bug in adaptlab; "
              "rerun with ADAPTLAB_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
