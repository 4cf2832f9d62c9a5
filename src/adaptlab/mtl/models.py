"""Moved to :mod:`adaptlab.models.mtl_lenet`; this old path only re-exports it."""

from adaptlab.models.mtl_lenet import lenet_blocks, lenet_head  # noqa: F401
