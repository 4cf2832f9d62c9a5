"""Models behind one registry: ``adaptlab.models.create(name, **kwargs)``; ``names()`` lists them."""

from adaptlab._lazy import attach

__all__, __getattr__, __dir__ = attach(__name__, {
    "captioner": ["AlternatingLayer", "Captioner", "JointLayer", "captioner_alternating", "captioner_joint",
                  "joint_mask", "self_mask"],
    "cnn": ["LeNet5", "MNIST1DCNN", "SequentialCNN", "VGGNet"],
    "conv4": ["Conv4", "conv_block", "fold_chunk"],
    "fastops": ["batch_norm_train", "max_pool2"],
    "mlp": ["MLP"],
    "mtl_lenet": ["multimnist_cross_stitch", "multimnist_lenet"],
    "omniglot_mtl": ["omniglot_mtl_blocks", "omniglot_mtl_head"],
    "registry": ["ModelSpec", "create", "names", "register", "spec"],
    "resnet": ["BasicBlock", "CifarResNet", "resnet26", "resnet_small"],
    "vit": ["ViT", "check_grid", "conv_stem", "relative_index", "shift_window_mask", "sinusoidal_2d", "window_merge",
            "window_partition"],
})
