"""Three digits per captioned image: each chain caption is the one caption the rule allows for its boxes (re-derived
here from the boxes alone by brute force over the six naming orders), its relations hold, the splits keep their
digit pairs, and two-digit sets are bit for bit what they were before three digits existed."""

from __future__ import annotations

import hashlib
from itertools import combinations, permutations

import pytest
import torch

from adaptlab.data.captions import (
    DIGITS,
    HELD_OUT_PAIRS,
    LONGEST_BY_DIGITS,
    RELATIONS,
    SIZES,
    SLOTS_3,
    Vocab,
    chain_caption,
    make_captions,
    parse_caption,
)
from adaptlab.errors import ConfigError
from adaptlab.eval.captions import slot_accuracy

from helpers import cli


def _relations(a, b):
    """Every relation that holds between boxes a, b = (top, left, side), and the overlap across it."""
    (ya, xa, sa), (yb, xb, sb) = a, b
    over_x, over_y = min(xa + sa, xb + sb) - max(xa, xb), min(ya + sa, yb + sb) - max(ya, yb)
    out = {}
    if xa + sa <= xb:
        out["left of"] = over_y
    if xb + sb <= xa:
        out["right of"] = over_y
    if ya + sa <= yb:
        out["above"] = over_x
    if yb + sb <= ya:
        out["below"] = over_x
    return out


def _allowed_captions(boxes, labels):
    """Brute force: the chain captions of all six naming orders that obey the rule (larger digits first; of
    two digits of one size, the one left of or above the other first)."""
    out = []
    for order in permutations(range(3)):
        ok = True
        for i, j in combinations(range(3), 2):  # i named before j
            a, b = boxes[order[i]], boxes[order[j]]
            rel = next(iter(_relations(a, b)))
            if a[2] < b[2] or (a[2] == b[2] and rel not in ("left of", "above")):
                ok = False
        if ok:
            words = [f"a {'large' if boxes[o][2] == 28 else 'small'} {DIGITS[labels[o]]}" for o in order]
            rels = [next(iter(_relations(boxes[order[k]], boxes[order[k + 1]]))) for k in range(2)]
            out.append(f"{words[0]} {rels[0]} {words[1]} {rels[1]} {words[2]}")
    return out


@pytest.mark.parametrize("canvas,small_px", [(84, 14), (96, 16)])
def test_each_chain_caption_is_the_only_one_the_boxes_allow(fake_digits, canvas, small_px):
    x, y = fake_digits
    ds = make_captions(x, y, 300, torch.Generator().manual_seed(1), canvas=canvas, small_px=small_px,
                       pairs="all", digits_per_image=3, max_len=LONGEST_BY_DIGITS[3])
    g = torch.Generator().manual_seed(9)
    shapes, rel_slots, sizes = set(), set(), set()
    for text, lay, box, img in zip(ds.captions, ds.layout.tolist(), ds.boxes.tolist(), ds.images):
        labels = [lay[0], lay[3], lay[6]]
        perm = torch.randperm(3, generator=g).tolist()  # the boxes alone, in no particular order
        assert _allowed_captions([box[p] for p in perm], [labels[p] for p in perm]) == [text]
        for a, b in combinations(box, 2):  # every pair, the unnamed one too: one relation, half a side across
            rel = _relations(a, b)
            assert len(rel) == 1 and next(iter(rel.values())) >= min(a[2], b[2]) // 2
        p = parse_caption(text)
        assert _relations(box[0], box[1]).keys() == {p["relation1"]}  # what the caption claims holds
        assert _relations(box[1], box[2]).keys() == {p["relation2"]}
        assert [bx[2] for bx in box] == [28 if lay[k] else small_px for k in (1, 4, 7)]
        assert all(0 <= t and t + s <= canvas and 0 <= left and left + s <= canvas for t, left, s in box)
        ink = torch.zeros(canvas, canvas, dtype=torch.bool)
        for t, left, s in box:
            ink[t:t + s, left:left + s] = True
        assert not img[0][~ink].any()  # nothing outside the boxes
        assert len(set(labels)) == 3
        shapes.add(len({next(iter(_relations(a, b))) in ("left of", "right of") for a, b in combinations(box, 2)}))
        rel_slots |= {("1", p["relation1"]), ("2", p["relation2"])}
        sizes.add((lay[1], lay[4], lay[7]))
    assert shapes == {1, 2}  # lines (one axis) and a digit beside a stack of two (both axes)
    assert rel_slots == {(k, r) for k in "12" for r in RELATIONS}
    assert sizes == {(1, 1, 1), (1, 1, 0), (1, 0, 0), (0, 0, 0)}


def test_parse_encode_round_trip_and_context(fake_digits):
    x, y = fake_digits
    v = Vocab()
    ds = make_captions(x, y, 100, torch.Generator().manual_seed(2), canvas=88, digits_per_image=3, max_len=15)
    for text, lay, tok in zip(ds.captions, ds.layout.tolist(), ds.tokens):
        assert v.decode(tok) == text and v.decode(v.encode(text)) == text
        assert chain_caption(lay[0::3], lay[1::3], lay[2::3]) == text
        p = parse_caption(text)
        assert list(p) == list(SLOTS_3)
        assert p == {"size1": SIZES[lay[1]], "digit1": DIGITS[lay[0]], "relation1": RELATIONS[lay[2]],
                     "size2": SIZES[lay[4]], "digit2": DIGITS[lay[3]], "relation2": RELATIONS[lay[5]],
                     "size3": SIZES[lay[7]], "digit3": DIGITS[lay[6]]}
    longest = max(len(v.encode(chain_caption((d, d, d), (1, 1, 1), (r, r)))) for d in range(10) for r in range(4))
    assert longest == LONGEST_BY_DIGITS[3] == 15
    for bad in ("a large seven left of a small two above", "a large seven left of a small two above a small three "
                "below a small four", "a large seven near a small two above a small three"):
        assert parse_caption(bad) is None


def test_three_digit_split_holds_out_any_held_out_pair(fake_digits):
    x, y = fake_digits
    kw = {"canvas": 88, "digits_per_image": 3, "max_len": 15}
    seen = make_captions(x, y, 200, torch.Generator().manual_seed(3), pairs="seen", **kw)
    held = make_captions(x, y, 200, torch.Generator().manual_seed(3), pairs="held-out", **kw)

    def held_pairs(lay):
        return sum(frozenset(p) in HELD_OUT_PAIRS for p in combinations(lay[0::3], 2))
    assert all(held_pairs(lay) == 0 for lay in seen.layout.tolist())  # not even an unnamed pair
    assert all(held_pairs(lay) == 1 for lay in held.layout.tolist())
    assert not set(seen.captions) & set(held.captions)


def test_slot_accuracy_of_chains():
    ref = ["a large one above a small two left of a small three"] * 2
    hyp = ["a large one above a small two above a small three", "a large one above a small two"]
    acc = slot_accuracy(hyp, ref)
    assert list(acc) == list(SLOTS_3)
    assert acc["relation2"] == 0.0 and acc["digit3"] == 0.5 and acc["digit2"] == 1.0
    assert acc["relation1"] == 0.5  # a two-digit hypothesis has no chain slots: its relation is not relation1


def test_two_digit_sets_are_unchanged(fake_digits):
    """Images, captions and boxes of a fixed small case, computed before three-digit captions were added."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(60, 28, 28, generator=g), torch.arange(60) % 10
    ds = make_captions(x, y, 6, torch.Generator().manual_seed(5), canvas=56, small_px=16, pairs="seen")
    assert hashlib.sha256(ds.images.numpy().tobytes()).hexdigest() == \
        "bcb7a73736dea9841764765d64004d08a0e6ccc6be36e7f8a5faf13b13e82672"
    assert ds.captions == ["a large four below a small one", "a large seven above a large five",
                           "a large zero left of a small nine", "a large two left of a large seven",
                           "a large zero right of a small five", "a large three right of a small six"]
    assert ds.boxes.tolist() == [[[24, 19, 28], [6, 39, 16]], [[0, 5, 28], [28, 5, 28]], [[6, 10, 28], [16, 38, 16]],
                                 [[19, 0, 28], [12, 28, 28]], [[26, 28, 28], [35, 11, 16]],
                                 [[16, 26, 28], [35, 0, 16]]]
    ds = make_captions(x, y, 6, torch.Generator().manual_seed(5), canvas=64, small_px=12, pairs="held-out")
    assert hashlib.sha256(ds.images.numpy().tobytes()).hexdigest() == \
        "2bfdbd7eb4e41f6a92f0b3ac46237c86161f40ba26fc5ee17e636a888cc4f46a"
    assert ds.layout.tolist() == [[6, 1, 3, 7, 0], [5, 1, 1, 4, 0], [2, 1, 2, 3, 1], [4, 1, 0, 5, 1],
                                  [2, 1, 2, 3, 1], [4, 1, 0, 5, 1]]


def test_three_digit_bad_sizes_are_clear_errors(fake_digits):
    x, y = fake_digits
    with pytest.raises(ConfigError, match=r"canvas=80 is invalid for digits=3; expected >= 84"):
        make_captions(x, y, 1, torch.Generator(), canvas=80, digits_per_image=3, max_len=15)
    with pytest.raises(ConfigError, match="digits=4 is invalid; expected 2 or 3"):
        make_captions(x, y, 1, torch.Generator(), canvas=88, digits_per_image=4)
    with pytest.raises(ConfigError, match="max_len=10 is invalid"):
        make_captions(x, y, 1, torch.Generator(), canvas=88, digits_per_image=3)


@pytest.mark.parametrize("argv,needle", [
    (["run", "captioning-3digits", "--set", "data.canvas=80"], "data.canvas=80"),
    (["run", "captioning-3digits", "--set", "model.max_len=12"], "model.max_len=12"),
    (["run", "captioning", "--set", "data.digits=4"], "data.digits=4"),
    (["run", "captioning", "--set", "data.digits=3"], "data.canvas=56"),
])
def test_three_digit_bad_input_is_one_line(argv, needle, tmp_path):
    code, _, err = cli(*argv, "--out", str(tmp_path / "o"))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and needle in lines[0], err
