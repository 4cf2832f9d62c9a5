"""Task distributions that sample whole batches of tasks as stacked tensors."""

from adaptlab._lazy import attach

__all__, __getattr__, __dir__ = attach(__name__, {
    "episodes": ["EpisodeSampler", "Episodes", "split_classes"],
    "fourier": ["FourierTasks", "TaskBatch", "fourier_features", "grid_points", "sample_x", "sign_labels",
                "validate_fourier"],
    "sinusoid": ["SinusoidBatch", "SinusoidTasks"],
})
