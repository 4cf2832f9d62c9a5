"""Zero-shot learning and representation alignment: label embeddings, bilinear compatibility, evaluation,
contrastive self-supervised pretraining.

- :mod:`~adaptlab.zeroshot.bilinear`: s(x, y) = xᵀ M y with M full, I + U Vᵀ or I; pairwise / structured hinge and
  softmax losses; ESZSL's closed form.
- :mod:`~adaptlab.zeroshot.eval`: class splits, ZSL / GZSL accuracy and harmonic mean, class-level validation.
- :mod:`~adaptlab.zeroshot.embed`: MiniLM sentence and GloVe word embeddings with a verified on-disk cache.
- :mod:`~adaptlab.zeroshot.procrustes`: orthogonal Procrustes, NN / CSLS retrieval, MUSE refinement, P@k (bilingual
  lexicon induction).
- :mod:`~adaptlab.zeroshot.contrastive`: SimCLR's NT-Xent, a projection head, torch augmentations.
"""

from adaptlab._lazy import attach

__all__, __getattr__, __dir__ = attach(__name__, {
    "bilinear": ["KINDS", "LOSSES", "compat_loss", "compat_matrix", "eszsl", "fit_bilinear", "init_params",
                 "pairwise_hinge", "predict", "regulariser", "scores", "softmax_loss", "structured_hinge"],
    "contrastive": ["Augment", "SimCLR", "affine_matrices", "augment", "cutout_mask", "elastic_field", "nt_xent",
                    "nt_xent_reference", "projection_head", "simclr_loss", "two_views"],
    "embed": ["cache_dir", "embed_texts", "glove_encoder", "glove_files", "hash_encoder", "lazy", "minilm_dir",
              "minilm_encoder"],
    "eval": ["class_splits", "class_validation", "evaluate_split", "harmonic_mean", "per_class_accuracy",
             "zsl_accuracy"],
    "procrustes": ["gold_index", "knn_mean_similarity", "mutual_nn_pairs", "normalize_embeddings",
                   "orthogonal_procrustes", "precision_at_k", "refine", "retrieve"],
})
