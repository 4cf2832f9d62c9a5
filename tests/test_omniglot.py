"""Omniglot data module, safe archives, the 20-run evaluator (MHD reproduces 38.8%) and the experiments."""

from __future__ import annotations

import shutil
import zipfile

import pytest
import torch

from adaptlab.data import omniglot as og
from adaptlab.data._archive import safe_extract_zip, sha256_file, verify_sha256
from adaptlab.errors import DataError
from adaptlab.eval.oneshot20 import ink_points, mhd_cost, modified_hausdorff, oneshot20_error

from helpers import cli


def test_small_sets_counts_dedup_and_rotations():
    s1, s2, both = og.load_characters("small1"), og.load_characters("small2"), og.load_characters("small")
    assert s1.images.shape == (136, 20, 28, 28) and s2.images.shape == (156, 20, 28, 28)
    # Greek and Latin are in both sets with identical drawings: the union keeps them once (README facts)
    shared = set(zip(s1.alphabets, s1.characters)) & set(zip(s2.alphabets, s2.characters))
    assert {a for a, _ in shared} == {"Greek", "Latin"}
    assert len(both) == 136 + 156 - len(shared) == 242 and len(both.alphabet_names) == 8
    assert len(set(zip(both.alphabets, both.characters))) == 242
    assert 0 <= float(s1.images.min()) and float(s1.images.max()) <= 1
    rot = s1.with_rotations()
    assert len(rot) == 4 * 136 and rot.alphabets[136] == s1.alphabets[0]
    assert torch.equal(rot.images[136 + 5], torch.rot90(s1.images[5], 1, dims=(-2, -1)))
    x, y = s1.labelled()
    assert x.shape == (136 * 20, 1, 28, 28) and torch.equal(y.bincount(), torch.full((136,), 20))
    native = og.load_characters("small1", size=105)
    assert native.images.shape[-1] == 105 and set(native.images.unique().tolist()) == {0.0, 1.0}


def test_alphabet_selection_is_disjoint_and_checked():
    s1 = og.load_characters("small1")
    part = s1.select_alphabets(["Korean"])
    assert set(part.alphabets) == {"Korean"} and 0 < len(part) < len(s1)
    with pytest.raises(DataError, match="unknown alphabet"):
        s1.select_alphabets(["Klingon"])


def test_missing_and_corrupt_files_are_named(tmp_path):
    with pytest.raises(DataError, match="missing Omniglot file .*images_background_small1.zip.*download"):
        og.load_characters("small1", root=tmp_path)
    bad = tmp_path / "images_background_small1.zip"
    bad.write_bytes(b"not the archive")
    with pytest.raises(DataError, match="corrupt file .*images_background_small1.zip: SHA-256"):
        og.load_characters("small1", root=tmp_path)
    with pytest.raises(DataError, match="unknown Omniglot set"):
        og.load_characters("small3")


def test_checksums_match_the_shared_sums_file():
    folder = og.omniglot_dir()
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        assert sha256_file(folder / name) == digest
        verify_sha256(folder / name, digest)


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize("evil", ["../escape.txt", "a/../../escape.txt", "/abs/escape.txt"])
def test_zip_slip_is_refused_before_writing(tmp_path, evil):
    archive = _zip(tmp_path / "evil.zip", {"ok/file.txt": b"fine", evil: b"pwned"})
    target = tmp_path / "out"
    with pytest.raises(DataError, match="unsafe archive member"):
        safe_extract_zip(archive, target)
    assert not (tmp_path / "escape.txt").exists() and not target.exists()  # nothing written at all


def test_safe_extract_and_extract_real_archive(tmp_path):
    out = safe_extract_zip(_zip(tmp_path / "a.zip", {"d/x.txt": b"1"}), tmp_path / "t")
    assert (out / "d" / "x.txt").read_bytes() == b"1"
    runs = og.extract("runs", tmp_path / "cache")
    assert len(list(runs.glob("run*/training/class*.png"))) == 400


def test_download_is_verified_and_offline_failure_is_clear(tmp_path, monkeypatch):
    # a "download" served from the local copy: verified, then moved into place
    src = og.omniglot_dir() / og.ARCHIVES["small1"].file
    monkeypatch.setattr(og, "OFFICIAL_URL", src.parent.as_uri() + "/")
    path = og.archive_path("small1", root=tmp_path, download=True)
    assert sha256_file(path) == og.ARCHIVES["small1"].sha256
    monkeypatch.setattr(og, "OFFICIAL_URL", (tmp_path / "nowhere").as_uri() + "/")
    with pytest.raises(DataError, match="download of .* failed"):
        og.archive_path("small2", root=tmp_path, download=True)
    assert not list(tmp_path.glob(".*part"))                                   # no partial file left


def test_runs_parse_class_labels():
    runs = og.load_runs(28)
    assert len(runs) == 20
    for r in runs:
        assert r.train.shape == (20, 28, 28) and r.test.shape == (20, 28, 28)
        assert sorted(r.answer.tolist()) == list(range(20))     # each training class is the answer once


def test_mhd_matches_pairwise_definition():
    r = og.load_runs()[3]
    fast = mhd_cost(r.train[:4], r.test[:3])
    slow = torch.stack([torch.stack([modified_hausdorff(ink_points(q), ink_points(t)) for t in r.train[:4]])
                        for q in r.test[:3]])
    torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-12)
    a = torch.tensor([[0.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    b = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    assert modified_hausdorff(a, b).item() == 1.0                             # max(mean(1, 1), 1)


def test_modified_hausdorff_reproduces_published_38_8_percent():
    res = oneshot20_error(mhd_cost)
    assert len(res["run_errors"]) == 20
    assert round(res["error"], 1) == 38.8        # Lake et al. (2015): 38.8% error; ours is 38.75 exactly
    assert res["error"] == pytest.approx(38.75, abs=1e-12)


def test_bad_config_exits_2_with_a_clear_line():
    code, _, err = cli("run", "omniglot-protonet", "--set", "data.backgrounds=small9", "--quick")
    assert code == 2 and "data.backgrounds" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("run", "omniglot-maml", "--set", "train.n_way=5", "--quick")
    assert code == 2 and "train.n_way" in err


def test_missing_data_exits_2(tmp_path):
    code, _, err = cli("run", "omniglot-protonet", "--quick", "--set", f"data.root={tmp_path}",
                       "--out", str(tmp_path / "run"))
    assert code == 2 and "missing Omniglot file" in err


def test_protonet_quick_run_and_resume_give_identical_results(tmp_path):
    args = ["run", "omniglot-protonet", "--quick", "--set", "train.steps=6", "--set", "train.checkpoint_every=3"]
    code, _, err = cli(*args, "--out", str(tmp_path / "a"))
    assert code == 0, err
    import json

    full = json.loads((tmp_path / "a" / "results.json").read_text())
    # interrupted after the step-3 checkpoint: copy that checkpoint into a fresh folder and resume
    from adaptlab.experiments import get
    from adaptlab.runner import run_experiment

    exp = get("omniglot-protonet")
    cfg = exp.config(["train.steps=6", "train.checkpoint_every=3"], quick=True)
    saved = {}

    class Stop(Exception):
        pass

    import adaptlab.runner as runner

    orig = runner.Checkpoint.save

    def save_then_stop(self, state):
        orig(self, state)
        saved["state"] = state
        raise Stop

    b = tmp_path / "b"
    runner.Checkpoint.save = save_then_stop
    try:
        with pytest.raises(Stop):
            run_experiment(exp, cfg, b)
    finally:
        runner.Checkpoint.save = orig
    assert saved["state"]["current"]["stage"] == "small1" and saved["state"]["current"]["state"]["step"] == 3
    res = run_experiment(exp, cfg, b, resume=True).results
    for bg in ("small1",):
        h1, h2 = full["backgrounds"][bg], res["backgrounds"][bg]
        assert h1["history"]["loss"] == h2["history"]["loss"]
        assert h1["oneshot20"] == h2["oneshot20"] and h1["episodic"] == h2["episodic"]
    shutil.rmtree(tmp_path)


def _png(array) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("data, why", [
    (b"\x89PNG garbage", "not a readable PNG"),
    (None, "8x8 pixels"),
    ("blank", "no ink"),
])
def test_damaged_images_are_data_errors_naming_the_file(data, why):
    import numpy as np

    from adaptlab.data.omniglot import _decode_png
    from adaptlab.errors import DataError

    if data is None:
        data = _png(np.full((8, 8), 255))
    elif data == "blank":
        data = _png(np.full((105, 105), 255))
    with pytest.raises(DataError, match=why) as e:
        _decode_png(data, "images_background.zip:Greek/character01/x.png")
    assert "character01" in str(e.value)


def test_a_real_drawing_decodes_to_ink():
    import numpy as np

    from adaptlab.data.omniglot import _decode_png

    img = np.full((105, 105), 255)
    img[40:60, 50:52] = 0  # a stroke
    ink = _decode_png(_png(img))
    assert ink.shape == (105, 105) and int(ink.sum()) == 40


def test_every_archive_is_checked_before_the_run_folder_exists(tmp_path):
    """all_runs.zip and the other minimal set are needed only after training: a missing one must stop the
    run before it starts, not after."""
    import os
    from pathlib import Path

    data = tmp_path / "omniglot"
    data.mkdir()
    src = Path(os.environ["ADAPTLAB_DATA"]) / "omniglot"
    shutil.copy(src / "images_background_small1.zip", data)  # small2 and the 20 runs are missing
    out = tmp_path / "run"
    code, _, err = cli("run", "omniglot-protonet", "--quick", "--set", f"data.root={data}", "--out", str(out))
    assert code == 2 and "images_background_small2.zip" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
