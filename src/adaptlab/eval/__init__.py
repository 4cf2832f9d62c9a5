"""Shared evaluation: accuracy (top-1, episodic), caption metrics
(exact match, slots, BLEU-4), counted FLOPs, statistics (mean ± 95% CI, percentile bands), the shots curve
and the 20-run one-shot protocol."""

from adaptlab._lazy import attach

__all__, __getattr__, __dir__ = attach(__name__, {
    "captions": ["bleu4", "exact_match", "slot_accuracy"],
    "chunks": ["bio_to_spans", "chunk_f1", "spans_to_bio"],
    "flops": ["count_flops"],
    "metrics": ["accuracy", "episode_accuracy"],
    "oneshot20": ["ink_points", "mhd_cost", "modified_hausdorff", "oneshot20_error"],
    "shots": ["ShotsData", "constant_curve", "eval_sizes", "make_shots_data", "mse_metric", "shots_curve",
              "sign_error_metric"],
    "stats": ["band", "mean_ci95", "mean_t_ci95"],
})
