"""Grounded, templated captions of real MNIST digits pasted on a canvas.

No captioned image set is available offline, so captions are generated from the layout: two distinct real
MNIST digits, each ``small`` (``small_px``) or ``large`` (28 px), pasted without overlap on a
``canvas x canvas`` image so that one relation holds between their boxes (left of / right of / above / below).
The caption is **templated**: ``"a large seven left of a small two"``. Which digit is named first is fixed by
the image so that every image has exactly one correct caption: the larger digit first, and between digits of
one size the left (or upper) one, so "right of" and "below" describe a large digit beside a small one.

Train images take their digits from MNIST's training split and test images from its test split. The
compositional split holds out unordered digit pairs (by default {0,1}, {2,3}, ..., {8,9}): they never appear
in training, and ``make_captions(..., pairs="held-out")`` draws only them.

Example::

    >>> import torch
    >>> vocab = Vocab()
    >>> vocab.encode("a large seven left of a small two")[:4]
    [1, 3, 5, 13]
    >>> vocab.decode(vocab.encode("a small one above a small two"))
    'a small one above a small two'
    >>> digits = torch.rand(20, 28, 28); labels = torch.arange(20) % 10
    >>> ds = make_captions(digits, labels, n=4, generator=torch.Generator().manual_seed(0))
    >>> ds.images.shape, ds.tokens.shape[0]
    (torch.Size([4, 1, 56, 56]), 4)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from adaptlab.errors import ConfigError

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SIZES = ("small", "large")
RELATIONS = ("left of", "right of", "above", "below")
SPECIAL = ("<pad>", "<bos>", "<eos>")
#: Unordered digit pairs held out of training for the compositional split.
HELD_OUT_PAIRS = frozenset(frozenset((2 * i, 2 * i + 1)) for i in range(5))
SLOTS = ("size1", "digit1", "relation", "size2", "digit2")
#: Tokens of the longest caption (<bos>, 8 words, <eos>): the least decoder context that fits every caption.
LONGEST = 10


class Vocab:
    """Word <-> id for the caption template: ``<pad>=0, <bos>=1, <eos>=2``, then the words."""

    def __init__(self):
        words = ["a", *SIZES, *DIGITS, "left", "right", "of", "above", "below"]
        self.itos = [*SPECIAL, *words]
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.pad, self.bos, self.eos = 0, 1, 2

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, caption: str) -> list[int]:
        """``[<bos>, words..., <eos>]``; an unknown word raises ConfigError naming it."""
        ids = [self.bos]
        for w in caption.split():
            if w not in self.stoi:
                raise ConfigError(f"unknown token {w!r} in caption {caption!r}; expected one of "
                                  f"{', '.join(self.itos[3:])}")
            ids.append(self.stoi[w])
        return ids + [self.eos]

    def decode(self, ids) -> str:
        """Words between <bos> and the first <eos> (special tokens dropped)."""
        out = []
        for i in (int(t) for t in ids):
            if i == self.eos:
                break
            if i >= len(SPECIAL):
                out.append(self.itos[i])
        return " ".join(out)


def caption_of(d1: int, s1: int, rel: int, d2: int, s2: int) -> str:
    return f"a {SIZES[s1]} {DIGITS[d1]} {RELATIONS[rel]} a {SIZES[s2]} {DIGITS[d2]}"


def parse_caption(text: str) -> dict[str, str] | None:
    """The five slots of a templated caption, or None if it does not follow the template."""
    w = text.split()
    if len(w) < 7 or w[0] != "a":
        return None
    rel = " ".join(w[3:5]) if w[3] in ("left", "right") else w[3]
    rest = w[5:] if w[3] in ("left", "right") else w[4:]
    if rel not in RELATIONS or len(rest) != 3 or rest[0] != "a":
        return None
    return {"size1": w[1], "digit1": w[2], "relation": rel, "size2": rest[1], "digit2": rest[2]}


@dataclass(frozen=True)
class CaptionSet:
    """Images (n, 1, S, S) in [0, 1], padded token ids (n, L), captions, and the layout behind each."""

    images: torch.Tensor
    tokens: torch.Tensor
    captions: list[str]
    layout: torch.Tensor  # (n, 5): digit1, size1, relation, digit2, size2 (first-named digit first)
    boxes: torch.Tensor  # (n, 2, 3): (top, left, side) of the first- and second-named digit's box


def _place(rel: int, a: int, b: int, canvas: int, g: torch.Generator) -> tuple[int, int, int, int]:
    """Top-left corners (ya, xa, yb, xb) of boxes of sides a, b with A <rel> B and no overlap.

    Along the other axis the boxes overlap by at least half the smaller side, so exactly one of the four
    relations holds (a digit left of another is never also above it).
    """
    def r(hi: int, lo: int = 0) -> int:
        return int(torch.randint(lo, hi + 1, (), generator=g))
    along = r(canvas - a - b)  # free space along the relation axis, split at random
    gap = r(canvas - a - b - along)
    first, second = along, along + a + gap  # A occupies [first, first+a), B starts after it (or the reverse)
    if rel in (1, 3):  # right of / below: B comes first
        second, first = along, along + b + gap
    m = min(a, b) // 2
    cross_a = r(canvas - a)
    cross_b = r(min(canvas - b, cross_a + a - m), max(0, cross_a - b + m))
    if rel in (0, 1):  # horizontal
        return cross_a, first, cross_b, second
    return first, cross_a, second, cross_b


def make_captions(digits: torch.Tensor, labels: torch.Tensor, n: int, generator: torch.Generator,
                  canvas: int = 56, small_px: int = 16, pairs: str = "seen", max_len: int = 10) -> CaptionSet:
    """``n`` captioned canvases from the digit images ``digits`` (N, 28, 28) with ``labels`` (N,).

    Args:
        pairs: ``"seen"`` (pairs outside :data:`HELD_OUT_PAIRS`), ``"held-out"`` (only those) or ``"all"``.
        max_len: token length the captions are padded to (<bos> ... <eos>); longer captions raise.

    Returns:
        a :class:`CaptionSet`.
    """
    if canvas < 56:
        raise ConfigError(f"canvas={canvas} is invalid; expected >= 56 (two large digits side by side)")
    if not 8 <= small_px < 28:
        raise ConfigError(f"small_px={small_px} is invalid; expected 8..27")
    if pairs not in ("seen", "held-out", "all"):
        raise ConfigError(f"pairs={pairs!r} is invalid; expected 'seen', 'held-out' or 'all'")
    vocab = Vocab()
    small = F.interpolate(digits[:, None].float(), size=(small_px, small_px), mode="bilinear",
                          antialias=True, align_corners=False)[:, 0]
    by_label = [torch.nonzero(labels == d).flatten() for d in range(10)]
    images = torch.zeros(n, 1, canvas, canvas)
    tokens = torch.full((n, max_len), vocab.pad, dtype=torch.long)
    layout = torch.zeros(n, 5, dtype=torch.long)
    boxes = torch.zeros(n, 2, 3, dtype=torch.long)
    captions = []
    for i in range(n):
        while True:
            da, db = (int(v) for v in torch.randperm(10, generator=generator)[:2])
            held = frozenset((da, db)) in HELD_OUT_PAIRS
            if pairs == "all" or (pairs == "held-out") == held:
                break
        sa, sb = (int(v) for v in torch.randint(0, 2, (2,), generator=generator))
        rel = int(torch.randint(0, 4, (), generator=generator))
        pa, pb = (by_label[d][int(torch.randint(0, len(by_label[d]), (), generator=generator))] for d in (da, db))
        ima, imb = (digits[p] if s else small[p] for p, s in ((pa, sa), (pb, sb)))
        ya, xa, yb, xb = _place(rel, ima.shape[0], imb.shape[0], canvas, generator)
        images[i, 0, ya:ya + ima.shape[0], xa:xa + ima.shape[1]] = ima
        images[i, 0, yb:yb + imb.shape[0], xb:xb + imb.shape[1]] = imb
        box = [[ya, xa, ima.shape[0]], [yb, xb, imb.shape[0]]]
        if sb > sa or (sb == sa and rel in (1, 3)):  # the larger digit first; between equals the left/top one
            da, sa, db, sb, rel = db, sb, da, sa, rel ^ 1  # swapping the order flips the relation
            box = box[::-1]
        text = caption_of(da, sa, rel, db, sb)
        ids = vocab.encode(text)
        if len(ids) > max_len:
            raise ConfigError(f"max_len={max_len} is invalid; caption {text!r} needs {len(ids)} tokens")
        tokens[i, :len(ids)] = torch.tensor(ids)
        layout[i] = torch.tensor([da, sa, rel, db, sb])
        boxes[i] = torch.tensor(box)
        captions.append(text)
    return CaptionSet(images.clamp_(0, 1), tokens, captions, layout, boxes)


def paste_digit(digits: torch.Tensor, labels: torch.Tensor, n: int, canvas: int, generator: torch.Generator):
    """A single 28 x 28 digit at a uniformly random place on a ``canvas``-sided blank image: (n, 1, S, S), labels."""
    if canvas < 28:
        raise ConfigError(f"canvas={canvas} is invalid; expected >= 28")
    idx = torch.randint(0, len(digits), (n,), generator=generator)
    ys = torch.randint(0, canvas - 27, (n,), generator=generator)
    xs = torch.randint(0, canvas - 27, (n,), generator=generator)
    out = torch.zeros(n, 1, canvas, canvas)
    for i in range(n):
        out[i, 0, ys[i]:ys[i] + 28, xs[i]:xs[i] + 28] = digits[idx[i]]
    return out, labels[idx].clone()
