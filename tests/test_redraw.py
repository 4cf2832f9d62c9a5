"""`adaptlab redraw`: figures, summary and report drawn again from a finished run folder, numbers untouched."""

from __future__ import annotations

import shutil

import pytest

from helpers import cli


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    # the Omniglot figures read wall-clock times (timings.json), so this also checks they come back
    out = tmp_path_factory.mktemp("runs") / "p"
    code, _, err = cli("run", "omniglot-protonet", "--quick", "--out", str(out))
    assert code == 0, err
    return out


def _files(d):
    return {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}


def test_redraw_reproduces_the_run_and_keeps_the_numbers(finished, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(finished, copy)
    original = _files(finished)
    figures = sorted(n for n in original if n.endswith(".png"))
    assert figures
    (copy / figures[0]).unlink()  # a figure lost, another stale one left from an older version
    (copy / "old_figure.png").write_bytes(original[figures[-1]])
    (copy / "summary.md").write_text("# omniglot-protonet\n\nstale\n")
    code, out, err = cli("redraw", str(copy))
    assert code == 0, err
    redrawn = _files(copy)
    assert "old_figure.png" not in redrawn
    for name in ["results.json", "timings.json", "config.json", "summary.md", *figures]:
        assert redrawn[name] == original[name], name


def test_redraw_refuses_what_is_not_a_finished_run(finished, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for argv, needle in [((str(empty),), "results.json is missing"),
                         ((str(tmp_path / "absent"),), "results.json is missing"),
                         ((str(finished), str(empty)), str(empty))]:
        before = _files(finished)
        code, _, err = cli("redraw", *argv)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and needle in lines[0], err
        assert _files(finished) == before  # checked every folder before touching any
    assert list(empty.iterdir()) == []


def test_redraw_needs_the_experiment_when_the_summary_does_not_name_it(finished, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(finished, copy)
    (copy / "summary.md").unlink()
    code, _, err = cli("redraw", str(copy))
    assert code == 2 and "--name" in err
    code, _, err = cli("redraw", str(copy), "--name", "omniglot-protonet")
    assert code == 0, err
    assert (copy / "summary.md").read_bytes() == (finished / "summary.md").read_bytes()
    code, _, err = cli("redraw", str(copy), "--name", "sinusoid-maml")
    assert code == 2 and "config" in err


def test_redraw_of_a_folder_from_an_older_version_is_refused_and_untouched(finished, tmp_path):
    import json

    copy = tmp_path / "copy"
    shutil.copytree(finished, copy)
    res = json.loads((copy / "results.json").read_text())
    del res["published"]  # what an older version did not record
    (copy / "results.json").write_text(json.dumps(res))
    before = _files(copy)
    code, _, err = cli("redraw", str(copy))
    assert code == 2 and "rerun it" in err and "published" in err and len(err.strip().splitlines()) == 1
    assert _files(copy) == before
