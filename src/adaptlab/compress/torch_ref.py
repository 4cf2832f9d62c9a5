"""PyTorch's own compression tools on our models, for side-by-side comparison.

* :func:`torch_prune_masks` — ``torch.nn.utils.prune.l1_unstructured`` masks (should equal ours exactly).
* :func:`torch_int8` — eager-mode post-training static int8 quantization with ``torch.ao.quantization``
  (fuse conv+BN+ReLU, observe on calibration batches, convert; x86/fbgemm kernels). ``torch.ao.quantization``
  is deprecated in favour of ``torchao`` but still works in the torch versions this project targets; its
  deprecation warnings are silenced here.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable, Mapping

import torch
from torch import nn


def torch_prune_masks(model: nn.Module, sparsities: Mapping[str, float]) -> dict[str, torch.Tensor]:
    """``{name: mask}`` from ``torch.nn.utils.prune.l1_unstructured(module, "weight", amount=s)``."""
    from torch.nn.utils import prune

    model = copy.deepcopy(model)
    modules = dict(model.named_modules())
    out = {}
    for name, s in sparsities.items():
        mod = modules[name.rsplit(".", 1)[0]]
        prune.l1_unstructured(mod, "weight", amount=float(s))
        out[name] = mod.weight_mask.detach().clone()
    return out


def _fuse_groups(layers: list[nn.Module]) -> list[list[str]]:
    """Runs of conv(+bn)(+relu) / linear(+relu) to fuse, by index name in the flat Sequential (offset 1)."""
    groups, i = [], 0
    while i < len(layers):
        if isinstance(layers[i], (nn.Conv1d, nn.Conv2d, nn.Linear)):
            g = [i]
            if i + 1 < len(layers) and isinstance(layers[i + 1], (nn.BatchNorm1d, nn.BatchNorm2d)):
                g.append(i + 1)
            if g[-1] + 1 < len(layers) and isinstance(layers[g[-1] + 1], nn.ReLU):
                g.append(g[-1] + 1)
            if len(g) > 1:
                groups.append([str(j + 1) for j in g])
            i = g[-1] + 1
        else:
            i += 1
    return groups


class _AllowNondeterministic(nn.Module):
    """Runs a module with ``torch.use_deterministic_algorithms`` switched off for the call.

    The quantized CPU kernels resize their outputs with an op that has no deterministic variant, so a caller
    that asked for deterministic algorithms (as the tests do) would get an error; the int8 kernels
    themselves give the same result on every call.
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        was = torch.are_deterministic_algorithms_enabled()
        warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        torch.use_deterministic_algorithms(False)
        try:
            return self.module(x)
        finally:
            torch.use_deterministic_algorithms(was, warn_only=warn_only)


@torch.no_grad()
def torch_int8(model: nn.Module, calib_batches: Iterable[torch.Tensor]) -> nn.Module:
    """Post-training static int8 model from ``torch.ao.quantization`` (CPU).

    Args:
        model: a features/classifier CNN. calib_batches: inputs already shaped as the first layer expects
            ((N, 1, 28, 28) for the image CNNs, (N, 1, 40) for the MNIST-1D CNN).

    Returns:
        The quantized module (float input, float logits out).
    """
    import torch.ao.quantization as tq

    engines = torch.backends.quantized.supported_engines
    engine = "x86" if "x86" in engines else ("fbgemm" if "fbgemm" in engines else engines[-1])
    torch.backends.quantized.engine = engine
    layers = [copy.deepcopy(m) for m in list(model.features) + list(model.classifier)]
    qmodel = nn.Sequential(tq.QuantStub(), *layers, tq.DeQuantStub()).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization deprecation and observer notices
        qmodel.qconfig = tq.get_default_qconfig(engine)
        qmodel = tq.fuse_modules(qmodel, _fuse_groups(layers))
        tq.prepare(qmodel, inplace=True)
        for xb in calib_batches:
            qmodel(xb)
        tq.convert(qmodel, inplace=True)
    return _AllowNondeterministic(qmodel)
