"""Zero-shot learning and representation alignment: Procrustes bilingual lexicon induction (procrustes)."""

from adaptlab._lazy import attach

__all__, __getattr__, __dir__ = attach(__name__, {
    "procrustes": ["gold_index", "knn_mean_similarity", "mutual_nn_pairs", "normalize_embeddings",
                   "orthogonal_procrustes", "precision_at_k", "refine", "retrieve"],
})
