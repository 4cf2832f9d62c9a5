"""Moved to :mod:`adaptlab.data.multimnist`; this old path only re-exports it."""

from adaptlab.data.multimnist import CANVAS, MEAN, OFFSET, STD, MultiMNIST, compose, make_multimnist, normalize  # noqa: F401
