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

References:
    Finn, Abbeel, Levine. Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks. ICML 2017.
    Li, Zhou, Chen, Li. Meta-SGD: Learning to Learn Quickly for Few-Shot Learning. 2017.
    Raghu, Raghu, Bengio, Vinyals. Rapid Learning or Feature Reuse? (ANIL). ICLR 2020.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

Params = dict[str, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]
LR = float | Mapping[str, Tensor]

# ------------------------------------------------------------------------------------------- helpers


def split_params(params: Mapping[str, Tensor], adapt: Iterable[str] | None) -> tuple[Params, Params]:
    """Split ``params`` into (adapted, frozen) by name prefix; ``adapt=None`` adapts everything."""
    if adapt is None:
        return dict(params), {}
    prefixes = tuple(adapt)
    fast = {k: v for k, v in params.items() if k.startswith(prefixes)}
    if not fast:
        raise ValueError(f"adapt={list(prefixes)!r} matches no parameter; names are {list(params)}")
    return fast, {k: v for k, v in params.items() if k not in fast}


def per_task_buffers(buffers: Mapping[str, Tensor], tasks: int) -> Params:
    """One private copy of every buffer per task, stacked on a leading dim: ``(T, *shape)``."""
    return {k: v.unsqueeze(0).expand(tasks, *v.shape).clone() for k, v in buffers.items()}


def mean_buffers(buffers_t: Mapping[str, Tensor]) -> Params:
    """Task mean of per-task float buffers (running statistics); integer counters take task 0's value."""
    return {k: v.mean(0) if v.is_floating_point() else v[0] for k, v in buffers_t.items()}


def _step_size(lr: LR, name: str) -> Tensor | float:
    return lr[name] if isinstance(lr, Mapping) else lr


def _forward(model: nn.Module, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor],
             x: Tensor) -> Tensor:
    return functional_call(model, (dict(params), dict(buffers)), (x,))


# ------------------------------------------------------------------------------------------ functional core


def _task_loss(model: nn.Module, loss_fn: LossFn):
    """loss(fast, frozen, buffers, x, y) of one task; vmapped over tasks by the callers."""
    def loss(fast: Params, frozen: Params, bufs: Params, x: Tensor, y: Tensor) -> Tensor:
        return loss_fn(_forward(model, {**frozen, **fast}, bufs, x), y)
    return loss


def inner_loop(model: nn.Module, fast_t: Params, frozen: Params, buffers_t: Params, x_s: Tensor, y_s: Tensor,
               loss_fn: LossFn, steps: int, lr: LR, first_order: bool = False,
               chunk_size: int | None = None) -> Params:
    """K inner steps for T tasks at once: the one implementation every entry point below uses.

    The forward pass of all tasks is one ``vmap`` over the task dim; the tasks are independent, so the
    gradient of the *sum* of their support losses w.r.t. the per-task parameters ``(T, ...)`` is every
    task's own gradient, and one ``torch.autograd.grad`` call (``create_graph=True`` for second order) gives
    all of them. This is plain autograd on batched operations, faster on small models than nesting
    ``torch.func.grad`` inside ``vmap``.

    Args:
        fast_t: the parameters to adapt, per task: ``(T, *shape)`` (e.g. ``v.expand(T, *v.shape)``).
        frozen: parameters shared by all tasks and not adapted (ANIL's body); may be empty.
        buffers_t: per-task buffers ``(T, *shape)`` (:func:`per_task_buffers`).
        x_s, y_s: support sets ``(T, n, ...)``.
        Others as in :func:`inner_adapt`.

    Returns:
        The adapted per-task parameters ``(T, *shape)``.
    """
    if steps < 0:
        raise ValueError(f"steps={steps} is invalid; expected an integer >= 0")
    batched = vmap(_task_loss(model, loss_fn), in_dims=(0, None, 0, 0, 0), randomness="different",
                   chunk_size=chunk_size)
    held = {k: v.detach() for k, v in frozen.items()} if first_order else frozen
    with torch.enable_grad():  # adaptation needs gradients even when the caller evaluates under no_grad
        for _ in range(steps):
            # first order: the inner gradients are constants, taken at detached points (no graph kept)
            point = {k: v.detach().requires_grad_() if first_order or not v.requires_grad else v
                     for k, v in fast_t.items()}
            losses = batched(point, held, buffers_t, x_s, y_s)  # (T,)
            grads = torch.autograd.grad(losses.sum(), list(point.values()), create_graph=not first_order)
            fast_t = {k: v - _step_size(lr, k) * g for (k, v), g in zip(fast_t.items(), grads)}
    return fast_t


def _expand(params: Params, tasks: int) -> Params:
    return {k: v.unsqueeze(0).expand(tasks, *v.shape) for k, v in params.items()}


def inner_adapt(model: nn.Module, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor], x: Tensor,
                y: Tensor, loss_fn: LossFn, steps: int, lr: LR, first_order: bool = False,
                adapt: Iterable[str] | None = None) -> Params:
    """Adapt ``params`` to one task with ``steps`` gradient steps on its support loss.

    :math:`\\phi_{k+1} = \\phi_k - \\alpha \\odot \\nabla_\\phi\\, \\mathrm{loss\\_fn}(f_{\\phi_k}(x), y)`.

    Args:
        model: any module; only its forward is used, via ``functional_call(model, (params, buffers), x)``.
        params: the meta-parameters :math:`\\theta` by name (``dict(model.named_parameters())``).
        buffers: the module's buffers (``dict(model.named_buffers())``); batch-norm running statistics are
            updated in place.
        x, y: one task's support inputs ``(n, ...)`` and targets.
        loss_fn: ``loss_fn(prediction, y) -> scalar``, e.g. ``F.mse_loss`` or ``F.cross_entropy``.
        steps: K >= 0; ``steps=0`` returns the parameters unchanged.
        lr: inner step size, a float or a dict ``name -> tensor`` broadcastable to the parameter (Meta-SGD).
        first_order: treat the inner gradients as constants (FOMAML); no graph through the inner loop.
        adapt: name prefixes of the parameters to adapt (ANIL: the head); ``None`` adapts all.

    Returns:
        The adapted parameters, same names and shapes as ``params``; differentiable w.r.t. ``params`` and
        ``lr`` by ordinary autograd.

    Example::

        >>> net = torch.nn.Linear(2, 1)
        >>> p = dict(net.named_parameters())
        >>> x, y = torch.randn(8, 2), torch.randn(8, 1)
        >>> fast = inner_adapt(net, p, {}, x, y, torch.nn.functional.mse_loss, steps=3, lr=0.1)
        >>> sorted(fast)
        ['bias', 'weight']
    """
    fast, frozen = split_params(params, adapt)
    buffers_1 = {k: v.unsqueeze(0) for k, v in buffers.items()}  # views: running stats update in place
    fast_1 = inner_loop(model, _expand(fast, 1), frozen, buffers_1, x.unsqueeze(0), y.unsqueeze(0), loss_fn,
                        steps, lr, first_order)
    return {**frozen, **{k: v[0] for k, v in fast_1.items()}}


def maml_meta_loss(model: nn.Module, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor],
                   x_s: Tensor, y_s: Tensor, x_q: Tensor, y_q: Tensor, loss_fn: LossFn, steps: int, lr: LR,
                   first_order: bool = False, adapt: Iterable[str] | None = None,
                   chunk_size: int | None = None) -> tuple[Tensor, dict[str, Tensor | Params]]:
    """MAML meta-loss of a batch of T tasks, all inner loops at once (see :func:`inner_loop`).

    :math:`\\mathcal{L}(\\theta) = \\frac1T \\sum_t \\mathrm{loss\\_fn}(f_{\\phi^{(t)}_K}(x^q_t), y^q_t)` with
    :math:`\\phi^{(t)}_K` as in :func:`inner_adapt`. Call ``.backward()`` (or ``torch.autograd.grad``) on it
    for the second-order or, with ``first_order=True``, the first-order meta-gradient.

    Args:
        model, params, buffers, loss_fn, steps, lr, first_order, adapt: as in :func:`inner_adapt`.
        x_s, y_s: support sets stacked over tasks, ``(T, n_s, ...)``.
        x_q, y_q: query sets, ``(T, n_q, ...)``.
        chunk_size: passed to ``vmap`` to bound memory on very large task batches.

    Returns:
        ``(loss, aux)``: the scalar mean query loss and ``aux = {"task_losses": (T,), "buffers": dict}``
        where ``buffers`` holds the task-mean of the per-task updated buffers (batch-norm running stats).

    Example::

        >>> net = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
        >>> p, xs, xq = dict(net.named_parameters()), torch.randn(4, 5, 1), torch.randn(4, 7, 1)
        >>> loss, aux = maml_meta_loss(net, p, {}, xs, xs.sin(), xq, xq.sin(),
        ...                            torch.nn.functional.mse_loss, steps=2, lr=0.01)
        >>> loss.backward(); aux["task_losses"].shape
        torch.Size([4])
    """
    T = x_s.shape[0]
    fast, frozen = split_params(params, adapt)
    buffers_t = per_task_buffers(buffers, T)
    fast_t = inner_loop(model, _expand(fast, T), frozen, buffers_t, x_s, y_s, loss_fn, steps, lr, first_order,
                        chunk_size)
    losses = vmap(_task_loss(model, loss_fn), in_dims=(0, None, 0, 0, 0), randomness="different",
                  chunk_size=chunk_size)(fast_t, frozen, buffers_t, x_q, y_q)  # (T,)
    return losses.mean(), {"task_losses": losses, "buffers": mean_buffers(buffers_t)}


def adapt_tasks(model: nn.Module, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor], x_s: Tensor,
                y_s: Tensor, loss_fn: LossFn, steps: int, lr: LR, adapt: Iterable[str] | None = None,
                x_eval: Tensor | None = None, y_eval: Tensor | None = None,
                metric: LossFn | None = None) -> dict[str, Tensor]:
    """Test-time adaptation of T tasks (no meta-graph): predictions and losses after every inner step.

    Args:
        model, params, buffers, loss_fn, steps, lr, adapt: as in :func:`inner_adapt`.
        x_s, y_s: support sets ``(T, n_s, ...)``.
        x_eval: points to evaluate the adapted models on, ``(T, n_e, ...)``; default the support inputs.
        y_eval: targets there; when given, ``metric`` (default ``loss_fn``) is recorded after each step.

    Returns:
        ``{"pred": (T, steps + 1, n_e, ...)}`` predictions after 0..K steps, plus ``"loss": (T, steps + 1)``
        when ``y_eval`` is given.
    """
    T = x_s.shape[0]
    fast, frozen = split_params({k: v.detach() for k, v in params.items()}, adapt)
    x_eval = x_s if x_eval is None else x_eval
    metric = loss_fn if metric is None else metric
    lr = {k: v.detach() for k, v in lr.items()} if isinstance(lr, Mapping) else lr
    buffers_t = per_task_buffers(buffers, T)
    predict = vmap(lambda fp, fr, b, x: _forward(model, {**fr, **fp}, b, x), in_dims=(0, None, 0, 0),
                   randomness="different")
    fast_t = _expand(fast, T)
    preds = [predict(fast_t, frozen, buffers_t, x_eval)]
    for _ in range(steps):
        fast_t = inner_loop(model, fast_t, frozen, buffers_t, x_s, y_s, loss_fn, 1, lr, True)
        preds.append(predict(fast_t, frozen, buffers_t, x_eval))
    pred = torch.stack(preds, 1).detach()  # (T, K + 1, n_e, ...)
    out = {"pred": pred}
    if y_eval is not None:
        K1 = pred.shape[1]  # flatten (T, K + 1): nested vmap of F.mse_loss with in_dims=None fails
        target = y_eval.unsqueeze(1).expand(T, K1, *y_eval.shape[1:]).reshape(T * K1, *y_eval.shape[1:])
        out["loss"] = vmap(metric)(pred.reshape(T * K1, *pred.shape[2:]), target).reshape(T, K1)
    return out


# ------------------------------------------------------------------------------------------ object wrapper


class MAML:
    """A thin stateful wrapper: the module's own parameters are the meta-parameters.

    Args:
        model: any ``nn.Module``; its ``named_parameters()`` receive the meta-gradient.
        loss_fn: ``loss_fn(prediction, target) -> scalar``.
        inner_lr: inner step size :math:`\\alpha` (initial value when ``learn_lr``).
        steps: inner steps K during meta-training.
        first_order: FOMAML meta-gradient.
        learn_lr: Meta-SGD: learn one step size per parameter entry, initialized to ``inner_lr``.
        adapt: name prefixes to adapt in the inner loop (ANIL: e.g. ``["head."]``); ``None`` adapts all.

    Example::

        >>> net = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
        >>> maml = MAML(net, torch.nn.functional.mse_loss, inner_lr=0.01, steps=1)
        >>> opt = torch.optim.Adam(maml.parameters(), lr=1e-3)
        >>> xs, xq = torch.randn(4, 5, 1), torch.randn(4, 7, 1)
        >>> loss = maml.meta_loss(xs, xs.sin(), xq, xq.sin()); loss.backward(); opt.step()
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, inner_lr: float = 0.01, steps: int = 1,
                 first_order: bool = False, learn_lr: bool = False, adapt: Iterable[str] | None = None):
        self.model, self.loss_fn, self.steps, self.first_order = model, loss_fn, steps, first_order
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

    def meta_loss(self, x_s: Tensor, y_s: Tensor, x_q: Tensor, y_q: Tensor) -> Tensor:
        """The mean query loss over the task batch; batch-norm running stats are written back."""
        loss, aux = maml_meta_loss(self.model, self.params(), self.buffers(), x_s, y_s, x_q, y_q,
                                   self.loss_fn, self.steps, self.lr, self.first_order, self.adapt)
        with torch.no_grad():
            for name, value in aux["buffers"].items():
                self.model.get_buffer(name).copy_(value)
        return loss

    def adapt_tasks(self, x_s: Tensor, y_s: Tensor, steps: int | None = None, **kwargs) -> dict[str, Tensor]:
        """Test-time adaptation curves; see :func:`adapt_tasks`."""
        return adapt_tasks(self.model, self.params(), self.buffers(), x_s, y_s, self.loss_fn,
                           self.steps if steps is None else steps, self.lr, self.adapt, **kwargs)

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
