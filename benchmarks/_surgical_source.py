"""The surgical-finetune probes' shared step: the default source model, trained once and cached on disk."""

from __future__ import annotations

from pathlib import Path

import torch


def cached_source(cfg, cache: Path):
    """``(net, clean)``: the source model of ``cfg`` (loaded from ``cache`` or trained and saved there) in eval
    mode, and the clean source data of :func:`adaptlab.experiments.surgical._source`."""
    from adaptlab.experiments.surgical import _new_model, _source, train_source

    clean = _source(cfg)
    net = _new_model(cfg)
    if cache.exists():
        net.load_state_dict(torch.load(cache))
    else:
        net.load_state_dict(train_source(cfg, clean[0])["model"])
        torch.save(net.state_dict(), cache)
    return net.eval(), clean
