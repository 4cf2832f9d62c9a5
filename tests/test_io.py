"""The bottom layer: atomic files and checkpoints that never run code."""

import os
import pickle

import pytest
import torch

from adaptlab.errors import RunDirError
from adaptlab.io import Checkpoint, atomic_write_text


class _Exploit:
    """Unpickling this calls ``os.system``: what a hostile checkpoint.pt would hold."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_round_trips_tensors_numbers_and_containers(tmp_path):
    ckpt = Checkpoint(tmp_path)
    state = {"step": 3, "w": torch.arange(4.0), "rng": torch.Generator().manual_seed(1).get_state(),
             "hist": [1.5, 2.5], "name": "x", "nested": {"a": (1, 2)}}
    ckpt.save(state)
    back = ckpt.load()
    assert back["step"] == 3 and back["hist"] == [1.5, 2.5] and back["nested"] == {"a": (1, 2)}
    assert torch.equal(back["w"], state["w"]) and torch.equal(back["rng"], state["rng"])


def test_checkpoint_with_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    with open(tmp_path / "checkpoint.pt", "wb") as f:
        pickle.dump({"state": _Exploit(marker)}, f)
    with pytest.raises(RunDirError, match="refused"):
        Checkpoint(tmp_path).load()
    assert not marker.exists()


def test_corrupt_checkpoint_is_an_error_not_a_restart(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"\x00not a checkpoint")
    with pytest.raises(RunDirError, match="unreadable|refused"):
        Checkpoint(tmp_path).load()


def test_atomic_write_leaves_no_temporary_file(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "hello")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    assert (tmp_path / "a.txt").read_text() == "hello"


def test_files_are_written_with_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644


def test_progress_off_a_terminal_prints_periodic_status_lines(monkeypatch, capsys):
    import time

    from adaptlab.io import progress

    monkeypatch.setenv("ADAPTLAB_PROGRESS", "1")
    monkeypatch.setenv("ADAPTLAB_PROGRESS_EVERY", "0.05")
    bar = progress(range(6), desc="train: ")
    for i in bar:
        time.sleep(0.03)
        bar.set_postfix(loss=1.0 / (i + 1))
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) >= 2 and "\r" not in err, err          # lines, not a carriage-return bar
    assert lines[-1].startswith("train: 6/6") and "loss=" in lines[-1]


def test_progress_is_silent_when_disabled(monkeypatch, capsys):
    from adaptlab.io import progress

    monkeypatch.setenv("ADAPTLAB_PROGRESS", "0")
    assert list(progress(range(3), desc="x")) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_checkpoint_records_its_experiment_and_refuses_another(tmp_path):
    from adaptlab.io import checkpoint_owner

    with checkpoint_owner("sinusoid-maml"):
        Checkpoint(tmp_path).save({"step": 1})
        assert Checkpoint(tmp_path).load() == {"step": 1}
    with checkpoint_owner("omniglot-protonet"), pytest.raises(RunDirError, match="written by experiment "
                                                                                  "'sinusoid-maml'"):
        Checkpoint(tmp_path).load()


def test_a_plain_torch_file_is_not_a_checkpoint(tmp_path):
    torch.save({"step": 1}, tmp_path / "checkpoint.pt")
    with pytest.raises(RunDirError, match="not an adaptlab checkpoint of format"):
        Checkpoint(tmp_path).load()
