"""Classification accuracy: top-1 on a labelled set, and mean episodic accuracy with a 95% CI.

* :func:`accuracy` — the fraction (times ``scale``) of examples whose argmax logit is the label, in batches,
  with the model in eval mode; a model with several outputs (a dict of logits, or a multi-task network's
  ``(outputs, features)``) is scored per output.
* :func:`episode_accuracy` — the mean over sampled N-way K-shot episodes of each episode's query accuracy,
  with a normal-approximation 95% confidence interval ``1.96 * std / sqrt(n_episodes)``.

Example::

    >>> import torch
    >>> x = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]]); y = torch.tensor([0, 1, 1])
    >>> accuracy(lambda v: v, x, y)                    # the inputs are their own logits: 2 of 3 right
    0.6666666666666666
    >>> accuracy(lambda v: {"a": v, "b": -v}, x, {"a": y, "b": y}, scale=100.0)
    {'a': 66.66666666666667, 'b': 33.333333333333336}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from adaptlab.eval.stats import mean_ci95


@torch.no_grad()
def accuracy(fn: Callable, x: Tensor, y: Tensor | Mapping[str, Tensor], batch: int = 1000, scale: float = 1.0
             ) -> float | dict[str, float]:
    """Top-1 accuracy of ``fn`` on ``(x, y)``: ``scale * #{argmax fn(x_i) = y_i} / N``.

    Args:
        fn: ``x -> logits (B, C)``; or, with ``y`` a dict, ``x -> {name: logits}`` or a multi-task network's
            ``x -> ({name: logits}, features)`` (the convention of :mod:`adaptlab.mtl.architectures`). An
            ``nn.Module`` is put in eval mode for the evaluation and given back in the mode it was in.
        x: (N, ...) inputs. y: (N,) labels, or a dict name -> (N,) labels (one per output).
        batch: examples per forward pass.
        scale: 1 for a fraction in [0, 1], 100 for a percentage (applied to the integer count, so the value is
            exactly ``scale * correct / N``).

    Returns:
        A float, or with ``y`` a dict, a dict name -> float.
    """
    was_training = fn.training if isinstance(fn, nn.Module) else None
    if was_training is not None:
        fn.eval()
    try:
        correct = dict.fromkeys(y, 0) if isinstance(y, Mapping) else 0
        for i in range(0, len(x), batch):
            out = fn(x[i:i + batch])
            if isinstance(y, Mapping):
                logits = out[0] if isinstance(out, tuple) else out   # ({name: logits}, features) or {name: logits}
                if not isinstance(logits, Mapping):
                    raise TypeError(f"y is a dict of labels ({', '.join(map(str, y))}) but fn returned "
                                    f"{type(logits).__name__}; expected a dict name -> logits")
                for k in correct:
                    correct[k] += int((logits[k].argmax(dim=1) == y[k][i:i + batch]).sum())
            else:
                correct += int((out.argmax(dim=1) == y[i:i + batch]).sum())
    finally:
        if was_training is not None:
            fn.train(was_training)
    n = max(1, len(x))
    if isinstance(correct, dict):
        return {k: scale * c / n for k, c in correct.items()}
    return scale * correct / n


def episode_accuracy(predict: Callable, sampler, n_episodes: int, generator: torch.Generator,
                     batch: int = 50, device="cpu") -> dict:
    """Accuracy over ``n_episodes`` episodes from ``sampler`` with a 95% CI.

    Args:
        predict: ``predict(support_x, support_y, query_x, n_way) -> logits (B, nq, N)`` (or a dict of
            logits, one per method sharing the episodes; the result is then a dict too).
        sampler: an :class:`~adaptlab.tasks.episodes.EpisodeSampler` over held-out classes.
        n_episodes: number of episodes (>= 1000 for the reported numbers).
        generator: the episodes' random source.
        batch: episodes per call to ``predict``.

    Returns:
        ``{"accuracy": mean in [0, 1], "ci95": half-width, "episodes": n}``.
    """
    accs: dict[str, list[torch.Tensor]] = {}
    done = 0
    while done < n_episodes:
        b = min(batch, n_episodes - done)
        ep = sampler.sample(b, generator).to(device)
        out = predict(ep.support_x, ep.support_y, ep.query_x, ep.n_way)       # (b, nq, N) or a dict of them
        for key, logits in (out.items() if isinstance(out, dict) else [("", out)]):
            accs.setdefault(key, []).append((logits.argmax(-1) == ep.query_y).double().mean(-1).cpu())
        done += b
    res = {}
    for key, a in accs.items():
        mean, half = mean_ci95(torch.cat(a))
        res[key] = {"accuracy": mean, "ci95": half, "episodes": n_episodes}
    return res[""] if list(res) == [""] else res
