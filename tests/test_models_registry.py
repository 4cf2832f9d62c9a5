"""Registry-driven contract test: every registered model builds, maps a small batch to its declared output
shape, and gives a finite gradient to every parameter. A model is tested the moment it is registered."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adaptlab import models
from adaptlab.errors import ConfigError
from adaptlab.models.cnn import VGGNet
from adaptlab.models.mtl_lenet import lenet_blocks, lenet_head
from adaptlab.mtl.architectures import HardSharing

BATCH = 3


def shapes(out):
    """The shape structure of a model output: tensors -> tuple(shape), dicts and tuples kept."""
    if isinstance(out, torch.Tensor):
        return tuple(out.shape)
    if isinstance(out, dict):
        return {k: shapes(v) for k, v in out.items()}
    if isinstance(out, (tuple, list)):
        return tuple(shapes(v) for v in out)
    raise TypeError(f"unexpected model output of type {type(out).__name__}")


def tensors(out):
    if isinstance(out, torch.Tensor):
        return [out]
    vals = out.values() if isinstance(out, dict) else out
    return [t for v in vals for t in tensors(v)]


def test_registry_holds_every_model_family():
    expected = {"mlp", "conv4", "vgg", "lenet", "mnist1d", "multimnist-lenet", "multimnist-cross-stitch"}
    assert expected <= set(models.names())
    assert models.names() == sorted(models.names())


@pytest.mark.parametrize("name", models.names())
def test_forward_shape_and_finite_gradient_for_every_parameter(name):
    spec = models.spec(name)
    net = models.create(name)
    assert isinstance(net, nn.Module)
    params = dict(net.named_parameters())
    assert params, f"{name} has no parameters"
    x = torch.randn(BATCH, *spec.input_shape)
    out = net(x)
    assert shapes(out) == spec.output_shape(BATCH)
    outs = tensors(out)
    assert all(torch.isfinite(t).all() for t in outs)
    # A loss that touches every output; squares so no gradient is identically zero by construction.
    loss = sum((t ** 2).mean() for t in outs)
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    for (pname, p), g in zip(params.items(), grads):
        assert g is not None, f"{name}: parameter {pname} gets no gradient"
        assert g.shape == p.shape and torch.isfinite(g).all(), f"{name}: gradient of {pname} is not finite"
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", models.names())
def test_create_is_the_factory_call(name):
    # Same seed, same parameters: the registry adds nothing to the construction (no extra RNG draws).
    spec = models.spec(name)
    torch.manual_seed(1)
    a = models.create(name).state_dict()
    torch.manual_seed(1)
    b = spec.factory().state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_create_passes_keyword_arguments():
    torch.manual_seed(0)
    a = models.create("vgg", widths=(4, 8), num_classes=3)
    torch.manual_seed(0)
    b = VGGNet(widths=(4, 8), num_classes=3)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert a(torch.zeros(2, 28, 28)).shape == (2, 3)


def test_multimnist_lenet_is_the_experiments_network():
    # The registered factory builds encoder then heads in task order, exactly as mtl-multimnist always did.
    torch.manual_seed(0)
    a = models.create("multimnist-lenet", tasks=("left", "right"), dropout=0.5).state_dict()
    torch.manual_seed(0)
    b = HardSharing(lenet_blocks(0.5), {t: lenet_head(10, 0.5) for t in ("left", "right")}).state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_unknown_name_is_a_clear_error_naming_the_registered_models():
    with pytest.raises(ConfigError, match="unknown model 'resnet9000'") as e:
        models.create("resnet9000")
    for n in models.names():
        assert n in str(e.value)


def test_register_as_decorator_and_refuses_a_taken_name():
    from adaptlab.models import registry

    @models.register("_test-linear", input_shape=(2,), output_shape=lambda b: (b, 1))
    def linear():
        return nn.Linear(2, 1)

    try:
        assert "_test-linear" in models.names()
        assert models.create("_test-linear")(torch.zeros(4, 2)).shape == (4, 1)
        with pytest.raises(ValueError, match="already registered"):
            models.register("_test-linear", lambda: nn.Linear(2, 1), input_shape=(2,), output_shape=lambda b: (b, 1))
    finally:
        registry._REGISTRY.pop("_test-linear")
