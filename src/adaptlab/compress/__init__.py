"""Compression for small devices: pruning (fine-grained, channel, sensitivity) and quantization (k-means,
linear, integer-only inference on exact reference kernels or PyTorch's quantized kernels).

>>> import torch, adaptlab as al
>>> al.compress.sparsity_of(torch.tensor([3., 0., 2., 0.]))
0.5
"""

from adaptlab._lazy import attach

__all__, __getattr__, __dir__ = attach(__name__, {
    "channel": ["IMPORTANCES", "conv_positions", "count_macs", "count_params", "first_importance", "kept_channels",
                "l2_importance", "prune_channels", "reorder_channels"],
    "integer": ["IntegerCNN", "PATHS", "convert_integer", "fold_bn_model"],
    "kmeans": ["KMeansCode", "centroid_gradient", "check_bits", "kmeans_params", "kmeans_quantize",
               "quantize_model_kmeans"],
    "linear": ["calibration_qparams", "dequantize", "fold_bn", "int_conv2d", "int_linear", "int_maxpool2d",
               "linear_qparams", "qrange", "quantize", "quantize_weight_per_channel", "requant_multiplier",
               "requantize", "simulate_quantized_op"],
    "prune": ["FineGrainedPruner", "check_names", "fine_grained_mask", "magnitude_threshold", "masks_for",
              "num_pruned", "prunable_names", "sparsity_of", "weight_histograms"],
    "qops": ["ENGINES", "fast_engine", "pack_op", "probe", "quantize_quint8", "run_packed"],
    "sensitivity": ["allocate_sparsity", "kept_fraction", "sensitivity_scan", "uniform_allocation"],
    "size": ["MIB", "dense_bits", "kmeans_bits", "latency", "mib", "sparse_bits"],
    "torch_ref": ["torch_int8", "torch_prune_masks"],
    "train": ["train_steps"],
})
