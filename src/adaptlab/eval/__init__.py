"""Shared evaluation: accuracy (top-1, episodic), statistics (mean ± 95% CI, percentile bands), the shots curve."""

from adaptlab.eval.accuracy import accuracy, episode_accuracy
from adaptlab.eval.shots import (
                                 ShotsData,
                                 constant_curve,
                                 eval_sizes,
                                 make_shots_data,
                                 mse_metric,
                                 shots_curve,
                                 sign_error_metric,
)
from adaptlab.eval.stats import band, mean_ci95

__all__ = ["ShotsData", "accuracy", "band", "constant_curve", "episode_accuracy", "eval_sizes", "make_shots_data",
           "mean_ci95", "mse_metric", "shots_curve", "sign_error_metric"]
