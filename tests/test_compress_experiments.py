"""prune-mnist / quantize-mnist: bad configs exit 2 with one clear line; an interrupted run resumes exactly."""

from __future__ import annotations

import json

import pytest

from adaptlab.io import Checkpoint

from helpers import cli

TINY = ["--set", "widths=[4,8]", "--set", "data.train_size=1000", "--set", "data.val_size=200",
        "--set", "data.test_size=300", "--set", "train.steps=110", "--set", "train.batch_size=32",
        "--set", "prune.grid=[0,0.5,0.9]",
        "--set", "prune.finetune_steps=5", "--set", "channel.finetune_steps=5", "--set", "latency_repeats=3"]


@pytest.mark.parametrize("name,override,words", [
    ("prune-mnist", "prune.grid=[0,1.5]", "prune.grid=1.5"),
    ("prune-mnist", "channel.ratio=-0.1", "channel.ratio"),
    ("prune-mnist", "prune.layers=features.9.weight", "unknown layer 'features.9.weight'"),
    ("prune-mnist", "prune.target=0", "prune.target"),
    ("quantize-mnist", "kmeans.bits=[8,0]", "kmeans.bits=0"),
    ("quantize-mnist", "models=resnet", "models='resnet'"),
])
def test_bad_configs_exit_2_with_one_clear_line(name, override, words, tmp_path):
    code, _, err = cli("run", name, "--quick", "--set", override, "--out", str(tmp_path / "r"))
    assert code == 2
    assert words in err and len(err.strip().splitlines()) == 1


def _comparable(results: dict) -> dict:
    """results.json holds no wall-clock measurements (they are in timings.json), so it compares as it is."""
    assert "latency" not in results and "latency" not in results["channel"] and "seconds" not in results["scan"]
    return results


def test_interrupted_prune_run_resumes_to_identical_results(tmp_path, monkeypatch):
    code, _, err = cli("run", "prune-mnist", *TINY, "--out", str(tmp_path / "a"))
    assert code == 0, err
    full = json.loads((tmp_path / "a" / "results.json").read_text())

    real_save = Checkpoint.save
    for stop_at in (1, 3):          # 1: mid-training (partial state at step 100); 3: after the scan stage
        calls = []

        def save(self, state, calls=calls, stop_at=stop_at):
            real_save(self, state)
            calls.append(1)
            if len(calls) == stop_at:
                raise KeyboardInterrupt

        monkeypatch.setattr(Checkpoint, "save", save)
        args = ("--resume",) if stop_at == 3 else TINY
        code, _, _ = cli("run", "prune-mnist", *args, "--out", str(tmp_path / "b"))
        assert code == 130 and (tmp_path / "b" / "checkpoint.pt").exists()
    monkeypatch.setattr(Checkpoint, "save", real_save)
    code, _, err = cli("run", "prune-mnist", "--resume", "--out", str(tmp_path / "b"))
    assert code == 0, err
    resumed = json.loads((tmp_path / "b" / "results.json").read_text())
    assert _comparable(resumed) == _comparable(full)
