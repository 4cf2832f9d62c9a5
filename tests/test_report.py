"""The HTML report: self-contained, numbers equal results.json, every figure loads in a real browser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from adaptlab.report import _fmt, flatten

from helpers import cli

CHROMIUM = shutil.which("chromium-headless-shell") or shutil.which("chromium")


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.cells: dict[str, list[str]] = {}
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.images: list[str] = []
        self.body: dict[str, str] = {}
        self._key = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and "href" in a:
            self.links.append(a["href"])
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag == "body":
            self.body = a
        self._key = a.get("data-key") if tag == "td" else None
        if self._key is not None:
            self.cells.setdefault(self._key, []).append("")

    def handle_data(self, data):
        if self._key is not None:
            self.cells[self._key][-1] += data

    def handle_endtag(self, tag):
        if tag == "td":
            self._key = None


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for name in ("fourier-gd", "fourier-gd-1step"):
        code, _, err = cli("run", name, "--quick", "--out", str(root / name))
        assert code == 0, err
    return root


def _check_numbers(page: _Page, results: dict):
    flat = flatten(results)
    assert page.cells, "the page shows no numbers"
    for key, shown in page.cells.items():
        if key in flat:
            assert shown == [_fmt(flat[key])] * len(shown), key


def test_every_run_folder_gets_a_self_contained_report(runs):
    text = (runs / "fourier-gd" / "report.html").read_text()
    page = _parse(text)
    results = json.loads((runs / "fourier-gd" / "results.json").read_text())
    _check_numbers(page, results)
    assert len(page.images) == len(list((runs / "fourier-gd").glob("*.png"))) > 0
    assert all(src.startswith("data:image/png;base64,") for src in page.images)
    assert "http://" not in text and "https://" not in text  # no network
    assert all(link.startswith("#") and link[1:] in page.ids for link in page.links)  # no broken links


def test_a_report_of_several_runs_sets_them_side_by_side(runs, tmp_path):
    out = tmp_path / "cmp.html"
    code, _, err = cli("report", str(runs / "fourier-gd"), str(runs / "fourier-gd-1step"), "--out", str(out))
    assert code == 0, err
    page = _parse(out.read_text())
    assert {"run-0", "run-1", "compare"} <= page.ids
    assert all(link[1:] in page.ids for link in page.links)
    r0, r1 = (json.loads((runs / n / "results.json").read_text()) for n in ("fourier-gd", "fourier-gd-1step"))
    i = r1["sizes"].index(r1["example"]["n"])
    shown = page.cells[f"curves.meta.mean[{i}]"]
    assert shown[:2] == [_fmt(r0["curves"]["meta"]["mean"][i]), _fmt(r1["curves"]["meta"]["mean"][i])]
    figures = len(list((runs / "fourier-gd").glob("*.png"))) + len(list((runs / "fourier-gd-1step").glob("*.png")))
    assert len(page.images) == figures + 1  # every run's figures and the overlay


def test_report_refuses_unfinished_folders_in_one_line(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    out = tmp_path / "r.html"
    code, _, err = cli("report", str(tmp_path), "--out", str(out))
    assert code == 2 and "results.json is missing" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"), reason="needs chromium-headless-shell "
                    "(apt-get install chromium-headless-shell); CI installs it")
def test_report_renders_in_a_headless_browser(runs):
    assert CHROMIUM, "chromium-headless-shell is not installed (apt-get install chromium-headless-shell)"
    path = runs / "fourier-gd" / "report.html"
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                          "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120).stdout
    page = _parse(dom)
    assert int(page.body["data-figures"]) == len(page.images) > 0
    assert page.body["data-figures-loaded"] == page.body["data-figures"], "a figure did not decode"
    _check_numbers(page, json.loads((runs / "fourier-gd" / "results.json").read_text()))


def test_few_shot_runs_share_one_table_of_every_method(tmp_path):
    runs = []
    for name in ("omniglot-protonet", "omniglot-baselines"):
        code, _, err = cli("run", name, "--quick", "--out", str(tmp_path / name))
        assert code == 0, err
        runs.append(json.loads((tmp_path / name / "results.json").read_text()))
    out = tmp_path / "all.html"
    code, _, err = cli("report", str(tmp_path / "omniglot-protonet"), str(tmp_path / "omniglot-baselines"),
                       "--out", str(out))
    assert code == 0, err
    text = out.read_text()
    assert "every method on the same 20 runs" in text
    page = _parse(text[text.index("every method on the same 20 runs"):text.index("</table>", text.index(
        "every method on the same 20 runs"))])
    expected = {}
    for r in runs:
        for bg, res in r["backgrounds"].items():
            for name, row in res["oneshot20"].items():
                expected[f"backgrounds.{bg}.oneshot20.{name}.error"] = row["error"]
            for name, eps in res["episodic"].items():
                for st, v in eps.items():
                    expected[f"backgrounds.{bg}.episodic.{name}.{st}.accuracy"] = v["accuracy"]
    assert set(page.cells) >= set(expected) and len(expected) >= 4
    for key, v in expected.items():
        assert page.cells[key] == [_fmt(v)], key
