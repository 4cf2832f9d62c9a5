"""One vocabulary of config keys (docs/config.md): every experiment's outer loop is configured by
``train.steps`` (or ``train.epochs``) and ``train.lr``; renamed keys are refused in ``--set`` with one line and
migrated in saved config.json files, so finished run folders written before the rename keep resuming."""

from __future__ import annotations

import json

import pytest

from adaptlab.config import from_dict, migrate, to_dict
from adaptlab.errors import ConfigError
from adaptlab.experiments import registry

from helpers import cli


def _leaves(d: dict, prefix: str = "") -> list[str]:
    return [k for key, v in d.items() for k in (_leaves(v, f"{prefix}{key}.") if isinstance(v, dict)
                                                 else [prefix + key])]


@pytest.mark.parametrize("name", sorted(registry()))
def test_every_experiment_trains_with_train_steps_and_train_lr(name):
    cfg = to_dict(registry()[name].config())
    trains = [k for k in _leaves(cfg) if k.rsplit(".", 1)[-1] in ("steps", "epochs", "lr", "checkpoint_every")]
    if not trains:  # an experiment that trains nothing (the language-model prompting studies) has no train section
        assert "train" not in cfg
        return
    train = cfg["train"]
    assert ("steps" in train or "epochs" in train) and "lr" in train
    # no training key outside the train section except inner loops' own (inner.steps, inner_lr, ...)
    inner_loops = ("train.", "inner.", "prune.", "channel.", "kmeans.", "train1d.", "finetune.", "int8.", "notebook.")
    stray = [k for k in trains if not k.startswith(inner_loops)]
    assert not stray, f"{name}: training keys outside train.*: {stray}"


def _old_form(cls, data: dict) -> dict:
    """``data`` written back with the keys of ``cls.RENAMED`` in their old places (the inverse move)."""
    data = json.loads(json.dumps(data))
    for old, new in reversed(list(cls.RENAMED.items())):
        node, parts = data, new.split(".")
        for p in parts[:-1]:
            node = node[p]
        value, node, parts = node.pop(parts[-1]), data, old.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return data


@pytest.mark.parametrize("name", sorted(n for n, e in registry().items() if getattr(e.config_cls, "RENAMED", None)))
def test_a_config_saved_with_the_old_keys_loads_as_the_same_config(name):
    exp = registry()[name]
    cfg = exp.config(quick=True)
    new = to_dict(cfg)
    old = _old_form(exp.config_cls, new)
    assert old != new and migrate(exp.config_cls, old) == new
    assert to_dict(from_dict(exp.config_cls, old)) == new
    old_key = next(iter(exp.config_cls.RENAMED))
    with pytest.raises(ConfigError, match=f"renamed '{exp.config_cls.RENAMED[old_key]}"):
        exp.config([f"{old_key}.steps=3" if isinstance(old.get(old_key), dict) else f"{old_key}=3"])


def test_a_finished_run_folder_with_the_old_keys_still_resumes(tmp_path):
    out = tmp_path / "run"
    code, _, err = cli("run", "alias-two-feature", "--quick", "--out", str(out))
    assert code == 0, err
    results = (out / "results.json").read_bytes()
    cfg = json.loads((out / "config.json").read_text())
    train = cfg.pop("train")
    (out / "config.json").write_text(json.dumps({**cfg, "lr": train["lr"], "steps": train["steps"]}))
    code, _, err = cli("run", "alias-two-feature", "--resume", "--out", str(out))
    assert code == 0, err
    assert (out / "results.json").read_bytes() == results
