"""Figures drawn from results dicts: ``fig = viz.pareto_figure(results)``, then ``adaptlab.io.save_figure``.

One module per experiment family (:mod:`~adaptlab.viz.adapt`, :mod:`~adaptlab.viz.fourier`,
:mod:`~adaptlab.viz.mtl`, :mod:`~adaptlab.viz.omniglot`, :mod:`~adaptlab.viz.simclr`,
:mod:`~adaptlab.viz.softprompt`, :mod:`~adaptlab.viz.vit`, :mod:`~adaptlab.viz.zeroshot`); every function takes
the results (plus, by name, what the results do not hold) and returns a matplotlib Figure. matplotlib is
imported only when a figure is drawn.
"""

from adaptlab._lazy import attach

__all__, __getattr__, __dir__ = attach(__name__, {
    "adapt": ["block_heatmap_figure", "data_curve_figure"],
    "fourier": ["curves_figure", "example_figure", "lr_comparison_figure", "weights_figure"],
    "mtl": ["cka_figure", "conflict_figure", "many_task_figure", "pareto_figure", "task_correlation_figure",
            "toy_figure"],
    "omniglot": ["episodic_figure", "error_vs_time_figure", "oneshot20_figure"],
    "simclr": ["simclr_accuracy_figure", "simclr_curve_figure"],
    "tagging": ["layer_supervision_figure"],
    "softprompt": ["cot_figure", "failure_figure", "hard_vs_soft_figure", "qa_curve_figure", "qa_finetune_figure",
                   "training_figure"],
    "vit": ["caption_attention_figure", "caption_training_figure", "vit_accuracy_figure", "vit_cost_figure"],
    "zeroshot": ["zsl_methods_figure"],
})
