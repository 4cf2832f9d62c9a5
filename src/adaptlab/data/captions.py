"""Grounded, templated captions of real MNIST digits pasted on a canvas.

No captioned image set is available offline, so captions are generated from the layout: two distinct real
MNIST digits, each ``small`` (``small_px``) or ``large`` (28 px), pasted without overlap on a
``canvas x canvas`` image so that one relation holds between their boxes (left of / right of / above / below).
The caption is **templated**: ``"a large seven left of a small two"``. Which digit is named first is fixed by
the image so that every image has exactly one correct caption: the larger digit first, and between digits of
one size the left (or upper) one, so "right of" and "below" describe a large digit beside a small one.

With ``digits=3`` the caption is a **chain** of three distinct digits: ``"a large seven left of a small two above
a small three"`` claims exactly two relations, of the adjacent named pairs (seven left of two, two above three),
and nothing about the first and last digit. The digits are named in one canonical order, the same rule as for
two: larger digits first, and between digits of one size the one left of (or above) the other first. That
order is total because every pair of the three boxes, the unnamed pair too, stands in exactly one of the four
relations (see :func:`make_captions`), so each image has exactly one correct caption. Three large digits need a
canvas of at least 84 px (three side by side).

Train images take their digits from MNIST's training split and test images from its test split. The
compositional split holds out unordered digit pairs (by default {0,1}, {2,3}, ..., {8,9}): they never appear
in training, and ``make_captions(..., pairs="held-out")`` draws only them. With three digits an image is
held out when any of its three digit pairs (named next to each other or not) is a held-out pair (at most one
can be: the held-out pairs are disjoint); a seen image contains no held-out pair at all.

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
    >>> ds3 = make_captions(digits, labels, n=2, generator=torch.Generator().manual_seed(0), canvas=88,
    ...                     digits_per_image=3, max_len=LONGEST_BY_DIGITS[3])
    >>> ds3.boxes.shape, len(parse_caption(ds3.captions[0]))
    (torch.Size([2, 3, 3]), 8)
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

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
#: Slots of a three-digit chain caption: relation1 joins digits 1 and 2, relation2 digits 2 and 3.
SLOTS_3 = ("size1", "digit1", "relation1", "size2", "digit2", "relation2", "size3", "digit3")
#: Tokens of the longest caption (<bos>, 8 words, <eos>): the least decoder context that fits every caption.
LONGEST = 10
#: Longest caption in tokens by digits per image (three digits: <bos>, 13 words, <eos>).
LONGEST_BY_DIGITS = {2: LONGEST, 3: 15}
#: Least canvas side by digits per image: that many large (28 px) digits side by side.
MIN_CANVAS = {2: 56, 3: 84}


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
    return chain_caption((d1, d2), (s1, s2), (rel,))


def chain_caption(digits, sizes, relations) -> str:
    """``"a SIZE DIGIT REL a SIZE DIGIT ..."``: digit k joined to digit k + 1 by ``relations[k]`` (indices)."""
    words = [f"a {SIZES[s]} {DIGITS[d]}" for d, s in zip(digits, sizes, strict=True)]
    return " ".join(w if k == 0 else f"{RELATIONS[relations[k - 1]]} {w}" for k, w in enumerate(words))


def parse_caption(text: str) -> dict[str, str] | None:
    """The slots of a templated caption, or None if it does not follow the template.

    A two-digit caption gives :data:`SLOTS` (``relation``), a three-digit chain :data:`SLOTS_3`
    (``relation1``, ``relation2``).
    """
    w, groups, rels, i = text.split(), [], [], 0
    while True:
        if len(w) < i + 3 or w[i] != "a":
            return None
        groups.append((w[i + 1], w[i + 2]))
        i += 3
        if i == len(w):
            break
        two = w[i] in ("left", "right")
        rel = " ".join(w[i:i + 2]) if two else w[i]
        if rel not in RELATIONS:
            return None
        rels.append(rel)
        i += 2 if two else 1
    if len(groups) == 2:
        return {"size1": groups[0][0], "digit1": groups[0][1], "relation": rels[0], "size2": groups[1][0],
                "digit2": groups[1][1]}
    if len(groups) == 3:
        out = {}
        for k, (size, digit) in enumerate(groups, 1):
            out |= {f"size{k}": size, f"digit{k}": digit}
        return {k: ({"relation1": rels[0], "relation2": rels[1]} | out)[k] for k in SLOTS_3}
    return None


@dataclass(frozen=True)
class CaptionSet:
    """Images (n, 1, S, S) in [0, 1], padded token ids (n, L), captions, and the layout behind each."""

    images: torch.Tensor
    tokens: torch.Tensor
    captions: list[str]
    layout: torch.Tensor  # (n, 5): digit1, size1, relation, digit2, size2 (first-named digit first); three
    # digits: (n, 8): digit1, size1, relation1, digit2, size2, relation2, digit3, size3
    boxes: torch.Tensor  # (n, digits, 3): (top, left, side) of each digit's box, in the caption's order


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


def box_relation(a, b) -> int | None:
    """Index in :data:`RELATIONS` of the one relation A <rel> B of boxes ``(top, left, side)``, else None.

    A relation is clean when the boxes are apart along one axis and overlap along the other by at least half
    the smaller side (what :func:`_place` guarantees); boxes that overlap, or sit diagonally apart, get None.

    >>> box_relation((0, 0, 28), (0, 30, 16)), box_relation((0, 0, 28), (30, 30, 16))
    (0, None)
    """
    (ya, xa, sa), (yb, xb, sb) = a, b
    m = min(sa, sb) // 2
    over_x, over_y = min(xa + sa, xb + sb) - max(xa, xb), min(ya + sa, yb + sb) - max(ya, yb)
    if over_y >= m and (xa + sa <= xb or xb + sb <= xa):
        return 0 if xa + sa <= xb else 1
    if over_x >= m and (ya + sa <= yb or yb + sb <= ya):
        return 2 if ya + sa <= yb else 3
    return None


def canonical_order(boxes) -> list[int]:
    """Indices of ``boxes`` (top, left, side) in the order a caption names them.

    Larger boxes first; between boxes of one side the one left of or above the other first. With every pair
    in one clean relation (:func:`box_relation`) "left of or above" has no cycle, so the order is total.

    >>> canonical_order([(0, 40, 16), (0, 0, 16), (30, 0, 28)])
    [2, 1, 0]
    """
    def ahead(i: int) -> int:  # boxes of the same side that come before box i
        return sum(boxes[j][2] == boxes[i][2] and box_relation(boxes[j], boxes[i]) in (0, 2)
                   for j in range(len(boxes)) if j != i)
    return sorted(range(len(boxes)), key=lambda i: (-boxes[i][2], ahead(i)))


def _split(free: int, parts: int, g: torch.Generator) -> list[int]:
    """``parts`` random non-negative integers that sum to ``free`` (cuts at uniform points)."""
    cuts = sorted(int(v) for v in torch.randint(0, free + 1, (parts - 1,), generator=g))
    return [hi - lo for lo, hi in zip([0, *cuts], [*cuts, free])]


def _place3(sides, canvas: int, g: torch.Generator, tries: int = 1000) -> list[tuple[int, int, int]]:
    """Boxes (top, left, side) of three digits of ``sides``, every pair of them in one clean relation.

    With three boxes apart pairwise there are two shapes: a line (all three apart along one axis) or one box
    beside a stack of two (apart from both along one axis, overlapping both across it; the two apart along
    the other axis). Drawn: the shape and its axis at random (each 1/2), the digits' roles at random, free
    space split at random; a draw whose across-axis ranges are empty is redrawn.
    """
    def r(lo: int, hi: int) -> int:
        return int(torch.randint(lo, hi + 1, (), generator=g))
    for _ in range(tries):
        line, transpose, flip = (bool(v) for v in torch.randint(0, 2, (3,), generator=g))
        perm = [int(v) for v in torch.randperm(3, generator=g)]
        s = [sides[p] for p in perm]  # role k has side s[k]
        m01, m02, m12 = min(s[0], s[1]) // 2, min(s[0], s[2]) // 2, min(s[1], s[2]) // 2
        if line:  # roles 0, 1, 2 in this order along u, pairwise overlapping by m across (v)
            before, g1, g2, _ = _split(canvas - sum(s), 4, g)
            u = [before, before + s[0] + g1, before + s[0] + g1 + s[1] + g2]
            v0 = r(0, canvas - s[0])
            v1 = r(max(0, v0 - s[1] + m01), min(canvas - s[1], v0 + s[0] - m01))
            lo = max(0, v1 - s[2] + m12, v0 - s[2] + m02)
            hi = min(canvas - s[2], v1 + s[1] - m12, v0 + s[0] - m02)
            if lo > hi:
                continue
            v = [v0, v1, r(lo, hi)]
        else:  # role 0 before a stack of roles 1, 2 along u; 1 before 2 along v; 0 overlaps both along v
            w = max(s[1], s[2])
            before, gap, _ = _split(canvas - s[0] - w, 3, g)
            left = before + s[0] + gap
            u = [before, left + r(0, w - s[1]), left + r(0, w - s[2])]
            gap12 = r(0, min(s[0] - m01 - m02, canvas - s[1] - s[2]))  # larger: role 0 cannot reach both
            v1 = r(0, canvas - s[1] - s[2] - gap12)
            v2 = v1 + s[1] + gap12
            lo, hi = max(0, v1 - s[0] + m01, v2 - s[0] + m02), min(canvas - s[0], v1 + s[1] - m01, v2 + s[2] - m02)
            if lo > hi:
                continue
            v = [r(lo, hi), v1, v2]
            if flip:  # role 0 after the stack instead
                u = [canvas - uk - sk for uk, sk in zip(u, s)]
        roles = [(vk, uk, sk) if not transpose else (uk, vk, sk) for uk, vk, sk in zip(u, v, s)]
        boxes = [roles[perm.index(k)] for k in range(3)]
        if all(box_relation(boxes[i], boxes[j]) is not None for i, j in ((0, 1), (0, 2), (1, 2))):
            return boxes
    raise ConfigError(f"canvas={canvas} is invalid; no layout of three digits of sides {list(sides)} found in "
                      f"{tries} draws, expected a larger canvas")


def _make_chains(digits, small, by_label, n, generator, canvas, pairs, max_len, vocab):
    """Three-digit chain captions (see the module docstring); the arrays of a :class:`CaptionSet`."""
    images = torch.zeros(n, 1, canvas, canvas)
    tokens = torch.full((n, max_len), vocab.pad, dtype=torch.long)
    layout = torch.zeros(n, 8, dtype=torch.long)
    boxes = torch.zeros(n, 3, 3, dtype=torch.long)
    captions = []
    for i in range(n):
        while True:
            ds = [int(v) for v in torch.randperm(10, generator=generator)[:3]]
            held = any(frozenset(p) in HELD_OUT_PAIRS for p in combinations(ds, 2))
            if pairs == "all" or (pairs == "held-out") == held:
                break
        ss = [int(v) for v in torch.randint(0, 2, (3,), generator=generator)]
        ims = [digits[p] if s else small[p] for p, s in
               ((by_label[d][int(torch.randint(0, len(by_label[d]), (), generator=generator))], s)
                for d, s in zip(ds, ss))]
        bx = _place3([im.shape[0] for im in ims], canvas, generator)
        for (y, x, side), im in zip(bx, ims):
            images[i, 0, y:y + side, x:x + side] = im
        order = canonical_order(bx)
        rels = [box_relation(bx[order[k]], bx[order[k + 1]]) for k in range(2)]
        text = chain_caption([ds[o] for o in order], [ss[o] for o in order], rels)
        ids = vocab.encode(text)
        if len(ids) > max_len:
            raise ConfigError(f"max_len={max_len} is invalid; caption {text!r} needs {len(ids)} tokens "
                              f"(three digits: set it to {LONGEST_BY_DIGITS[3]})")
        tokens[i, :len(ids)] = torch.tensor(ids)
        (a, b, c) = order
        layout[i] = torch.tensor([ds[a], ss[a], rels[0], ds[b], ss[b], rels[1], ds[c], ss[c]])
        boxes[i] = torch.tensor([bx[o] for o in order])
        captions.append(text)
    return images.clamp_(0, 1), tokens, captions, layout, boxes


def make_captions(digits: torch.Tensor, labels: torch.Tensor, n: int, generator: torch.Generator,
                  canvas: int = 56, small_px: int = 16, pairs: str = "seen", max_len: int = 10,
                  digits_per_image: int = 2) -> CaptionSet:
    """``n`` captioned canvases from the digit images ``digits`` (N, 28, 28) with ``labels`` (N,).

    Args:
        pairs: ``"seen"`` (pairs outside :data:`HELD_OUT_PAIRS`), ``"held-out"`` (only those) or ``"all"``;
            with three digits an image is held out when any of its three digit pairs is.
        max_len: token length the captions are padded to (<bos> ... <eos>); longer captions raise.
        digits_per_image: 2 (default; one relation) or 3 (a chain of two relations, canvas >= 84).

    Returns:
        a :class:`CaptionSet`.
    """
    if digits_per_image not in MIN_CANVAS:
        raise ConfigError(f"digits={digits_per_image} is invalid; expected 2 or 3")
    if canvas < 56:
        raise ConfigError(f"canvas={canvas} is invalid; expected >= 56 (two large digits side by side)")
    if canvas < MIN_CANVAS[digits_per_image]:
        raise ConfigError(f"canvas={canvas} is invalid for digits={digits_per_image}; expected >= "
                          f"{MIN_CANVAS[digits_per_image]} (three large digits side by side)")
    if not 8 <= small_px < 28:
        raise ConfigError(f"small_px={small_px} is invalid; expected 8..27")
    if pairs not in ("seen", "held-out", "all"):
        raise ConfigError(f"pairs={pairs!r} is invalid; expected 'seen', 'held-out' or 'all'")
    vocab = Vocab()
    small = F.interpolate(digits[:, None].float(), size=(small_px, small_px), mode="bilinear",
                          antialias=True, align_corners=False)[:, 0]
    by_label = [torch.nonzero(labels == d).flatten() for d in range(10)]
    if digits_per_image == 3:
        return CaptionSet(*_make_chains(digits, small, by_label, n, generator, canvas, pairs, max_len, vocab))
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
