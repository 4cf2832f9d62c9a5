"""One self-contained HTML page for one or many run folders: config, numbers, summary, figures, comparisons.

The page needs no server and no network: figures are embedded as ``data:`` URIs, styles are inline, and the
only script is a few lines that count the figures that decoded (``body[data-figures-loaded]``), so a headless
browser can check the page. For several runs, the numbers they share are set side by side, and runs that
report curves over the same x axis (the Fourier family: closed form, K = 5 and K = 1 GD) get an overlay figure.

    adaptlab report runs/cf runs/gd runs/gd1 --out compare.html

Every number shown comes from a run folder's ``results.json`` (each cell carries its dotted key in
``data-key``, so tests compare the page with the file).
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adaptlab.errors import RunDirError
from adaptlab.io import atomic_write_text

MAX_ROWS = 400  # numbers per run shown in the table; long lists are summarised, not listed


@dataclass
class Run:
    dir: Path
    experiment: str
    config: dict
    results: dict
    summary: str
    figures: list[tuple[str, bytes]]

    @property
    def label(self) -> str:
        return self.dir.name


def load_run(run_dir: str | Path) -> Run:
    """Read a finished run folder; a missing or damaged file is a :class:`RunDirError` naming it."""
    d = Path(run_dir)

    def read(name: str, required: bool = True) -> str:
        p = d / name
        if not p.is_file():
            if required:
                raise RunDirError(f"report: {p} is missing; only finished run folders can be reported")
            return ""
        try:
            return p.read_text()
        except (OSError, UnicodeDecodeError):
            raise RunDirError(f"report: {p} cannot be read as text") from None

    try:
        results, config = json.loads(read("results.json")), json.loads(read("config.json", required=False) or "{}")
    except json.JSONDecodeError as e:
        raise RunDirError(f"report: a JSON file in {d} is corrupt ({e.msg})") from None
    if not isinstance(results, dict) or not isinstance(config, dict):
        raise RunDirError(f"report: {d} holds JSON that is not an object")
    summary = read("summary.md", required=False)
    first = summary.partition("\n")[0]
    experiment = first[2:].strip() if first.startswith("# ") else d.name
    figures = [(p.name, p.read_bytes()) for p in sorted(d.glob("*.png"))]
    return Run(d, experiment, config, results, summary, figures)


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys of the scalar leaves (numbers, strings, booleans); lists of numbers become a summary row.

    >>> flatten({"a": {"b": 1.5, "c": [1, 2]}, "curve": list(range(10)), "name": "x"})
    {'a.b': 1.5, 'a.c[0]': 1, 'a.c[1]': 2, 'curve': '[10 values: 0 … 9]', 'name': 'x'}
    """
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, list):
        if len(obj) <= 6 and all(not isinstance(v, (dict, list)) for v in obj):
            out.update({f"{prefix}[{i}]": v for i, v in enumerate(obj)})
        elif obj and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in obj):
            out[prefix] = f"[{len(obj)} values: {_fmt(obj[0])} … {_fmt(obj[-1])}]"
        elif obj:
            out[prefix] = f"[{len(obj)} items]"
    else:
        out[prefix] = obj
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _cell(key: str, v: Any) -> str:
    return f'<td data-key="{html.escape(key)}">{html.escape(_fmt(v))}</td>'


def _table(rows: dict[str, Any], caption: str) -> str:
    items = list(rows.items())
    more = len(items) - MAX_ROWS
    body = "".join(f"<tr><th>{html.escape(k)}</th>{_cell(k, v)}</tr>" for k, v in items[:MAX_ROWS])
    tail = f"<p class=note>{more} more values in results.json</p>" if more > 0 else ""
    return f"<table class=kv><caption>{html.escape(caption)}</caption>{body}</table>{tail}"


def _img(name: str, data: bytes) -> str:
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return f'<figure><img src="{uri}" alt="{html.escape(name)}"><figcaption>{html.escape(name)}</figcaption></figure>'


def _markdown(text: str) -> str:
    import markdown

    return markdown.markdown(text, extensions=["tables"])


def _run_section(run: Run, i: int) -> str:
    numbers = flatten({k: v for k, v in run.results.items() if k != "published"})
    parts = [f'<section id="run-{i}" data-run="{html.escape(run.label)}">',
             f"<h2>{html.escape(run.experiment)} <small>{html.escape(str(run.dir))}</small></h2>"]
    if run.summary:
        parts.append(f"<div class=summary>{_markdown(run.summary.partition(chr(10))[2])}</div>")
    if isinstance(run.results.get("published"), dict):
        parts.append(_table(flatten(run.results["published"], "published"), "published numbers compared with"))
    parts.append("".join(_img(n, b) for n, b in run.figures))
    parts.append(f"<details><summary>all numbers ({len(numbers)})</summary>{_table(numbers, 'results.json')}"
                 "</details>")
    parts.append(f"<details><summary>config</summary>{_table(flatten(run.config), 'config.json')}</details>")
    parts.append("</section>")
    return "\n".join(parts)


def _comparison(runs: list[Run]) -> str:
    flat = [flatten(r.results) for r in runs]
    keys = dict.fromkeys(k for f in flat for k in f)  # every key, in first-seen order
    shared = [k for k in keys if sum(k in f for f in flat) >= 2
              and all(isinstance(f.get(k, 0), (int, float)) for f in flat)
              and len({json.dumps(f.get(k)) for f in flat}) > 1]   # numbers that differ between the runs
    head = "".join(f"<th>{html.escape(r.label)}<br><small>{html.escape(r.experiment)}</small></th>" for r in runs)
    rows = "".join(f"<tr><th>{html.escape(k)}</th>"
                   + "".join(_cell(k, f[k]) if k in f else "<td></td>" for f in flat) + "</tr>"
                   for k in shared[:MAX_ROWS])
    table = f"<table class=grid><tr><th></th>{head}</tr>{rows}</table>" if shared else ""
    return (f"<section id=compare><h2>Side by side</h2>{_fewshot_table(runs)}{_curve_table(runs)}{table}"
            f"{_overlay(runs)}</section>")


def _fewshot_table(runs: list[Run]) -> str:
    """Every method of every few-shot run (``backgrounds.BG.oneshot20`` / ``.episodic``) in one table: the 20-run
    error and each N-way K-shot accuracy. The Omniglot experiments evaluate on the same 20 runs and draw the
    same episodes for every method (the episode seeds depend on the seed and the setting only)."""
    rows, settings = [], {}
    for r in runs:
        bgs = r.results.get("backgrounds")
        if not isinstance(bgs, dict):
            continue
        for bg, res in bgs.items():
            if not isinstance(res, dict):
                continue
            names = list(dict.fromkeys([*res.get("oneshot20", {}), *res.get("episodic", {})]))
            for name in names:
                rows.append((r, bg, name))
                settings.update(dict.fromkeys(res.get("episodic", {}).get(name, {})))
        if isinstance(r.results.get("mhd"), dict):
            rows.append((r, None, "mhd"))
    if len(rows) < 2:
        return ""
    cols = sorted(settings, key=lambda st: [int(t) for t in re.findall(r"\d+", st)])

    def cell(key: str, v: Any) -> str:
        return _cell(key, v) if isinstance(v, (int, float)) else "<td></td>"

    body = []
    for r, bg, name in rows:
        if bg is None:
            err = ("mhd.error", r.results["mhd"].get("error"))
            ep = {}
        else:
            res = r.results["backgrounds"][bg]
            err = (f"backgrounds.{bg}.oneshot20.{name}.error", res.get("oneshot20", {}).get(name, {}).get("error"))
            ep = res.get("episodic", {}).get(name, {})
        cells = cell(*err) + "".join(
            cell(f"backgrounds.{bg}.episodic.{name}.{st}.accuracy", ep[st].get("accuracy")) if st in ep else "<td></td>"
            for st in cols)
        body.append(f"<tr><th>{html.escape(name)}</th><td>{html.escape(bg or '-')}</td>"
                    f"<td>{html.escape(r.label)}</td>{cells}</tr>")
    head = "".join(f"<th>{html.escape(st)} accuracy</th>" for st in cols)
    return ("<table class=grid><caption>every method on the same 20 runs (error %, lower is better) and the same "
            "episodes (accuracy, 0-1)</caption><tr><th>method</th><th>background</th><th>run</th>"
            f"<th>20-run error (%)</th>{head}</tr>{''.join(body)}</table>")


def _curve_table(runs: list[Run]) -> str:
    """Each method's mean curve at the run's own n (``example.n``: the number of inner points), per run."""
    cols = []
    for r in runs:
        curves, sizes, n = r.results.get("curves"), r.results.get("sizes"), r.results.get("example", {}).get("n")
        if isinstance(curves, dict) and isinstance(sizes, list) and n in sizes:
            i = sizes.index(n)
            cols.append((r, n, {m: c["mean"][i] for m, c in curves.items() if isinstance(c, dict) and "mean" in c}))
    if len(cols) < 2:
        return ""
    methods = list(dict.fromkeys(m for _, _, v in cols for m in v))
    head = "".join(f"<th>{html.escape(r.label)} (n = {n})</th>" for r, n, _ in cols)
    rows = "".join(f"<tr><th>{html.escape(m)}</th>" + "".join(
        _cell(f"curves.{m}.mean[{r.results['sizes'].index(n)}]", v[m]) if m in v else "<td></td>"
        for r, n, v in cols) + "</tr>" for m in methods)
    return f"<table class=grid><caption>test metric at n = the inner-set size (mean over tasks)</caption>" \
           f"<tr><th>method</th>{head}</tr>{rows}</table>"


def _overlay(runs: list[Run]) -> str:
    """Curves of the same method over the same x axis from several runs, drawn on one figure."""
    curved = [r for r in runs if isinstance(r.results.get("curves"), dict) and isinstance(r.results.get("sizes"), list)]
    if len(curved) < 2:
        return ""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in curved:
        for method, curve in r.results["curves"].items():
            if method != "meta" or not isinstance(curve, dict) or "mean" not in curve:
                continue
            ax.plot(r.results["sizes"][: len(curve["mean"])], curve["mean"], label=f"{r.label} ({r.experiment})")
    ax.set_xlabel("training points n")
    ax.set_ylabel("test metric (mean over tasks)")
    ax.set_yscale("log")
    ax.set_title("meta-learned weights, each run")
    ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return _img("overlay.png", buf.getvalue())


_STYLE = """body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h2 small{font-weight:normal;color:#777;font-size:60%}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ddd;padding:2px 8px;text-align:left;vertical-align:top}caption{text-align:left;color:#555}
figure{display:inline-block;margin:.5em}img{max-width:520px}section{border-top:2px solid #ccc;margin-top:2em}
.note{color:#777}"""
_SCRIPT = """addEventListener('load',()=>{const im=[...document.images];
document.body.dataset.figures=im.length;document.body.dataset.figuresLoaded=im.filter(i=>i.complete&&i.naturalWidth>0).length;});"""


def render(runs: list[Run]) -> str:
    """The HTML page for ``runs`` (one section each, a comparison when there are several)."""
    title = runs[0].experiment if len(runs) == 1 else f"{len(runs)} runs"
    body = [f"<h1>adaptlab report: {html.escape(title)}</h1>"]
    if len(runs) > 1:
        body.append("<ul>" + "".join(f'<li><a href="#run-{i}">{html.escape(r.label)}</a> '
                                     f"({html.escape(r.experiment)})</li>" for i, r in enumerate(runs)) + "</ul>")
        body.append(_comparison(runs))
    body += [_run_section(r, i) for i, r in enumerate(runs)]
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style><script>{_SCRIPT}</script></head><body>{''.join(body)}</body></html>\n")


def write_report(run_dirs: list[str | Path], out: str | Path) -> Path:
    """Render the runs in ``run_dirs`` into the HTML file ``out`` (written atomically)."""
    if not run_dirs:
        raise RunDirError("report: name at least one run folder")
    runs = [load_run(d) for d in run_dirs]
    out = Path(out)
    if out.is_dir():
        raise RunDirError(f"report: --out {out} is a folder; name an .html file")
    if not out.parent.is_dir():
        raise RunDirError(f"report: --out {out}: folder {out.parent} does not exist")
    atomic_write_text(out, render(runs))
    return out
