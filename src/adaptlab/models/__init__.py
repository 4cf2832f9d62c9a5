"""Models: MLP, Conv4, LeNet-5, VGG-style and MNIST-1D CNNs."""

from adaptlab._lazy import attach

__all__, __getattr__, __dir__ = attach(__name__, {
    "cnn": ["LeNet5", "MNIST1DCNN", "SequentialCNN", "VGGNet", "build_model"],
    "conv4": ["Conv4", "conv_block"],
    "mlp": ["MLP"],
})
