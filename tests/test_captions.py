"""Templated MNIST captions: the caption is true of the image and the only true one, the splits keep their
digit pairs, the metrics, and the captioning / vit-windowed experiments' bad input."""

from __future__ import annotations

import pytest
import torch

from adaptlab.data.captions import (
    DIGITS,
    HELD_OUT_PAIRS,
    LONGEST,
    RELATIONS,
    SIZES,
    Vocab,
    make_captions,
    parse_caption,
    paste_digit,
)
from adaptlab.errors import ConfigError
from adaptlab.eval.captions import bleu4, exact_match, slot_accuracy

from helpers import cli


def _relations(a, b):
    """Every relation that holds between boxes a, b = (top, left, side)."""
    (ya, xa, sa), (yb, xb, sb) = a, b
    out = set()
    if xa + sa <= xb:
        out.add("left of")
    if xb + sb <= xa:
        out.add("right of")
    if ya + sa <= yb:
        out.add("above")
    if yb + sb <= ya:
        out.add("below")
    return out


def test_each_caption_is_the_one_true_description_of_its_layout(fake_digits):
    x, y = fake_digits
    ds = make_captions(x, y, 300, torch.Generator().manual_seed(1), canvas=64, small_px=14)
    seen_rel = set()
    for text, lay, box, tok in zip(ds.captions, ds.layout.tolist(), ds.boxes.tolist(), ds.tokens):
        p = parse_caption(text)
        assert p == {"size1": SIZES[lay[1]], "digit1": DIGITS[lay[0]], "relation": RELATIONS[lay[2]],
                     "size2": SIZES[lay[4]], "digit2": DIGITS[lay[3]]}
        assert _relations(*box) == {p["relation"]}  # true, and no other relation is
        assert box[0][2] == (28 if lay[1] else 14) and box[1][2] == (28 if lay[4] else 14)
        assert lay[1] >= lay[4]  # the larger digit is named first
        if lay[1] == lay[4]:
            assert p["relation"] in ("left of", "above")  # between equals, the left / upper one
        assert lay[0] != lay[3] and frozenset((lay[0], lay[3])) not in HELD_OUT_PAIRS
        assert Vocab().decode(tok) == text
        seen_rel.add(p["relation"])
    assert seen_rel == set(RELATIONS)


def test_pixels_are_the_source_digits_at_their_boxes(fake_digits):
    x, y = fake_digits
    ds = make_captions(x, y, 20, torch.Generator().manual_seed(2))
    for img, box, lay in zip(ds.images, ds.boxes.tolist(), ds.layout.tolist()):
        (t, left, s) = box[0]
        patch = img[0, t:t + s, left:left + s]
        if s == 28:  # a large digit is a verbatim MNIST image of the named label
            assert any(torch.equal(patch, x[i]) for i in torch.nonzero(y == lay[0]).flatten())
        assert img.sum() > 0


def test_held_out_split_draws_only_held_out_pairs(fake_digits):
    x, y = fake_digits
    ds = make_captions(x, y, 50, torch.Generator().manual_seed(3), pairs="held-out")
    assert all(frozenset((a[0], a[3])) in HELD_OUT_PAIRS for a in ds.layout.tolist())


def test_longest_caption_fits_the_declared_context():
    v = Vocab()
    assert max(len(v.encode(f"a large {d} {r} a large {d}")) for d in DIGITS for r in RELATIONS) == LONGEST


def test_unknown_word_and_bad_sizes_are_clear_errors(fake_digits):
    x, y = fake_digits
    with pytest.raises(ConfigError, match="unknown token 'mountain'"):
        Vocab().encode("a large mountain range")
    with pytest.raises(ConfigError, match="canvas=40"):
        make_captions(x, y, 1, torch.Generator(), canvas=40)
    with pytest.raises(ConfigError, match="max_len=8"):
        make_captions(x, y, 4, torch.Generator(), max_len=8)


def test_paste_digit_keeps_the_digit_whole(fake_digits):
    x, y = fake_digits
    imgs, labels = paste_digit(x, y, 10, 84, torch.Generator().manual_seed(0))
    assert imgs.shape == (10, 1, 84, 84)
    for img, lab in zip(imgs, labels):  # all the ink of one source digit of that label is on the canvas
        assert any(torch.isclose(img.sum(), x[j].sum()) for j in torch.nonzero(y == lab).flatten())


def test_metrics():
    ref = ["a small one above a large two", "a large three left of a small four"]
    assert exact_match(ref, ref) == 1.0 and bleu4(ref, ref) == pytest.approx(100.0)
    hyp = ["a small one below a large two", "a large three left of a small four"]
    assert exact_match(hyp, ref) == 0.5
    acc = slot_accuracy(hyp, ref)
    assert acc["relation"] == 0.5 and acc["digit1"] == 1.0
    assert slot_accuracy(["garbage"] * 2, ref)["digit1"] == 0.0
    assert 0 < bleu4(hyp, ref) < 100


@pytest.mark.parametrize("argv,needle", [
    (["run", "vit-windowed", "--set", "canvases=[60]"], "canvases"),
    (["run", "vit-windowed", "--set", "window=3"], "canvases"),
    (["run", "captioning", "--set", "model.patch=5"], "model.patch=5"),
    (["run", "captioning", "--set", "model.max_len=8"], "model.max_len=8"),
    (["run", "captioning", "--set", "model.patch=7"], "model.patch=7"),  # the conv stem needs a power of two
    (["run", "captioning", "--set", "model.embed=resnet"], "model.embed='resnet'"),
    (["run", "captioning", "--set", "train.warmup=3000"], "train.warmup=3000"),
])
def test_experiment_bad_input_is_one_line(argv, needle, tmp_path):
    code, _, err = cli(*argv, "--out", str(tmp_path / "o"))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and needle in lines[0], err


# ------------------------------------------------------------------------------- several training seeds

def _rec(exact, digit, correct):
    slots = {"digit1": digit, "digit2": digit, "size1": 100.0, "size2": 100.0, "relation": 100.0}
    split = {"exact": exact, "bleu4": exact, "slots": slots}
    return {"seen": split, "held-out": split, "seen_beam": split, "test_loss": exact / 100,
            "seen_correct": correct, "held-out_correct": correct}


def test_seed_statistics_pair_the_decoders_by_seed_with_student_t():
    from adaptlab.experiments.captioning import seed_statistics

    joint = [_rec(80.0, 90.0, [1, 1, 0, 0]), _rec(86.0, 92.0, [1, 1, 1, 0]), _rec(83.0, 91.0, [1, 0, 1, 0])]
    alt = [_rec(90.0, 95.0, [1, 1, 1, 0]), _rec(89.0, 95.0, [1, 1, 1, 1]), _rec(91.0, 96.0, [1, 1, 1, 0])]
    st = seed_statistics({"joint": joint, "alternating": alt})
    gap = st["joint - alternating"]["exact_seen"]
    assert gap["per_seed"] == [-10.0, -3.0, -8.0]  # paired by seed, not a difference of means of shuffled runs
    d = torch.tensor([-10.0, -3.0, -8.0], dtype=torch.float64)
    assert gap["mean"] == pytest.approx(-7.0)
    assert gap["ci95"] == pytest.approx(4.302653 * float(d.std()) / 3 ** 0.5, rel=1e-6)  # t(0.975, 2 df)
    # test-set interval: image i's seed-averaged difference (here 4 images: 0, -1/3, -1/3, -1/3, x 100)
    per_image = 100 * torch.tensor([0.0, -1 / 3, -1 / 3, -1 / 3], dtype=torch.float64)
    assert gap["test_set_ci95"] == pytest.approx(1.96 * float(per_image.std()) / 2, rel=1e-9)
    assert st["per_decoder"]["joint"]["digit_seen"]["mean"] == pytest.approx(91.0)
    assert st["joint - alternating"]["digit_seen"]["per_seed"] == [-5.0, -3.0, -5.0]


def test_seed_zero_of_a_several_seed_run_is_the_single_seed_run(tmp_path):
    pytest.importorskip("sacrebleu")
    pytest.importorskip("scipy")
    from adaptlab.config import apply_overrides
    from adaptlab.experiments.captioning import QUICK, CaptioningConfig, run

    base = {**QUICK, "decoders": ["joint", "alternating"]}
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = run(apply_overrides(CaptioningConfig(), base), tmp_path / "one")
    two = run(apply_overrides(CaptioningConfig(), {**base, "seeds": 2}), tmp_path / "two")
    assert "seeds" not in one
    assert one["decoders"] == two["decoders"]  # seed 0 is the single-seed run, bit for bit
    st = two["seeds"]
    for name in ("joint", "alternating"):
        assert st["per_decoder"][name]["test_loss"]["per_seed"][0] == one["decoders"][name]["test_loss"]
        assert st["per_decoder"][name]["test_loss"]["per_seed"][1] != one["decoders"][name]["test_loss"]
    assert "joint#1" in two["timings"] and "alternating#1" in two["timings"]
