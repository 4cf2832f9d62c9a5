"""Models behind one registry: ``adaptlab.models.create(name, **kwargs)``; ``names()`` lists them."""

from adaptlab.models.cnn import MNIST1DCNN, LeNet5, VGGNet
from adaptlab.models.conv4 import Conv4
from adaptlab.models.mlp import MLP
from adaptlab.models.mtl_lenet import multimnist_cross_stitch, multimnist_lenet
from adaptlab.models.registry import ModelSpec, create, names, register, spec

__all__ = ["Conv4", "LeNet5", "MLP", "MNIST1DCNN", "ModelSpec", "VGGNet", "create", "multimnist_cross_stitch",
           "multimnist_lenet", "names", "register", "spec"]
