"""Task distributions that sample whole batches of tasks as one stacked :class:`SupportQuery` batch, all with
``sample(num_tasks, generator, ...)``."""

from adaptlab._lazy import attach

__all__, __getattr__, __dir__ = attach(__name__, {
    "batch": ["SupportQuery"],
    "episodes": ["EpisodeSampler", "Episodes", "split_classes"],
    "fourier": ["FourierBatch", "FourierTasks", "TaskBatch", "fourier_features", "grid_points", "sample_x",
                "sign_labels", "validate_fourier"],
    "sinusoid": ["SinusoidBatch", "SinusoidTasks"],
})
