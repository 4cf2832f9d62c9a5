"""Compression for small devices: pruning (fine-grained, channel, sensitivity) and quantization (k-means,
linear, integer-only inference). Import the submodules: ``adaptlab.compress.prune``, ``.sensitivity``,
``.channel``, ``.kmeans``, ``.linear``, ``.integer``, ``.size``, ``.train``, ``.torch_ref``."""
