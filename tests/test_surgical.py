"""surgical-finetune: bad input is one line and exit 2 before a run folder exists; the CIFAR-10 / CIFAR-10-C code
path runs end to end on a tiny fake folder; a run is reproducible."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from adaptlab.experiments import registry
from adaptlab.experiments.surgical import parse_shift

from helpers import cli


@pytest.mark.parametrize("override, message", [
    ("variants=block1,block9", "block 'block9' matches no parameter of CifarResNet; expected one of block1, block2"),
    ("variants=", "variants=[] is invalid; expected a non-empty list of variants (empty block set)"),
    ("shifts=fog:3", "shifts: 'fog' is unknown; expected 'labels', 'subpop' or CORRUPTION:SEVERITY"),
    ("shifts=contrast:6", "shifts: 'contrast:6' has severity 6; expected contrast:S with S in 1..5"),
    ("shifts=contrast", "has severity missing"),
    ("shifts=contrast:0", "shifts: 'contrast:0' has severity 0; expected contrast:S with S in 1..5"),
    ("variants=block1,stage9.*", "block 'stage9.*' matches no parameter of CifarResNet"),
    ("finetune.rgn_norms=all", "finetune.rgn_norms='all' is invalid; expected 'freeze' or 'weigh'"),
    ("finetune.eval_every=-1", "finetune.eval_every=-1 is invalid; expected an integer >= 0 (0: no stopping"),
    ("finetune.rgn_lrs=", "finetune.rgn_lrs=[] is invalid; expected a non-empty list of positive learning rates"),
    ("data.source=cifar10", "data.root='' is invalid; expected the folder holding CIFAR-10 and CIFAR-10-C"),
])
def test_bad_input_is_one_line_and_exit_2(override, message, tmp_path):
    out = tmp_path / "run"
    code, _, err = cli("run", "surgical-finetune", "--quick", "--set", override, "--out", str(out))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_a_data_root_without_cifar_files_is_one_line_and_exit_2(tmp_path):
    code, _, err = cli("run", "surgical-finetune", "--quick", "--set", "data.source=cifar10", "--set",
                       f"data.root={tmp_path}", "--out", str(tmp_path / "run"))
    assert code == 2 and "holds no CIFAR-10 batches; expected data_batch_1" in err and len(err.splitlines()) == 1


def test_a_data_root_with_cifar10_but_no_cifar10c_is_one_line_and_exit_2(tmp_path):
    _fake_cifar(tmp_path)
    for f in (tmp_path / "CIFAR-10-C").iterdir():
        f.unlink()
    code, _, err = cli("run", "surgical-finetune", "--quick", "--set", "data.source=cifar10", "--set",
                       f"data.root={tmp_path}", "--out", str(tmp_path / "run"))
    assert code == 2 and "holds no CIFAR-10-C; expected labels.npy" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def test_parse_shift():
    assert parse_shift("jpeg:2") == ("jpeg", 2) and parse_shift("subpop") == ("subpop", 0)


def _fake_cifar(root, n=12):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                "labels": [int(v) for v in rng.integers(0, 10, n)]}
        (d / f).write_bytes(pickle.dumps(data, protocol=2))
    c = root / "CIFAR-10-C"
    c.mkdir()
    np.save(c / "contrast.npy", rng.integers(0, 256, (5 * 40, 32, 32, 3), dtype=np.uint8))
    np.save(c / "labels.npy", rng.integers(0, 10, 5 * 40))


def test_cifar_code_path_runs_end_to_end_on_a_fake_folder(tmp_path):
    _fake_cifar(tmp_path)
    args = ["--set", "data.source=cifar10", "--set", f"data.root={tmp_path}", "--set", "shifts=contrast:3,labels",
            "--set", "n_target=10", "--set", "curve_sizes=5", "--set", "n_test=20"]
    code, _, err = cli("run", "surgical-finetune", "--quick", *args, "--out", str(tmp_path / "run"))
    assert code == 0, err
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["source"] == "cifar10" and set(res["shifts"]) == {"contrast:3", "labels"}
    cells = res["shifts"]["contrast:3"]["n"]["10"]
    assert res["shifts"]["contrast:3"]["n_pool"] == 20  # half of the 40 CIFAR-10-C images of severity 3
    assert all(0.0 <= c["acc"] <= 1.0 for c in cells.values())
    code, _, err = cli("run", "surgical-finetune", "--quick", *args[:4], "--set", "shifts=jpeg:3",
                       "--out", str(tmp_path / "run2"))
    assert code == 2 and "CIFAR-10-C has no jpeg_compression.npy" in err


def test_quick_run_is_reproducible_byte_for_byte(tmp_path):
    for name in ("a", "b"):
        code, _, err = cli("run", "surgical-finetune", "--quick", "--set", "shifts=contrast:5", "--set",
                           "variants=none,block1,auto-snr", "--set", "curve_variants=", "--out", str(tmp_path / name))
        assert code == 0, err
    assert (tmp_path / "a" / "results.json").read_bytes() == (tmp_path / "b" / "results.json").read_bytes()
    res = json.loads((tmp_path / "a" / "results.json").read_text())
    assert set(res["blocks"]) == {"block1", "block2", "block3", "head"}
    assert registry()["surgical-finetune"].config(quick=True).seeds == 2


def _tiny_shift(seed=0):
    """A random 10-class 'target shift' on 1 x 32 x 32 images: pool, held-out pool and test, disjoint."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(260, 1, 32, 32, generator=g)
    y = torch.randint(10, (260,), generator=g)
    return {"pool": (x[:100], y[:100]), "val": (x[100:120], y[100:120]), "val_pool": (x[100:220], y[100:220]),
            "test": (x[220:], y[220:])}


@pytest.mark.parametrize("select", ["seed", "mean"])
def test_lr_is_chosen_on_each_seeds_own_held_out_images(select):
    """Oracle: every (seed, lr) fine-tuned again by hand, scored on that seed's held-out draw; the cell's lr is
    each seed's argmax ('seed') or the argmax of the mean ('mean'), and its test accuracy that network's."""
    from adaptlab import models
    from adaptlab.eval.metrics import accuracy
    from adaptlab.experiments.surgical import _tune, heldout, run_shift

    cfg = registry()["surgical-finetune"].config(["finetune.lrs=0.001,0.03,0.3", "n_val=40", "seeds=3",
                                                  f"finetune.select={select}", "finetune.steps=3"], quick=True)
    torch.manual_seed(0)
    net = models.create("resnet-small").eval()
    data = _tiny_shift()
    cell = run_shift(cfg, net, data, None, 50, ["block1"], 3)["cells"]["block1"]
    val = [{lr: accuracy(_tune(cfg, net, "block1", data, 50, s, lr)[0], *heldout(cfg, data, s))
            for lr in (0.001, 0.03, 0.3)} for s in range(3)]
    assert [{float(k): a for k, a in v.items()} for v in cell["val"]] == val
    if select == "seed":
        want = [max(v, key=v.get) for v in val]
    else:
        want = [max(val[0], key=lambda r: sum(v[r] for v in val))] * 3
    assert cell["lr"] == want
    assert cell["per_seed"] == [accuracy(_tune(cfg, net, "block1", data, 50, s, lr)[0], *data["test"])
                                for s, lr in enumerate(want)]
    draws = [heldout(cfg, data, s)[0] for s in range(3)]
    assert all(d.shape[0] == 40 for d in draws) and not torch.equal(draws[0], draws[1])  # each seed its own


def test_stopping_step_is_chosen_on_each_seeds_held_out_images():
    """finetune.eval_every: each seed's run is evaluated on that seed's held-out draw (the one choosing the lr); the
    cell records the kept step, equal to finetune's own choice with those images, and scores that network."""
    from adaptlab import models
    from adaptlab.adapt import finetune
    from adaptlab.eval.metrics import accuracy
    from adaptlab.experiments.surgical import _tune, heldout, run_shift

    cfg = registry()["surgical-finetune"].config(["finetune.lrs=0.3", "n_val=40", "finetune.steps=6",
                                                  "finetune.eval_every=2"], quick=True)
    torch.manual_seed(0)
    net = models.create("resnet-small").eval()
    data = _tiny_shift()
    cell = run_shift(cfg, net, data, None, 50, ["block1"], 2)["cells"]["block1"]
    hists = [_tune(cfg, net, "block1", data, 50, s, 0.3)[1] for s in range(2)]
    assert all(h["eval"]["step"] == [2, 4, 6] for h in hists)
    assert cell["stop_step"] == [h["best_step"] for h in hists]
    for s, h in enumerate(hists):  # the recorded accuracy is the held-out accuracy of the network returned
        assert cell["val"][s]["0.3"] == max(h["eval"]["acc"])
    cfg_off = registry()["surgical-finetune"].config(["finetune.lrs=0.3", "finetune.steps=6"], quick=True)
    assert "stop_step" not in run_shift(cfg_off, net, data, None, 50, ["block1"], 2)["cells"]["block1"]
    assert "eval" not in finetune(net, *data["pool"], tune=["head"], steps=1, lr=0.1)[1]
    assert accuracy(_tune(cfg, net, "block1", data, 50, 0, 0.3)[0], *heldout(cfg, data, 0)) == cell["val"][0]["0.3"]


def test_seed0_selection_keeps_the_former_protocol():
    """'seed0' (the committed pre-fix folders): seed 0 alone runs the grid, on the first n_val held-out images."""
    from adaptlab import models
    from adaptlab.experiments.surgical import heldout, run_shift

    cfg = registry()["surgical-finetune"].config(["finetune.lrs=0.001,0.3", "finetune.select=seed0"], quick=True)
    data = _tiny_shift()
    assert torch.equal(heldout(cfg, data, 2)[0], data["val"][0])
    cell = run_shift(cfg, models.create("resnet-small").eval(), data, None, 50, ["head"], 2)["cells"]["head"]
    assert isinstance(cell["lr"], float) and set(cell["val"]) == {"0.001", "0.3"}
