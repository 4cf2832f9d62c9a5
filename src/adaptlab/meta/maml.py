"""MAML over any ``nn.Module``: K differentiable inner gradient steps, vectorized across tasks with ``vmap``.

For a task with support set :math:`(x^s, y^s)` and query set :math:`(x^q, y^q)`, the inner loop starts from
the meta-parameters :math:`\\theta` and takes K gradient steps on the support loss

.. math::
    \\phi_0 = \\theta, \\qquad \\phi_{k+1} = \\phi_k - \\alpha \\odot \\nabla_\\phi L(\\phi_k; x^s, y^s),

and the meta-loss is the query loss of the adapted parameters, averaged over the T tasks of a meta-step,
:math:`\\mathcal{L}(\\theta) = \\frac1T \\sum_t L(\\phi_K^{(t)}; x^q_t, y^q_t)`. Its gradient is

* **second order** (exact): back-propagated through the K steps, Hessian-vector products included;
* **first order** (FOMAML): the inner gradients are treated as constants, so
  :math:`d\\phi_K/d\\theta = I` and the meta-gradient is
  :math:`\\frac1T\\sum_t \\nabla_\\phi L(\\phi_K^{(t)}; x^q_t)`.
  No graph is kept through the inner loop, so memory does not grow with K.

Variants: ``lr`` may be a dict of per-parameter tensors that are themselves learned (Meta-SGD), and
``adapt`` restricts the inner loop to parameters whose names start with the given prefixes (ANIL adapts
the head only; the body still gets the outer gradient).

Everything is a pure function of a parameter dict through ``torch.func.functional_call``; the model is only
used for its forward code, never mutated. The T inner loops of a meta-step run together (:func:`inner_loop`):
one ``vmap``-ed forward over the task dim with per-task parameter copies ``(T, ...)``, and one
``torch.autograd.grad`` of the summed support losses, which (the tasks being independent) is every task's own
gradient. Because of that ``autograd.grad`` call these functions are not meant to be wrapped in a further
``vmap``; batch the tasks on the leading dim instead.

Batch norm: under ``vmap`` each task gets its own copy of the buffers, so in training mode every task
normalizes with its own batch statistics (transductive, as in the reference MAML code) and updates its own
running statistics; :func:`maml_meta_loss` returns their task mean, which :class:`MAML` writes back into the
module. (Nesting ``torch.func.grad`` inside ``vmap`` instead gives wrong second derivatives through the
batch-norm kernel in torch 2.13; the formulation here passes ``gradcheck``, see tests/test_maml.py.)

The model enters only through ``forward(params, buffers, inputs)``; the default is
``functional_call(model, (params, buffers), (inputs,))``, and ``inputs`` may also be a dict of keyword tensors
(``{"input_ids": ..., "attention_mask": ...}``), passed to the model as keywords. Models that do not ``vmap``
(a HuggingFace causal LM, anything with data-dependent control flow) take the per-task path,
``vectorize=False``: a Python loop over the tasks with one ``torch.autograd.grad`` per task and step. A module
may also define ``forward_tasks(params_t, buffers_t, x_t) -> (T, n, ...)``, all T tasks in one hand-batched pass
with per-task parameters ``(T, *shape)`` (:meth:`adaptlab.models.conv4.Conv4.forward_tasks` folds the tasks into
the channels of grouped convolutions); that is the ``"folded"`` path. The default ``vectorize="auto"`` picks
the path by a fixed rule (:func:`choose_path`), never by timing, so a seeded run gives the same numbers every
time. All paths give the same meta-gradient (tests/test_maml.py).

Every loss here has the shape of every method in :mod:`adaptlab.meta`: ``loss(params, buffers, batch) ->
(loss, aux)`` with the model and the settings keyword-only, ``batch`` a
:class:`~adaptlab.tasks.batch.SupportQuery`; :meth:`MAML.functional` returns it with those bound.

References:
    Finn, Abbeel, Levine. Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks. ICML 2017.
    Li, Zhou, Chen, Li. Meta-SGD: Learning to Learn Quickly for Few-Shot Learning. 2017.
    Raghu, Raghu, Bengio, Vinyals. Rapid Learning or Feature Reuse? (ANIL). ICLR 2020.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from adaptlab.tasks.batch import Inputs, SupportQuery, map_inputs

Params = dict[str, Tensor]
LossFn = Callable[[Any, Tensor], Tensor]
LR = float | Mapping[str, Tensor]
# forward(params, buffers, inputs) -> prediction, for one task's inputs (a tensor or a dict of keyword tensors)
Forward = Callable[[Params, Params, Inputs], Any]
# forward_tasks(params_t, buffers_t, inputs_t) -> (T, n, ...), every tensor with a leading task dim
TasksForward = Callable[[Params, Params, Tensor], Tensor]
Vectorize = bool | str
PATHS = ("auto", "folded", True, False)
MetaLoss = Callable[[Mapping[str, Tensor], Mapping[str, Tensor], SupportQuery], tuple[Tensor, dict]]

# ------------------------------------------------------------------------------------------- helpers


def split_params(params: Mapping[str, Tensor], adapt: Iterable[str] | None) -> tuple[Params, Params]:
    """Split ``params`` into (adapted, frozen) by name prefix or glob (:mod:`adaptlab.params`); ``adapt=None``
    adapts everything. A pattern that matches no parameter is an error naming the parameters."""
    from adaptlab.params import split

    return split(params, None if adapt is None else tuple(adapt))


def per_task_buffers(buffers: Mapping[str, Tensor], tasks: int) -> Params:
    """One private copy of every buffer per task, stacked on a leading dim: ``(T, *shape)``."""
    return {k: v.unsqueeze(0).expand(tasks, *v.shape).clone() for k, v in buffers.items()}


def mean_buffers(buffers_t: Mapping[str, Tensor]) -> Params:
    """Task mean of per-task float buffers (running statistics); integer counters take task 0's value."""
    return {k: v.mean(0) if v.is_floating_point() else v[0] for k, v in buffers_t.items()}


def module_forward(model: nn.Module) -> Forward:
    """The default ``forward``: ``functional_call(model, (params, buffers), (x,))``; a dict goes in as keywords."""
    def forward(params: Params, buffers: Params, inputs: Inputs):
        if isinstance(inputs, Mapping):
            return functional_call(model, (dict(params), dict(buffers)), (), dict(inputs))
        return functional_call(model, (dict(params), dict(buffers)), (inputs,))
    return forward


def _resolve_forward(model: nn.Module | None, forward: Forward | None) -> Forward:
    if forward is not None:
        return forward
    if model is None:
        raise ValueError("model=None and forward=None is invalid; expected an nn.Module (its forward is used) "
                         "or forward(params, buffers, inputs)")
    return module_forward(model)


def _step_size(lr: LR, name: str) -> Tensor | float:
    return lr[name] if isinstance(lr, Mapping) else lr


def _expand(params: Params, tasks: int) -> Params:
    return {k: v.unsqueeze(0).expand(tasks, *v.shape) for k, v in params.items()}


def _task(x: Inputs, t: int) -> Inputs:
    return map_inputs(x, lambda v: v[t])


def choose_path(model: nn.Module | None, forward: Forward | None, inputs: Inputs,
                vectorize: Vectorize = "auto") -> str:
    """Which implementation runs the T inner loops: ``"folded"``, ``"vmap"`` or ``"loop"``.

    ``vectorize=True`` is ``"vmap"``, ``False`` is ``"loop"``, ``"folded"`` demands the model's
    ``forward_tasks``. ``"auto"`` is a fixed rule from ``benchmarks/bench_omniglot.py`` (docs/omniglot.md),
    deterministic so that seeded runs repeat exactly:

    1. the model's own ``forward_tasks`` (no user ``forward``, tensor inputs): ``"folded"``;
    2. else a model with convolutions on CPU: ``"loop"`` (``vmap`` turns per-task kernels into grouped
       convolutions with permuted batch-norm and pooling tensors, slower than the loop on Conv4);
    3. else ``"vmap"`` (MLPs: 7-12x faster than a per-task loop, docs/maml.md).

    Example::

        >>> from adaptlab.models.conv4 import Conv4
        >>> x = torch.zeros(2, 3, 1, 28, 28)
        >>> choose_path(Conv4(n_classes=3), None, x), choose_path(torch.nn.Linear(1, 1), None, x)
        ('folded', 'vmap')
    """
    if vectorize not in PATHS:
        raise ValueError(f"vectorize={vectorize!r} is invalid; expected one of {PATHS} "
                         "(True: vmap over tasks, False: a per-task loop)")
    if vectorize is True or vectorize is False:
        return "vmap" if vectorize else "loop"
    native = (forward is None and model is not None and isinstance(inputs, Tensor)
              and callable(getattr(model, "forward_tasks", None)))
    if vectorize == "folded":
        if not native:
            raise ValueError("vectorize='folded' needs a model with forward_tasks(params_t, buffers_t, x_t), no "
                             "user forward and tensor inputs; expected vectorize='auto', True or False otherwise")
        return "folded"
    if native:
        return "folded"
    first = inputs if isinstance(inputs, Tensor) else next(iter(inputs.values()))
    convs = model is not None and any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())
    return "loop" if convs and first.device.type == "cpu" else "vmap"


# ------------------------------------------------------------------------------------------ functional core


def _task_loss(forward: Forward, loss_fn: LossFn):
    """loss(fast, frozen, buffers, x, y) of one task; vmapped over tasks by the vectorized callers."""
    def loss(fast: Params, frozen: Params, bufs: Params, x: Inputs, y: Tensor) -> Tensor:
        return loss_fn(forward({**frozen, **fast}, bufs, x), y)
    return loss


def _tasks_loss(forward: Forward, loss_fn: LossFn, tasks_forward: TasksForward | None, chunk_size: int | None):
    """losses(fast_t, frozen, buffers_t, x_t, y_t) -> (T,): vmapped, or through a hand-batched forward_tasks."""
    if tasks_forward is None:
        return vmap(_task_loss(forward, loss_fn), in_dims=(0, None, 0, 0, 0), randomness="different",
                    chunk_size=chunk_size)

    def losses(fast_t: Params, frozen: Params, buffers_t: Params, x: Tensor, y: Tensor) -> Tensor:
        pred = tasks_forward({**_expand(frozen, y.shape[0]), **fast_t}, buffers_t, x)  # (T, n, ...)
        return vmap(loss_fn)(pred, y)  # (T,)
    return losses


def _sgd_steps(fast: Params, loss_at: Callable[[Params], Tensor], steps: int, lr: LR, first_order: bool) -> Params:
    """The inner update rule, shared by both paths: ``steps`` times phi <- phi - lr * d loss_at(phi) / d phi."""
    if steps < 0:
        raise ValueError(f"steps={steps} is invalid; expected an integer >= 0")
    with torch.enable_grad():  # adaptation needs gradients even when the caller evaluates under no_grad
        for _ in range(steps):
            # first order: the inner gradients are constants, taken at detached points (no graph kept)
            point = {k: v.detach().requires_grad_() if first_order or not v.requires_grad else v
                     for k, v in fast.items()}
            grads = torch.autograd.grad(loss_at(point), list(point.values()), create_graph=not first_order)
            fast = {k: v - _step_size(lr, k) * g for (k, v), g in zip(fast.items(), grads)}
    return fast


def inner_loop(fast_t: Params, frozen: Params, buffers_t: Params, x_s: Inputs, y_s: Tensor, *, forward: Forward,
               loss_fn: LossFn, steps: int, lr: LR, first_order: bool = False,
               chunk_size: int | None = None, tasks_forward: TasksForward | None = None) -> Params:
    """K inner steps for T tasks at once (the vectorized path).

    The forward pass of all tasks is one ``vmap`` over the task dim; the tasks are independent, so the
    gradient of the *sum* of their support losses w.r.t. the per-task parameters ``(T, ...)`` is every
    task's own gradient, and one ``torch.autograd.grad`` call (``create_graph=True`` for second order) gives
    all of them. This is plain autograd on batched operations, faster on small models than nesting
    ``torch.func.grad`` inside ``vmap``.

    Args:
        fast_t: the parameters to adapt, per task: ``(T, *shape)`` (e.g. ``v.expand(T, *v.shape)``).
        frozen: parameters shared by all tasks and not adapted (ANIL's body); may be empty.
        buffers_t: per-task buffers ``(T, *shape)`` (:func:`per_task_buffers`).
        x_s, y_s: support sets ``(T, n, ...)`` (``x_s`` may be a dict of such tensors).
        tasks_forward: a hand-batched ``forward_tasks(params_t, buffers_t, x_s) -> (T, n, ...)`` used instead of
            ``vmap`` over ``forward`` (the ``"folded"`` path).
        Others as in :func:`inner_adapt`.

    Returns:
        The adapted per-task parameters ``(T, *shape)``.
    """
    batched = _tasks_loss(forward, loss_fn, tasks_forward, chunk_size)
    held = {k: v.detach() for k, v in frozen.items()} if first_order else frozen
    return _sgd_steps(fast_t, lambda p: batched(p, held, buffers_t, x_s, y_s).sum(), steps, lr,  # (T,) summed
                      first_order)


def _adapt_one(fast: Params, frozen: Params, bufs: Params, x: Inputs, y: Tensor, forward: Forward,
               loss_fn: LossFn, steps: int, lr: LR, first_order: bool) -> Params:
    """K inner steps of one task (the per-task path); ``bufs`` (running statistics) are updated in place."""
    held = {k: v.detach() for k, v in frozen.items()} if first_order else frozen
    loss = _task_loss(forward, loss_fn)
    return _sgd_steps(fast, lambda p: loss(p, held, bufs, x, y), steps, lr, first_order)


def inner_adapt(params: Mapping[str, Tensor], buffers: Mapping[str, Tensor], x: Inputs, y: Tensor, *,
                loss_fn: LossFn, steps: int, lr: LR, model: nn.Module | None = None, forward: Forward | None = None,
                first_order: bool = False, adapt: Iterable[str] | None = None) -> Params:
    """Adapt ``params`` to one task with ``steps`` gradient steps on its support loss.

    :math:`\\phi_{k+1} = \\phi_k - \\alpha \\odot \\nabla_\\phi\\, \\mathrm{loss\\_fn}(f_{\\phi_k}(x), y)`.

    Args:
        params: the meta-parameters :math:`\\theta` by name (``dict(model.named_parameters())``).
        buffers: the module's buffers (``dict(model.named_buffers())``); batch-norm running statistics are
            updated in place.
        x, y: one task's support inputs ``(n, ...)`` (or a dict of keyword tensors) and targets.
        loss_fn: ``loss_fn(prediction, y) -> scalar``, e.g. ``F.mse_loss`` or ``F.cross_entropy``.
        steps: K >= 0; ``steps=0`` returns the parameters unchanged.
        lr: inner step size, a float or a dict ``name -> tensor`` broadcastable to the parameter (Meta-SGD).
        model: any module; with the default ``forward`` only its forward code is used, via
            ``functional_call(model, (params, buffers), (x,))`` (a dict ``x`` is passed as keywords).
        forward: ``forward(params, buffers, inputs) -> prediction`` instead of the model's own forward.
        first_order: treat the inner gradients as constants (FOMAML); no graph through the inner loop.
        adapt: name prefixes of the parameters to adapt (ANIL: the head); ``None`` adapts all.

    Returns:
        The adapted parameters, same names and shapes as ``params``; differentiable w.r.t. ``params`` and
        ``lr`` by ordinary autograd.

    Example::

        >>> net = torch.nn.Linear(2, 1)
        >>> p = dict(net.named_parameters())
        >>> x, y = torch.randn(8, 2), torch.randn(8, 1)
        >>> fast = inner_adapt(p, {}, x, y, model=net, loss_fn=torch.nn.functional.mse_loss, steps=3, lr=0.1)
        >>> sorted(fast)
        ['bias', 'weight']
    """
    fast, frozen = split_params(params, adapt)
    fast = _adapt_one(fast, frozen, dict(buffers), x, y, _resolve_forward(model, forward), loss_fn, steps, lr,
                      first_order)
    return {**frozen, **fast}


def maml_meta_loss(params: Mapping[str, Tensor], buffers: Mapping[str, Tensor], batch: SupportQuery, *,
                   loss_fn: LossFn, steps: int, lr: LR, model: nn.Module | None = None,
                   forward: Forward | None = None, first_order: bool = False, adapt: Iterable[str] | None = None,
                   vectorize: Vectorize = "auto", chunk_size: int | None = None) -> tuple[Tensor, dict[str, Any]]:
    """MAML meta-loss of a batch of T tasks.

    :math:`\\mathcal{L}(\\theta) = \\frac1T \\sum_t \\mathrm{loss\\_fn}(f_{\\phi^{(t)}_K}(x^q_t), y^q_t)` with
    :math:`\\phi^{(t)}_K` as in :func:`inner_adapt`. Call ``.backward()`` (or ``torch.autograd.grad``) on it
    for the second-order or, with ``first_order=True``, the first-order meta-gradient.

    Args:
        params, buffers: the meta-parameters and the module's buffers, by name.
        batch: a :class:`~adaptlab.tasks.batch.SupportQuery`: ``support_x, support_y`` ``(T, n_s, ...)`` and
            ``query_x, query_y`` ``(T, n_q, ...)``; inputs may be dicts of keyword tensors.
        loss_fn, steps, lr, model, forward, first_order, adapt: as in :func:`inner_adapt`.
        vectorize: ``True``: all T inner loops at once (:func:`inner_loop`, one ``vmap`` over tasks);
            ``False``: a Python loop over the tasks, for models that do not ``vmap``; ``"folded"``: the
            model's hand-batched ``forward_tasks``; ``"auto"`` (default): :func:`choose_path`. Same
            meta-gradient on every path.
        chunk_size: passed to ``vmap`` to bound memory on very large task batches (vectorized path only).

    Returns:
        ``(loss, aux)``: the scalar mean query loss and ``aux = {"task_losses": (T,), "buffers": dict}``
        where ``buffers`` holds the task-mean of the per-task updated buffers (batch-norm running stats).

    Example::

        >>> from adaptlab.tasks.batch import SupportQuery
        >>> net = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
        >>> p, xs, xq = dict(net.named_parameters()), torch.randn(4, 5, 1), torch.randn(4, 7, 1)
        >>> batch = SupportQuery(xs, xs.sin(), xq, xq.sin())
        >>> loss, aux = maml_meta_loss(p, {}, batch, model=net, loss_fn=torch.nn.functional.mse_loss, steps=2,
        ...                            lr=0.01)
        >>> loss.backward(); aux["task_losses"].shape
        torch.Size([4])
    """
    path = choose_path(model, forward, batch.support_x, vectorize)
    forward = _resolve_forward(model, forward)
    T = batch.support_y.shape[0]
    fast, frozen = split_params(params, adapt)
    task_loss = _task_loss(forward, loss_fn)
    if path != "loop":
        tasks_forward = model.forward_tasks if path == "folded" else None
        buffers_t = per_task_buffers(buffers, T)
        fast_t = inner_loop(_expand(fast, T), frozen, buffers_t, batch.support_x, batch.support_y,
                            forward=forward, loss_fn=loss_fn, steps=steps, lr=lr, first_order=first_order,
                            chunk_size=chunk_size, tasks_forward=tasks_forward)
        losses = _tasks_loss(forward, loss_fn, tasks_forward, chunk_size)(
            fast_t, frozen, buffers_t, batch.query_x, batch.query_y)  # (T,)
        return losses.mean(), {"task_losses": losses, "buffers": mean_buffers(buffers_t)}
    per_task, task_buffers = [], []
    for t in range(T):
        bufs = {k: v.clone() for k, v in buffers.items()}  # the task's private running statistics
        fast_t = _adapt_one(fast, frozen, bufs, _task(batch.support_x, t), batch.support_y[t], forward, loss_fn,
                            steps, lr, first_order)
        per_task.append(task_loss(fast_t, frozen, bufs, _task(batch.query_x, t), batch.query_y[t]))
        task_buffers.append(bufs)
    losses = torch.stack(per_task)  # (T,)
    stacked = {k: torch.stack([b[k] for b in task_buffers]) for k in buffers}
    return losses.mean(), {"task_losses": losses, "buffers": mean_buffers(stacked)}


def adapt_tasks(params: Mapping[str, Tensor], buffers: Mapping[str, Tensor], support_x: Inputs,
                support_y: Tensor, *, loss_fn: LossFn, steps: int, lr: LR, model: nn.Module | None = None,
                forward: Forward | None = None, adapt: Iterable[str] | None = None, x_eval: Inputs | None = None,
                y_eval: Tensor | None = None, metric: LossFn | None = None,
                vectorize: Vectorize = "auto") -> dict[str, Tensor]:
    """Test-time adaptation of T tasks (no meta-graph): predictions and losses after every inner step.

    Args:
        params, buffers, loss_fn, steps, lr, model, forward, adapt: as in :func:`inner_adapt`.
        support_x, support_y: support sets ``(T, n_s, ...)``.
        x_eval: points to evaluate the adapted models on, ``(T, n_e, ...)``; default the support inputs.
        y_eval: targets there; when given, ``metric`` (default ``loss_fn``) is recorded after each step.
        vectorize: as in :func:`maml_meta_loss` (default ``"auto"``, :func:`choose_path`).

    Returns:
        A dict ``{"pred": (T, steps + 1, n_e, ...)}`` of the predictions after 0..K steps, plus
        ``"loss": (T, steps + 1)`` when ``y_eval`` is given.

    Example::

        >>> net = torch.nn.Linear(1, 1)
        >>> xs, xe = torch.randn(3, 5, 1), torch.randn(3, 4, 1)
        >>> out = adapt_tasks(dict(net.named_parameters()), {}, xs, 2 * xs, model=net, steps=10, lr=0.1,
        ...                   loss_fn=torch.nn.functional.mse_loss, x_eval=xe, y_eval=2 * xe)
        >>> out["pred"].shape, out["loss"].shape
        (torch.Size([3, 11, 4, 1]), torch.Size([3, 11]))
    """
    path = choose_path(model, forward, support_x, vectorize)
    forward = _resolve_forward(model, forward)
    T = support_y.shape[0]
    fast, frozen = split_params({k: v.detach() for k, v in params.items()}, adapt)
    x_eval = support_x if x_eval is None else x_eval
    metric = loss_fn if metric is None else metric
    lr = {k: v.detach() for k, v in lr.items()} if isinstance(lr, Mapping) else lr
    vectorize = path != "loop"
    if vectorize:
        tasks_forward = model.forward_tasks if path == "folded" else None
        buffers_t = per_task_buffers(buffers, T)
        if tasks_forward is None:
            predict = vmap(lambda fp, fr, b, x: forward({**fr, **fp}, b, x), in_dims=(0, None, 0, 0),
                           randomness="different")
        else:
            def predict(fp, fr, b, x):
                return tasks_forward({**_expand(fr, T), **fp}, b, x)
        fast_t = _expand(fast, T)
        preds = [predict(fast_t, frozen, buffers_t, x_eval)]
        for _ in range(steps):
            fast_t = inner_loop(fast_t, frozen, buffers_t, support_x, support_y, forward=forward, loss_fn=loss_fn,
                                steps=1, lr=lr, first_order=True, tasks_forward=tasks_forward)
            preds.append(predict(fast_t, frozen, buffers_t, x_eval))
        pred = torch.stack(preds, 1).detach()  # (T, K + 1, n_e, ...)
    else:
        rows = []
        for t in range(T):
            bufs, fast_t, x_t = {k: v.clone() for k, v in buffers.items()}, fast, _task(x_eval, t)
            preds = [forward({**frozen, **fast_t}, bufs, x_t)]
            for _ in range(steps):
                fast_t = _adapt_one(fast_t, frozen, bufs, _task(support_x, t), support_y[t], forward, loss_fn, 1,
                                    lr, True)
                preds.append(forward({**frozen, **fast_t}, bufs, x_t))
            rows.append(torch.stack(preds).detach())  # (K + 1, n_e, ...)
        pred = torch.stack(rows)  # (T, K + 1, n_e, ...)
    out = {"pred": pred}
    if y_eval is not None:
        K1 = pred.shape[1]
        if vectorize:  # flatten (T, K + 1): nested vmap of F.mse_loss with in_dims=None fails
            target = y_eval.unsqueeze(1).expand(T, K1, *y_eval.shape[1:]).reshape(T * K1, *y_eval.shape[1:])
            out["loss"] = vmap(metric)(pred.reshape(T * K1, *pred.shape[2:]), target).reshape(T, K1)
        else:
            out["loss"] = torch.stack([torch.stack([metric(pred[t, k], y_eval[t]) for k in range(K1)])
                                       for t in range(T)])  # (T, K + 1)
    return out


# ------------------------------------------------------------------------------------------ object wrapper


class MAML:
    """A thin stateful wrapper: the module's own parameters are the meta-parameters.

    It never owns the outer optimizer: pass :meth:`parameters` to one.

    Args:
        model: any ``nn.Module``; its ``named_parameters()`` receive the meta-gradient.
        loss_fn: ``loss_fn(prediction, target) -> scalar``.
        inner_lr: inner step size :math:`\\alpha` (initial value when ``learn_lr``).
        steps: inner steps K during meta-training.
        first_order: FOMAML meta-gradient.
        learn_lr: Meta-SGD: learn one step size per parameter entry, initialized to ``inner_lr``.
        adapt: name prefixes to adapt in the inner loop (ANIL: e.g. ``["head."]``); ``None`` adapts all.
        forward: ``forward(params, buffers, inputs) -> prediction``; default the model's own forward.
        vectorize: ``"auto"`` (default, :func:`choose_path`), ``True`` (vmap), ``False`` (a per-task loop, for
            models that do not ``vmap``) or ``"folded"``; see :func:`maml_meta_loss`.
        chunk_size: ``vmap`` chunk size of the vectorized path.

    Example::

        >>> from adaptlab.tasks.sinusoid import SinusoidTasks
        >>> net = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
        >>> maml = MAML(net, torch.nn.functional.mse_loss, inner_lr=0.01, steps=1)
        >>> opt = torch.optim.Adam(maml.parameters(), lr=1e-3)
        >>> batch = SinusoidTasks(n_support=5, n_query=7).sample(4, torch.Generator().manual_seed(0))
        >>> loss, aux = maml.loss(batch); loss.backward(); opt.step()
        >>> loss_same, _ = maml.functional()(maml.params(), maml.buffers(), batch)  # the pure core, bound
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, inner_lr: float = 0.01, steps: int = 1,
                 first_order: bool = False, learn_lr: bool = False, adapt: Iterable[str] | None = None, *,
                 forward: Forward | None = None, vectorize: Vectorize = "auto", chunk_size: int | None = None):
        self.model, self.loss_fn, self.steps, self.first_order = model, loss_fn, steps, first_order
        self.forward, self.vectorize, self.chunk_size = forward, vectorize, chunk_size
        self.adapt = None if adapt is None else list(adapt)
        fast, _ = split_params(dict(model.named_parameters()), self.adapt)
        self.lr: LR = ({k: torch.full_like(v, inner_lr).requires_grad_() for k, v in fast.items()}
                       if learn_lr else float(inner_lr))

    def params(self) -> Params:
        return dict(self.model.named_parameters())

    def buffers(self) -> Params:
        return dict(self.model.named_buffers())

    def parameters(self) -> list[Tensor]:
        """Everything the outer optimizer updates: the model parameters and, for Meta-SGD, the step sizes."""
        extra = list(self.lr.values()) if isinstance(self.lr, Mapping) else []
        return list(self.model.parameters()) + extra

    def functional(self) -> MetaLoss:
        """The pure core ``loss(params, buffers, batch) -> (loss, aux)`` with the model and settings bound."""
        return functools.partial(maml_meta_loss, model=self.model, forward=self.forward, loss_fn=self.loss_fn,
                                 steps=self.steps, lr=self.lr, first_order=self.first_order, adapt=self.adapt,
                                 vectorize=self.vectorize, chunk_size=self.chunk_size)

    def path(self, inputs: Inputs) -> str:
        """The implementation :meth:`loss` runs for these inputs: ``"folded"``, ``"vmap"`` or ``"loop"``."""
        return choose_path(self.model, self.forward, inputs, self.vectorize)

    def loss(self, batch: SupportQuery) -> tuple[Tensor, dict[str, Any]]:
        """``(loss, aux)`` of the current parameters on ``batch``; batch-norm running stats are written back."""
        loss, aux = self.functional()(self.params(), self.buffers(), batch)
        with torch.no_grad():
            for name, value in aux["buffers"].items():
                self.model.get_buffer(name).copy_(value)
        return loss, aux

    def meta_loss(self, x_s: Inputs, y_s: Tensor, x_q: Inputs, y_q: Tensor) -> Tensor:
        """The mean query loss over the task batch: ``loss(SupportQuery(x_s, y_s, x_q, y_q))[0]``."""
        return self.loss(SupportQuery(x_s, y_s, x_q, y_q))[0]

    def adapt_tasks(self, x_s: Inputs, y_s: Tensor, steps: int | None = None, **kwargs) -> dict[str, Tensor]:
        """Test-time adaptation curves; see :func:`adapt_tasks`."""
        return adapt_tasks(self.params(), self.buffers(), x_s, y_s, model=self.model, forward=self.forward,
                           loss_fn=self.loss_fn, steps=self.steps if steps is None else steps, lr=self.lr,
                           adapt=self.adapt, vectorize=self.vectorize, **kwargs)

    def state_dict(self) -> dict:
        lr = {k: v.detach().clone() for k, v in self.lr.items()} if isinstance(self.lr, Mapping) else self.lr
        return {"model": self.model.state_dict(), "lr": lr}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        if isinstance(self.lr, Mapping):
            with torch.no_grad():
                for k, v in state["lr"].items():
                    self.lr[k].copy_(v)
        else:
            self.lr = float(state["lr"])
