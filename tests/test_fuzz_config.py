"""Hostile but fair input: for every experiment and every config key, values that are wrong for the field's type
or outside its documented range are refused with exit code 2, one line on stderr, no traceback and nothing on
disk. The cases come from the registry and from each key's own documentation (``adaptlab describe``), so a new
experiment or key is fuzzed the moment it exists."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adaptlab.configdoc import describe
from adaptlab.experiments import registry

from helpers import cli

_NUMERIC = ("a number", "an integer")


def _out_of_range(accepted: str, integer: bool) -> list[str]:
    """Values just outside the range an ``accepted`` text states (``in 1..100``, ``in [0, 1]``, ``>= 1``, ...)."""
    a, vals = accepted.lower(), []
    step = 1 if integer else 1e-3
    if m := re.search(r"(-?[\d_.e]+)\s*\.\.\s*(-?[\d_.e]+)", a):
        lo, hi = float(m.group(1).replace("_", "")), float(m.group(2).replace("_", ""))
        vals += [lo - step, hi + step]
    if m := re.search(r"[\[(]\s*(-?[\d.e]+),\s*(-?[\d.e]+)\s*[\])]", a):
        lo, hi = float(m.group(1)), float(m.group(2))
        vals += [lo - max(step, abs(lo) * 1e-3), hi + max(step, abs(hi) * 1e-3)]
    if "positive" in a or "> 0" in a:
        vals += [0, -1]
    if "non-negative" in a or ">= 0" in a:
        vals += [-1]
    if m := re.search(r">= (\d+)", a):
        vals += [int(m.group(1)) - 1]
    if m := re.search(r"<= ([\d_.e]+)", a):
        vals += [float(m.group(1).replace("_", "")) * 10 + 1]
    return [str(int(v)) if integer and float(v).is_integer() else repr(float(v)) for v in vals]


def bad_values(doc) -> list[str]:
    t, acc = doc.type, doc.accepted
    if t == "a number":
        return ["nan", "inf", "-inf", "1e308", "-1e308", "abc", "", "ü"] + _out_of_range(acc, False)
    if t == "an integer":
        return ["1.5", "abc", "", "1e308", str(2 ** 40), "nan", "٣"] + _out_of_range(acc, True)
    if t == "true/false":
        return ["maybe", "2", ""]
    if t.startswith("one of"):
        return ["zzz", "ü\u200b", "", "\x00"]
    if t.startswith("a comma-separated list"):
        vals = ["[1e308]", "[nan]", "[", "{}", '{"a": 1}']
        if "integer" in t:
            vals += ["a,b", "1.5", "1..99999999"]
        if "number" in t or "integer" in t:
            vals += ["[-1e300]"]
        if re.search(r"non-empty|at least one", acc):
            vals += ["[]"]
        return vals
    return []  # free text (paths, names) is checked by what it names


CASES = [(name, doc.key, v) for name, exp in registry().items() for doc in describe(exp.config(quick=True))
         for v in bad_values(doc)]


def test_the_fuzz_covers_every_experiment_and_numeric_key():
    keys = {(n, k) for n, k, _ in CASES}
    for name, exp in registry().items():
        for doc in describe(exp.config()):
            if doc.type in _NUMERIC:
                assert (name, doc.key) in keys


@pytest.mark.parametrize("name", list(registry()))
def test_every_numeric_key_documents_a_finite_range(name):
    undocumented = [d.key for d in describe(registry()[name].config())
                    if (d.type in _NUMERIC or re.search(r"list of (an integer|a number)", d.type)) and not d.accepted]
    assert not undocumented, f"{name}: no check() states the accepted range of {undocumented}"


@settings(max_examples=1000, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=st.sampled_from(CASES))
def test_bad_values_are_refused_in_one_line_leaving_nothing(case, tmp_path_factory):
    name, key, value = case
    root = tmp_path_factory.mktemp("fuzz")
    code, out, err = cli("run", name, "--quick", "--set", f"{key}={value}", "--out", str(root / "run"))
    lines = err.strip().splitlines()
    assert code == 2, f"{name} {key}={value!r} was accepted (exit {code})"
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert not any(root.iterdir()), f"{name} {key}={value!r} left files behind"
