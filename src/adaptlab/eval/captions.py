"""Caption metrics: exact match, per-slot accuracy of the templated captions, and corpus BLEU-4.

BLEU-4 comes from ``sacrebleu`` (a maintained implementation; the optional extra ``caption``:
``pip install sacrebleu``), with whitespace tokenisation since the captions are already word sequences.

Example::

    >>> exact_match(["a small one above a large two"], ["a small one above a large two"])
    1.0
    >>> slot_accuracy(["a small one above a large two"], ["a small one below a large two"])["relation"]
    0.0
"""

from __future__ import annotations

from adaptlab.data.captions import SLOTS, parse_caption
from adaptlab.errors import DataError


def exact_match(hyps: list[str], refs: list[str]) -> float:
    """Fraction of captions equal to their reference, word for word."""
    return sum(h == r for h, r in zip(hyps, refs, strict=True)) / max(len(refs), 1)


def slot_accuracy(hyps: list[str], refs: list[str]) -> dict[str, float]:
    """Per-slot accuracy; a caption off the template, or with fewer digits than its reference, scores 0.

    Two-digit references have the slots size1, digit1, relation, size2, digit2; three-digit chains size1,
    digit1, relation1, size2, digit2, relation2, size3, digit3 (each slot's accuracy is over the references
    that have it).

    >>> slot_accuracy(["a small one above a large two left of a small three"],
    ...               ["a small one above a large two above a small three"])["relation2"]
    0.0
    """
    hits: dict[str, int] = {}
    counts: dict[str, int] = {}
    for h, r in zip(hyps, refs, strict=True):
        ph, pr = parse_caption(h) or {}, parse_caption(r)
        if pr is None:
            raise DataError(f"reference caption {r!r} does not follow the template")
        for k in pr:
            hits[k] = hits.get(k, 0) + (ph.get(k) == pr[k])
            counts[k] = counts.get(k, 0) + 1
    if not refs:
        return dict.fromkeys(SLOTS, 0.0)
    return {k: hits[k] / counts[k] for k in hits}


def bleu4(hyps: list[str], refs: list[str]) -> float:
    """Corpus BLEU-4 in [0, 100] (sacrebleu, one reference per caption, whitespace tokens)."""
    try:
        import sacrebleu
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise DataError("BLEU-4 needs sacrebleu; install it with: pip install sacrebleu") from e
    return float(sacrebleu.corpus_bleu(hyps, [refs], tokenize="none").score)
