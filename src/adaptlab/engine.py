"""The one training loop: :func:`fit`, with learning-rate schedules, optimizers and derived seeds.

One step of ``fit`` is (``step`` counts from 0)::

    batch = batches(step)                      # draws from the generators
    lr = schedule(step)                        # into every param group, when a schedule is given
    optimizer.zero_grad(); loss = step_fn(batch); loss.backward()
    all_reduce(params of the optimizer)        # e.g. sum the gradients over torchrun processes
    optimizer.step(); history["loss"].append(float(loss))
    callback(step + 1, history)                # for each callback
    checkpoint.save(state) when (step + 1) % every == 0, except after the last step

A non-finite loss stops the loop with a :class:`~adaptlab.errors.DivergedError` ("diverged at step k: loss=nan;
lower the learning rate"), before anything of that step is checkpointed: the last checkpoint stays good.

Without an ``optimizer``, ``step_fn`` does the whole update itself (an object that owns its optimizer, such as
:class:`adaptlab.mtl.train.MethodStep`); a ``step_fn`` that fills ``.grad`` itself (a gradient aggregator)
returns a loss without a graph, or None, and ``fit`` does not back-propagate it.

The checkpoint is one schema for every loop: ``{"step", "modules", "params", "optimizer", "generators",
"history"}``, where ``modules`` holds the ``state_dict()`` of every object given as ``modules`` (models,
learners), ``params`` loose tensors (e.g. k-means codebooks), ``generators`` every generator's state and
``history`` the dict that ``step_fn`` and the callbacks write to. Everything in it is tensors, numbers,
strings and containers, so :class:`adaptlab.io.Checkpoint` loads it with ``weights_only=True``; restoring it
gives bit-for-bit the run that was not interrupted. A state with other keys is refused with one line.

Example::

    >>> import torch
    >>> w = torch.zeros(3, requires_grad=True)
    >>> g = torch.Generator().manual_seed(0)
    >>> target = torch.tensor([1.0, -2.0, 0.5])
    >>> hist = fit(lambda x: ((x @ w - x @ target) ** 2).mean(), lambda step: torch.randn(8, 3, generator=g),
    ...            steps=200, optimizer=make_optimizer([w], "sgd", 0.1), generator=g, params=[w])
    >>> len(hist["loss"]), torch.allclose(w, target, atol=1e-3)
    (200, True)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch

from adaptlab.errors import DivergedError, RunDirError

__all__ = ["constant", "cosine", "derive_seed", "fit", "make_optimizer", "step_halving", "warmup_cosine"]

Schedule = Callable[[int], float]  # step (0-based) -> learning rate
STATE_KEYS = ("generators", "history", "modules", "optimizer", "params", "step")


def constant(lr: float) -> Schedule:
    """The same learning rate at every step."""
    return lambda step: lr


def cosine(lr: float, steps: int) -> Schedule:
    """``lr (1 + cos(pi step / steps)) / 2``: from ``lr`` at step 0 down to 0 at ``steps``.

    >>> [round(cosine(1.0, 4)(s), 3) for s in range(5)]
    [1.0, 0.854, 0.5, 0.146, 0.0]
    """
    return lambda step: lr * 0.5 * (1.0 + math.cos(math.pi * step / max(1, steps)))


def warmup_cosine(lr: float, steps: int, warmup: int) -> Schedule:
    """Linear warm-up over ``warmup`` steps, ``lr (step + 1) / warmup``, then :func:`cosine` over the rest, from
    ``lr`` down to 0 at ``steps`` (``warmup = 0`` is :func:`cosine`; Goyal et al. 2017, Loshchilov & Hutter 2017).

    >>> [round(warmup_cosine(1.0, 6, 2)(s), 3) for s in range(7)]
    [0.5, 1.0, 1.0, 0.854, 0.5, 0.146, 0.0]
    """
    if not 0 <= warmup < max(1, steps):
        raise ValueError(f"warmup_cosine warmup={warmup}; expected an integer in 0..steps-1 (steps={steps})")
    decay = cosine(lr, steps - warmup)
    return lambda step: lr * (step + 1) / warmup if step < warmup else decay(step - warmup)


def step_halving(lr: float, every: int) -> Schedule:
    """``lr / 2 ** (step // every)``; ``every = 0`` never halves.

    >>> [step_halving(1.0, 2)(s) for s in range(5)]
    [1.0, 1.0, 0.5, 0.5, 0.25]
    """
    if every < 0:
        raise ValueError(f"step_halving every={every}; expected 0 (never) or a positive number of steps")
    return lambda step: lr * 0.5 ** (step // every) if every else lr


def make_optimizer(params: Iterable[torch.Tensor], name: str, lr: float, *, weight_decay: float = 0.0,
                   momentum: float = 0.0, nesterov: bool = False) -> torch.optim.Optimizer:
    """``"adam"`` (torch.optim.Adam) or ``"sgd"`` (torch.optim.SGD, plain unless ``momentum`` is given).

    >>> type(make_optimizer([torch.zeros(1, requires_grad=True)], "adam", 1e-3)).__name__
    'Adam'
    """
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    raise ValueError(f"optimizer={name!r} is invalid; expected 'adam' or 'sgd'")


def derive_seed(seed: int, index: int) -> int:
    """Seed of the ``index``-th random stream of a run seeded ``seed``: ``1000 * seed + index``.

    ``index`` must lie in 0..999, so distinct ``(seed, index)`` pairs never give the same stream. This is the
    formula the experiments wrote by hand in round 1 (``seed * 1000 + i``), kept so that no result moves.

    >>> derive_seed(7, 3)
    7003
    """
    if not 0 <= index < 1000:
        raise ValueError(f"derive_seed index={index}; expected 0..999 (streams of other seeds start at 1000)")
    return 1000 * seed + index


def fit(step_fn: Callable[[Any], Any], batches: Callable[[int], Any] | None = None, *, steps: int,
        optimizer: torch.optim.Optimizer | None = None, schedule: Schedule | None = None,
        generator: torch.Generator | Mapping[str, torch.Generator] | None = None,
        modules: Mapping[str, Any] | None = None, params: Sequence[torch.Tensor] = (),
        history: dict | None = None, checkpoint=None, resume: bool = True, every: int | None = None,
        callbacks: Sequence[Callable[[int, dict], None]] = (),
        all_reduce: Callable[[list[torch.Tensor]], None] | None = None,
        progress: Callable | None = None, desc: str | None = None) -> dict:
    """Run ``step_fn`` on ``batches(step)`` for steps ``0 .. steps - 1``, continuing an interrupted run.

    Args:
        step_fn: ``step_fn(batch) -> loss`` (a scalar tensor, a float, or None).
        batches: ``batches(step) -> batch``; default: the batch is the step index itself.
        steps: the total number of steps (a resumed run does the remaining ones).
        optimizer: stepped after ``loss.backward()``; None when ``step_fn`` updates by itself.
        schedule: ``schedule(step) -> lr`` set in every param group before each step (None: leave lr alone).
        generator: one generator or ``{name: generator}`` whose states are checkpointed
            (``torch.default_generator`` is the global one, e.g. for dropout).
        modules: ``{name: object with state_dict() / load_state_dict()}`` to checkpoint (models, learners).
        params: loose tensors to checkpoint (restored in place).
        history: the dict ``step_fn`` and callbacks write to (restored in place on resume); ``fit`` appends
            to its ``"loss"`` list and adds training seconds (callbacks and checkpoints excluded) to
            ``"seconds"``.
        checkpoint: an :class:`adaptlab.io.Checkpoint` (or a stage of :class:`adaptlab.runner.Stages`):
            ``load()`` gives the state to continue from, ``save(state)`` stores it.
        resume: continue from ``checkpoint.load()`` (True) or start over (False).
        every: steps between checkpoints; default ``checkpoint.every``.
        callbacks: ``callback(step, history)`` after each step, with ``step`` the number of steps done, and
            with 0 before the first step of a run that does not resume.
        all_reduce: ``all_reduce(params)`` after the backward pass, before the optimizer step
            (e.g. :func:`adaptlab.distributed.all_reduce_gradients`).
        progress: ``progress(iterable, total=, initial=, desc=)`` wrapper (a progress bar), e.g.
            :func:`adaptlab.io.progress`.

    Returns:
        ``history``.
    """
    if optimizer is None and (schedule is not None or all_reduce is not None):
        raise ValueError("fit: a schedule or an all_reduce hook needs the optimizer; pass optimizer=...")
    gens = {} if generator is None else (
        {"generator": generator} if isinstance(generator, torch.Generator) else dict(generator))
    modules, params = dict(modules or {}), list(params)
    history = {} if history is None else history
    history.setdefault("loss", [])
    history.setdefault("seconds", 0.0)
    opt_params = [p for g in optimizer.param_groups for p in g["params"]] if optimizer is not None else []
    every = every or getattr(checkpoint, "every", 0)
    state = checkpoint.load() if checkpoint is not None and resume else None
    start = 0 if state is None else _restore(state, checkpoint, modules, params, optimizer, gens, history)
    if start == 0:
        for cb in callbacks:
            cb(0, history)
    it = range(start, steps)
    if progress is not None:
        it = progress(it, total=steps, initial=start, **({"desc": desc} if desc else {}))
    for step in it:
        t0 = time.perf_counter()
        batch = step if batches is None else batches(step)
        if schedule is not None:
            for group in optimizer.param_groups:
                group["lr"] = schedule(step)
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
        loss = step_fn(batch)
        if optimizer is not None:
            if isinstance(loss, torch.Tensor) and loss.requires_grad:
                loss.backward()
            if all_reduce is not None:
                all_reduce(opt_params)
            optimizer.step()
        if loss is not None:
            value = float(loss.detach() if isinstance(loss, torch.Tensor) else loss)
            if not math.isfinite(value):  # stop before this step's state can reach a checkpoint
                raise DivergedError(f"diverged at step {step + 1}: loss={value}; lower the learning rate "
                                    "(train.lr) and run again")
            history["loss"].append(value)
        history["seconds"] += time.perf_counter() - t0
        for cb in callbacks:
            cb(step + 1, history)
        if checkpoint is not None and every and (step + 1) % every == 0 and step + 1 < steps:
            checkpoint.save({"step": step + 1, "modules": {k: m.state_dict() for k, m in modules.items()},
                             "params": [p.detach() for p in params],
                             "optimizer": None if optimizer is None else optimizer.state_dict(),
                             "generators": {k: g.get_state() for k, g in gens.items()}, "history": history})
    return history


def _restore(state, checkpoint, modules, params, optimizer, gens, history) -> int:
    """Load ``state`` into the live objects; a state of another loop is a RunDirError, not a KeyError."""
    where = f"checkpoint {getattr(checkpoint, 'path', '')}".rstrip()
    want = f"modules {sorted(modules)}, {len(params)} params, generators {sorted(gens)}"
    try:
        ok = (isinstance(state, dict) and tuple(sorted(state)) == STATE_KEYS
              and sorted(state["modules"]) == sorted(modules) and len(state["params"]) == len(params)
              and sorted(state["generators"]) == sorted(gens) and (state["optimizer"] is None) == (optimizer is None))
        if ok:
            for k, m in modules.items():
                m.load_state_dict(state["modules"][k])
            with torch.no_grad():
                for p, v in zip(params, state["params"]):
                    p.copy_(v)
            if optimizer is not None:
                optimizer.load_state_dict(state["optimizer"])
            for k, g in gens.items():
                g.set_state(state["generators"][k])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        why = (str(e).splitlines() or [""])[0]
        raise RunDirError(f"{where} does not fit this training loop ({type(e).__name__}: {why}); delete it or "
                          "use another --out to start over") from None
    if not ok:
        got = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise RunDirError(f"{where} was written by another experiment or version (keys {got}; this loop needs "
                          f"{list(STATE_KEYS)} with {want}); delete it or use another --out to start over")
    history.clear()
    history.update(state["history"])
    return int(state["step"])
