"""Numbers in configs are finite and bounded whatever the field; ranges are bounded before they expand."""

import pytest

from adaptlab.errors import ConfigError
from adaptlab.experiments import get

from helpers import cli


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e308", "-1e13"])
def test_non_finite_or_absurd_floats_are_refused(value):
    with pytest.raises(ConfigError, match="finite number"):
        get("fourier-closed-form").config([f"train.lr={value}"])


@pytest.mark.parametrize("override", ["shots=[1e308]", "seed=99999999999999"])
def test_huge_integers_are_refused(override):
    with pytest.raises(ConfigError, match="magnitude at most"):
        get("sinusoid-maml").config([override])


@pytest.mark.parametrize("text", ["1..20000000", "10..5", "1..1e10"])
def test_ranges_are_checked_before_they_are_expanded(text):
    code, out, err = cli("run", "fourier-closed-form", "--set", f"task.support={text}", "--print-config")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "task.support" in err


def test_in_range_values_still_parse():
    cfg = get("fourier-closed-form").config(["task.support=5..10", "train.lr=0.5"])
    assert list(cfg.task.support) == [5, 6, 7, 8, 9, 10] and cfg.train.lr == 0.5


@pytest.mark.parametrize("name, override", [
    ("fourier-closed-form", "train.tasks_per_step=20000"),
    ("fourier-closed-form", "eval.max_factor=1000"),
    ("mtl-multimnist", "train.lr=100"),
    ("omniglot-protonet", "train.lr=100"),
])
def test_an_upper_bound_names_the_key_that_broke_it(name, override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError) as e:
        get(name).config([override])
    assert str(e.value).startswith(f"{key}=")
