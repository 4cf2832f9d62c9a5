"""Zero-shot learning and representation alignment: contrastive self-supervised pretraining (SimCLR's NT-Xent,
a projection head, torch augmentations)."""

from adaptlab._lazy import attach

__all__, __getattr__, __dir__ = attach(__name__, {
    "contrastive": ["Augment", "SimCLR", "affine_matrices", "augment", "cutout_mask", "elastic_field", "nt_xent",
                    "nt_xent_reference", "projection_head", "simclr_loss", "two_views"],
})
