"""Shared evaluation protocols: metric vs number of training points with percentile bands, CIs, the 20-run
one-shot protocol and episodic accuracy."""

from adaptlab._lazy import attach

__all__, __getattr__, __dir__ = attach(__name__, {
    "oneshot20": ["episode_accuracy", "ink_points", "mhd_cost", "modified_hausdorff", "oneshot20_error"],
    "shots": ["ShotsData", "band", "constant_curve", "eval_sizes", "make_shots_data", "mean_ci95", "mse_metric",
              "shots_curve", "sign_error_metric"],
})
