"""Animal-MNIST: 10,000 real animal silhouettes (28x28 grey, 1,000 per class) from the ``animal-mnist`` wheel.

The wheel (installed with ``pip install --no-deps animal-mnist==0.4``: its declared TensorFlow dependency is
unused) ships two gzipped pickles of numpy arrays, sorted by label. They are checked against the SHA-256 values
pinned below and read with the numpy-only unpickler of :mod:`adaptlab.data.mnist`, so a tampered file is refused
instead of executed. The package is located with :func:`importlib.util.find_spec` and never imported.

Example::

    >>> d = load_animal_mnist()
    >>> tuple(d.images.shape), d.images.dtype, d.classes[:3], int((d.labels == 9).sum())
    ((10000, 28, 28), torch.float32, ('bear', 'bird', 'cat'), 1000)

References:
    S. Mohammadi et al. Animal-MNIST (package ``animal-mnist``), 2025.
"""

from __future__ import annotations

import gzip
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch

from adaptlab.data._archive import sha256_file
from adaptlab.errors import DataError

ANIMAL_INSTALL = "pip install --no-deps animal-mnist==0.4"
ANIMAL_CLASSES = ("bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra")
ANIMAL_SHA256 = {
    "animal_data_version_3.gz": "68a30346781a0984f839463a4615d2decb899d1ce65091bb92586311754a34ce",
    "animal_label_version_3.gz": "dec8dba7c469830989fbab46825021a08a38470753a512f27ada847eced97b57",
}


@dataclass(frozen=True)
class AnimalMNIST:
    """``images`` (10000, 28, 28) float32 in [0, 1], ``labels`` (10000,) int64 and the 10 class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]


def animal_mnist_dir() -> Path:
    """The pickles' folder inside the installed wheel."""
    spec = importlib.util.find_spec("animal_mnist")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"Animal-MNIST needs the animal-mnist wheel; run: {ANIMAL_INSTALL}")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data" / "Animal_MNIST"
    missing = [n for n in ANIMAL_SHA256 if not (folder / n).is_file()]
    if missing:
        raise DataError(f"{folder} lacks {', '.join(missing)}; reinstall it: {ANIMAL_INSTALL}")
    return folder


def load_animal_mnist(verify: bool = True) -> AnimalMNIST:
    """The 10 classes, checked (pinned SHA-256) and unpickled safely."""
    import numpy as np

    from adaptlab.data.mnist import safe_unpickle

    folder = animal_mnist_dir()
    arrays = []
    for name, want in ANIMAL_SHA256.items():
        if verify and sha256_file(folder / name) != want:
            raise DataError(f"{folder / name} does not match its pinned SHA-256; reinstall: {ANIMAL_INSTALL}")
        with gzip.open(folder / name, "rb") as f:
            try:
                arrays.append(np.asarray(safe_unpickle(f)))
            except Exception as e:  # noqa: BLE001 - any unreadable pickle is one clear line
                raise DataError(f"{folder / name} is not a plain numpy pickle ({e}); reinstall: "
                                f"{ANIMAL_INSTALL}") from None
    images, labels = arrays
    if images.shape != (10000, 28, 28) or labels.shape != (10000,):
        raise DataError(f"Animal-MNIST arrays have shapes {images.shape}, {labels.shape}; expected (10000, 28, 28), "
                        f"(10000,): reinstall {ANIMAL_INSTALL}")
    return AnimalMNIST(torch.from_numpy(images.astype(np.float32) / 255.0), torch.from_numpy(labels.astype(np.int64)),
                       ANIMAL_CLASSES)
