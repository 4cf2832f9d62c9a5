"""Name a model's blocks and freeze all but some: the pieces surgical fine-tuning is built from.

:func:`blocks` maps block names to the parameter names they hold. A model that knows its own grouping
defines ``blocks() -> {name: [parameter prefixes or globs]}`` (the CIFAR ResNets do: block1 = stem + first
stage, ..., head); any other model is split in registration order, a new block starting at each conv or linear
layer (its batch norm joins it) and the last block named ``head``. Selecting a block, a set of blocks or a
parameter pattern goes through :func:`adaptlab.params.select`, so a name that matches nothing is an error.

:func:`freeze` sets ``requires_grad`` so only the chosen tensors train: autograd then records nothing before
the first tuned tensor (the frozen prefix gets no backward pass) and the frozen tensors get no ``.grad``.
:func:`train_mode` puts the model in training mode except the batch norms of frozen blocks, whose running
statistics stay those of the source data.

Example::

    >>> from adaptlab.models.mlp import MLP
    >>> net = MLP((4, 8, 8, 2))
    >>> b = blocks(net)
    >>> {k: len(v) for k, v in b.items()}
    {'block1': 2, 'block2': 2, 'head': 2}
    >>> tuned = freeze(net, select_blocks(net, ["head"]))
    >>> tuned, net.layers[0].weight.requires_grad
    (['head.weight', 'head.bias'], False)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from torch import nn

from adaptlab.params import select

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


def blocks(model: nn.Module) -> dict[str, list[str]]:
    """``{block name: [parameter names]}`` partitioning ``model``'s parameters, in forward order.

    Uses ``model.blocks()`` when the model defines it (prefixes or globs, resolved with
    :func:`adaptlab.params.select`); else a new block starts at each conv / linear layer and the last one is
    ``head``. Every parameter lies in exactly one block.

    Raises:
        ValueError: the model's own ``blocks()`` names a pattern that matches no parameter, or leaves a
            parameter out / puts one in two blocks.
    """
    named = dict(model.named_parameters())
    own_blocks = getattr(model, "blocks", None)
    if callable(own_blocks) and not isinstance(own_blocks, nn.Module):  # a method, not a ViT's ModuleList
        out = {name: list(select(named, pats)) for name, pats in model.blocks().items()}
    else:
        out, current = {}, None
        for mod_name, mod in model.named_modules():
            own = [f"{mod_name}.{p}" if mod_name else p for p, _ in mod.named_parameters(recurse=False)]
            if not own:
                continue
            if current is None or isinstance(mod, _LAYERS):
                current = f"block{len(out) + 1}"
                out[current] = []
            out[current].extend(own)
        if len(out) > 1:
            out["head"] = out.pop(current)
    seen = [n for names in out.values() for n in names]
    if sorted(seen) != sorted(named):
        missing = sorted(set(named) - set(seen)) or sorted({n for n in seen if seen.count(n) > 1})
        raise ValueError(f"blocks of {type(model).__name__} do not partition its parameters (e.g. {missing[:3]}); "
                         "each parameter must lie in exactly one block")
    return out


def select_blocks(model: nn.Module, chosen: str | Iterable[str], block_map: Mapping[str, list[str]] | None = None
                  ) -> list[str]:
    """Parameter names of the chosen blocks: block names of :func:`blocks`, ``"all"``, or parameter patterns.

    >>> from adaptlab.models.mlp import MLP
    >>> select_blocks(MLP((2, 3, 1)), ["block1", "head.bias"])
    ['layers.0.weight', 'layers.0.bias', 'head.bias']

    Raises:
        ValueError: an empty choice, or a name that is neither a block nor a pattern matching a parameter.
    """
    chosen = [chosen] if isinstance(chosen, str) else list(chosen)
    bmap = blocks(model) if block_map is None else block_map
    named = dict(model.named_parameters())
    if not chosen:
        raise ValueError(f"empty block set; expected one or more of {', '.join(bmap)}, 'all', or parameter patterns")
    names: set[str] = set()
    for c in chosen:
        if c == "all":
            names.update(named)
        elif c in bmap:
            names.update(bmap[c])
        else:
            try:
                names.update(select(named, c))
            except ValueError:
                raise ValueError(f"block {c!r} matches no parameter of {type(model).__name__}; expected one of "
                                 f"{', '.join(bmap)}, 'all', or a parameter prefix / glob") from None
    return [n for n in named if n in names]


def freeze(model: nn.Module, tuned: Iterable[str]) -> list[str]:
    """``requires_grad`` True for the parameters named in ``tuned``, False for all others; returns ``tuned``.

    Autograd records an operation only when one of its inputs requires grad, so the layers before the first
    tuned tensor build no graph: their backward pass is skipped, not computed and discarded.
    """
    tuned = list(tuned)
    keep = set(tuned)
    for n, p in model.named_parameters():
        p.requires_grad_(n in keep)
    return tuned


def train_mode(model: nn.Module, tuned: Iterable[str]) -> nn.Module:
    """``model.train()``, then ``eval()`` on every batch norm none of whose parameters is tuned.

    A frozen block's batch norm then normalises with the source statistics and does not update them; a
    tuned block's batch norm uses (and tracks) the target batch statistics as in ordinary fine-tuning.
    """
    keep = set(tuned)
    model.train()
    for mod_name, mod in model.named_modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            own = [f"{mod_name}.{p}" for p, _ in mod.named_parameters(recurse=False)]
            if not any(n in keep for n in own):
                mod.eval()
    return model


def norm_params(model: nn.Module) -> list[str]:
    """Names of the affine parameters of ``model``'s normalisation layers (batch / group / layer / instance norm).

    >>> from adaptlab.models.resnet import resnet_small
    >>> norm_params(resnet_small())[:2]
    ['stem.1.weight', 'stem.1.bias']
    """
    out = []
    for mod_name, mod in model.named_modules():
        if isinstance(mod, _NORMS):
            out.extend(f"{mod_name}.{p}" if mod_name else p for p, _ in mod.named_parameters(recurse=False))
    return out


def block_of(block_map: Mapping[str, list[str]]) -> dict[str, str]:
    """``{parameter name: block name}``, the inverse of :func:`blocks`."""
    return {n: b for b, names in block_map.items() for n in names}
