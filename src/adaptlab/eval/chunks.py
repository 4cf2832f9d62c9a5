"""Chunks as spans and as BIO tags, and the span-level F1 of chunking (CoNLL-2000 style).

A chunk is ``(label, start, end)`` over token positions, ``end`` exclusive. BIO tags mark the first token of
a chunk ``B-LABEL``, the others ``I-LABEL`` and tokens outside every chunk ``O``. Reading BIO back follows the
CoNLL evaluation script: an ``I-X`` that does not continue an ``X`` chunk starts a new one.

Span F1 counts a predicted chunk as correct only when its label, start and end all equal a gold chunk's:

.. math:: P = \\frac{|\\hat S \\cap S|}{|\\hat S|},\\quad R = \\frac{|\\hat S \\cap S|}{|S|},\\quad
          F_1 = \\frac{2PR}{P + R}

Example::

    >>> tags = spans_to_bio([("NP", 0, 2), ("VP", 2, 3)], 4)
    >>> tags
    ['B-NP', 'I-NP', 'B-VP', 'O']
    >>> bio_to_spans(tags)
    [('NP', 0, 2), ('VP', 2, 3)]
    >>> chunk_f1([["B-NP", "I-NP", "B-VP"]], [["B-NP", "B-NP", "B-VP"]])["f1"]
    0.4
"""

from __future__ import annotations

from collections.abc import Sequence

Span = tuple[str, int, int]


def spans_to_bio(spans: Sequence[Span], length: int) -> list[str]:
    """BIO tags of ``length`` tokens from non-overlapping spans ``(label, start, end)``.

    Raises ValueError for a span outside ``0..length``, an empty span or two overlapping spans.
    """
    tags = ["O"] * length
    for label, start, end in sorted(spans, key=lambda s: s[1]):
        if not 0 <= start < end <= length:
            raise ValueError(f"span {(label, start, end)} outside 0..{length} or empty; expected 0 <= start < end "
                             f"<= {length}")
        if any(t != "O" for t in tags[start:end]):
            raise ValueError(f"span {(label, start, end)} overlaps another span; expected non-overlapping spans")
        tags[start] = f"B-{label}"
        for i in range(start + 1, end):
            tags[i] = f"I-{label}"
    return tags


def bio_to_spans(tags: Sequence[str]) -> list[Span]:
    """Spans of a BIO sequence, in order; an ``I-X`` that does not continue an ``X`` chunk starts one."""
    spans: list[Span] = []
    label, start = None, 0
    for i, tag in enumerate(list(tags) + ["O"]):
        kind, _, lab = tag.partition("-")
        if kind not in ("B", "I", "O") or (kind != "O" and not lab):
            raise ValueError(f"BIO tag {tag!r} at position {i}; expected 'O', 'B-LABEL' or 'I-LABEL'")
        if label is not None and (kind != "I" or lab != label):
            spans.append((label, start, i))
            label = None
        if kind == "B" or (kind == "I" and label is None):
            label, start = lab, i
    return spans


def chunk_f1(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro-averaged span precision, recall and F1 (fractions) over sentences of BIO tags.

    Args:
        gold, pred: one tag sequence per sentence; the two sequences of a sentence have equal lengths.

    Returns:
        ``{"precision", "recall", "f1", "gold", "predicted", "correct"}``; a score with a zero denominator is 0.
    """
    if len(gold) != len(pred):
        raise ValueError(f"chunk_f1: {len(gold)} gold and {len(pred)} predicted sentences; expected equal counts")
    n_gold = n_pred = n_ok = 0
    for i, (g, p) in enumerate(zip(gold, pred)):
        if len(g) != len(p):
            raise ValueError(f"chunk_f1: sentence {i} has {len(g)} gold and {len(p)} predicted tags; expected equal")
        gs, ps = set(bio_to_spans(g)), set(bio_to_spans(p))
        n_gold, n_pred, n_ok = n_gold + len(gs), n_pred + len(ps), n_ok + len(gs & ps)
    prec = n_ok / n_pred if n_pred else 0.0
    rec = n_ok / n_gold if n_gold else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {"precision": prec, "recall": rec, "f1": f1, "gold": float(n_gold), "predicted": float(n_pred),
            "correct": float(n_ok)}
