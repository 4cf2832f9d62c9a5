"""Shared evaluation protocols: metric vs number of training points with percentile bands, CIs."""

from adaptlab.eval.shots import (
                                 ShotsData,
                                 band,
                                 constant_curve,
                                 eval_sizes,
                                 make_shots_data,
                                 mean_ci95,
                                 mse_metric,
                                 shots_curve,
                                 sign_error_metric,
)

__all__ = ["ShotsData", "band", "constant_curve", "eval_sizes", "make_shots_data", "mean_ci95", "mse_metric",
           "shots_curve", "sign_error_metric"]
