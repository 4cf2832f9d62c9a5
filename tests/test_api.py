"""The public API: every package's face is its ``__init__``; every name in every ``__all__`` imports."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

import adaptlab


def _modules() -> list[str]:
    found = (m.name for m in pkgutil.walk_packages(adaptlab.__path__, "adaptlab."))
    return ["adaptlab"] + sorted(n for n in found if n != "adaptlab.__main__")


MODULES = _modules()
PACKAGES = [m for m in MODULES if hasattr(importlib.import_module(m), "__path__")]
# every package, and every module that declares __all__
EXPORTING = [m for m in MODULES if m in PACKAGES or hasattr(importlib.import_module(m), "__all__")]


@pytest.mark.parametrize("package", EXPORTING)
def test_every_exported_name_imports_and_all_is_sorted(package):
    mod = importlib.import_module(package)
    names = getattr(mod, "__all__", None)
    if package in ("adaptlab", "adaptlab.experiments"):  # subpackages / the registry, not re-exports
        return
    assert names, f"{package} has no __all__"
    assert list(names) == sorted(names), f"{package}.__all__ is not sorted"
    assert len(set(names)) == len(names)
    for name in names:
        assert getattr(mod, name) is not None, f"{package}.{name}"
    assert set(names) <= set(dir(mod))


def test_the_names_users_reach_for_exist():
    import adaptlab as al

    for dotted in ["meta.MAML", "meta.maml_meta_loss", "meta.ProtoNet", "meta.FeatureWeights",
                   "tasks.SinusoidTasks", "tasks.EpisodeSampler", "tasks.FourierTasks", "data.load_mnist",
                   "compress.prune_channels", "compress.FineGrainedPruner", "compress.convert_integer",
                   "mtl.pcgrad", "mtl.mgda", "mtl.HardSharing", "inner.min_norm_lstsq", "eval.mean_ci95",
                   "models.Conv4", "models.MLP"]:
        obj = al
        for part in dotted.split("."):
            obj = getattr(obj, part)
    assert al.meta.feature_weights.FeatureWeights is al.meta.FeatureWeights  # submodules stay reachable


def test_unknown_names_raise_attribute_error():
    import adaptlab as al

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        al.meta.nope  # noqa: B018
    with pytest.raises(AttributeError):
        al.nope  # noqa: B018


def test_import_adaptlab_stays_light():
    code = ("import sys, adaptlab, adaptlab.meta, adaptlab.mtl, adaptlab.compress; "
            "heavy = [m for m in ('torch', 'matplotlib', 'numpy', 'transformers') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"import adaptlab pulled in {out}"


def test_package_is_typed():
    from importlib.resources import files

    assert files("adaptlab").joinpath("py.typed").is_file()
