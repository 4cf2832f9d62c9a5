"""Help that teaches: every key of every experiment, with its type, default, accepted values and meaning."""

import dataclasses

import pytest

from adaptlab.configdoc import describe
from adaptlab.experiments import registry

from helpers import cli


def _leaf_keys(cfg, prefix=""):
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            yield from _leaf_keys(v, prefix + f.name + ".")
        else:
            yield prefix + f.name


@pytest.mark.parametrize("name", list(registry()))
def test_run_help_lists_every_config_key(name):
    code, out, err = cli("run", name, "--help")
    assert code == 0, err
    keys = list(_leaf_keys(registry()[name].config()))
    for key in keys:
        assert f"  {key} = " in out, key
    docs = describe(registry()[name].config())
    assert [d.key for d in docs] == keys
    assert sum(bool(d.help or d.accepted) for d in docs) >= len(docs) // 3  # most keys explain themselves


def test_meanings_and_ranges_come_from_the_config_source():
    docs = {d.key: d for d in describe(registry()["omniglot-protonet"].config())}
    assert docs["train.meta_batch"].help == "episodes per meta-step"
    assert docs["train.lr"].accepted == "a positive number"
    assert docs["train.n_way"].accepted == "an integer >= 1"  # a check() inside a loop over key names


def test_describe_an_unknown_experiment_is_one_line():
    code, _, err = cli("describe", "nope")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "adaptlab list" in err
