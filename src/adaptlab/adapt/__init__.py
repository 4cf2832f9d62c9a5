"""Selective (surgical) fine-tuning under distribution shift: name blocks, tune some, choose them from gradients.

``blocks(model)`` names the blocks; ``finetune(model, x, y, tune=["block1"], ...)`` trains a copy with the
other blocks frozen (no backward through a frozen prefix, frozen batch norms in eval mode); Auto-RGN and
Auto-SNR weight each tensor's learning rate (``auto="rgn"`` / ``"snr"``); ``search_blocks`` picks the best
single block on held-out data.
"""

from adaptlab._lazy import attach

__all__, __getattr__, __dir__ = attach(__name__, {
    "auto": ["rgn_weights", "snr_scores", "snr_weights"],
    "blockmap": ["block_of", "blocks", "freeze", "norm_params", "select_blocks", "train_mode"],
    "tune": ["finetune", "recalibrate_bn", "search_blocks"],
})
