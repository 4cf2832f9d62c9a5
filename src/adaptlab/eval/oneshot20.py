"""The original Omniglot one-shot benchmark (20 runs of 20-way 1-shot).

**The 20 runs** (Lake et al. 2015). Each run of ``all_runs.zip`` holds 20 training images (one per character
of an evaluation alphabet) and 20 test images (another drawer's version of each). A method gives a
``(20 test, 20 train)`` cost matrix; each test image is assigned the training image of least cost; a run's
error is the percentage of wrong assignments (truth from ``class_labels.txt``), and the benchmark error is the
mean over the 20 runs. Chance is 95% error.

The benchmark's own baseline is the **modified Hausdorff distance** (Dubuisson & Jain 1994) between the sets of
inked pixel coordinates of two binarised 105x105 images, each centred on its mean:

.. math::

    d(A, B) = \\max\\Big(\\frac{1}{|A|}\\sum_{a\\in A}\\min_{b\\in B}\\lVert a-b\\rVert,\\;
                          \\frac{1}{|B|}\\sum_{b\\in B}\\min_{a\\in A}\\lVert a-b\\rVert\\Big)

which gives 38.8% error (the published value): an end-to-end check of this evaluator.

Episodic N-way K-shot accuracy with a 95% CI is :func:`adaptlab.eval.metrics.episode_accuracy`.

Example::

    >>> res = oneshot20_error(mhd_cost)                    # the 20 runs from $ADAPTLAB_DATA/omniglot, ~8 s
    >>> round(res["error"], 1)
    38.8

References:
    B. M. Lake, R. Salakhutdinov, J. B. Tenenbaum. Human-level concept learning through probabilistic program
    induction. Science 350(6266), 2015.
    M.-P. Dubuisson, A. K. Jain. A modified Hausdorff distance for object matching. ICPR 1994.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from adaptlab.data.omniglot import NATIVE, load_runs, resize

Cost = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (train (20,S,S), test (20,S,S)) -> (20, 20)


def oneshot20_error(cost: Cost, size: int = NATIVE, root=None, runs=None) -> dict:
    """Error rate (%) of ``cost`` on the 20 runs.

    Args:
        cost: ``cost(train, test) -> (n_test, n_train)``; smaller means more similar (use a negated score).
            It may return a dict of such matrices (several rows at once); the result is then a dict too.
        size: image side passed to ``cost`` (105 native, 28 for the few-shot backbones).
        root: Omniglot folder (default ``$ADAPTLAB_DATA/omniglot``).
        runs: preloaded :class:`~adaptlab.data.omniglot.OneShotRun` list (native size) instead of loading.

    Returns:
        ``{"error": mean % error, "run_errors": [20 per-run % errors]}``.
    """
    runs = load_runs(NATIVE, root) if runs is None else runs
    errors: dict[str, list[float]] = {}
    for r in runs:
        costs = cost(resize(r.train, size), resize(r.test, size))       # (20 test, 20 train) or a dict of them
        for key, c in (costs.items() if isinstance(costs, dict) else [("", costs)]):
            errors.setdefault(key, []).append(100.0 * (c.argmin(dim=1).cpu() != r.answer).double().mean().item())
    out = {k: {"error": sum(e) / len(e), "run_errors": e} for k, e in errors.items()}
    return out[""] if list(out) == [""] else out


def ink_points(image: torch.Tensor) -> torch.Tensor:
    """(H, W) image -> (n, 2) float64 (row, col) coordinates of inked pixels (> 0.5), centred on their mean."""
    p = torch.nonzero(image > 0.5).double()
    return p - p.mean(0)


def modified_hausdorff(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Modified Hausdorff distance between point sets ``(n, 2)`` and ``(m, 2)`` (scalar)."""
    d = torch.cdist(a, b)                                                 # (n, m)
    return torch.maximum(d.min(dim=1).values.mean(), d.min(dim=0).values.mean())


def mhd_cost(train: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
    """``(n_test, n_train)`` modified Hausdorff distances between binarised images' ink point sets.

    A 105x105 character has ~1000 ink points, so all pairs of a run are ~4e8 distances. With SciPy
    installed, nearest neighbours come from one k-d tree per image (exact, ~50x faster); otherwise each pair
    goes through :func:`modified_hausdorff`.
    """
    tr = [ink_points(x) for x in train]
    te = [ink_points(x) for x in test]
    try:
        from scipy.spatial import cKDTree
    except ImportError:  # pragma: no cover - scipy is a dev dependency
        return torch.stack([torch.stack([modified_hausdorff(q, t) for t in tr]) for q in te])
    tr_np, te_np = [p.numpy() for p in tr], [p.numpy() for p in te]
    tr_trees, te_trees = [cKDTree(p) for p in tr_np], [cKDTree(p) for p in te_np]
    out = torch.empty(len(te), len(tr), dtype=torch.float64)
    for i, (q, q_tree) in enumerate(zip(te_np, te_trees)):
        for j, (t, t_tree) in enumerate(zip(tr_np, tr_trees)):
            out[i, j] = max(t_tree.query(q)[0].mean(), q_tree.query(t)[0].mean())
    return out
