"""Datasets, read from local copies (installed packages, ``$ADAPTLAB_DATA``) with clear errors when missing."""

from adaptlab._lazy import attach

__all__, __getattr__, __dir__ = attach(__name__, {
    "_archive": ["download", "safe_extract_zip", "sha256_file", "verify_sha256"],
    "mnist": ["MNIST", "load_mnist"],
    "mnist1d": ["MNIST1D", "load_mnist1d"],
    "omniglot": ["CharacterSet", "OneShotRun", "load_characters", "load_runs", "omniglot_dir"],
})
