"""Datasets: MNIST, MNIST-1D, MultiMNIST and Omniglot, each checked (pinned SHA-256 or structure) before use."""

from adaptlab.data.mnist import MNIST, load_mnist
from adaptlab.data.mnist1d import MNIST1D, load_mnist1d
from adaptlab.data.multimnist import MultiMNIST, make_multimnist
from adaptlab.data.omniglot import CharacterSet, OneShotRun, load_characters, load_omniglot, load_runs

__all__ = [
    "CharacterSet", "MNIST", "MNIST1D", "MultiMNIST", "OneShotRun", "load_characters", "load_mnist", "load_mnist1d",
    "load_omniglot", "load_runs", "make_multimnist",
]
