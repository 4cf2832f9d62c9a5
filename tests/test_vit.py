"""ViT and captioner: windowed attention against a naive masked global reference, the HW 2b joint mask,
KV-cached decoding against recomputation, and clear errors for bad input."""

from __future__ import annotations

import pytest
import torch

from adaptlab.errors import ConfigError
from adaptlab.models.captioner import AlternatingLayer, Captioner, JointLayer, joint_mask
from adaptlab.models.vit import Block, ViT, relative_index, shift_window_mask

from conftest import assert_close


def naive_attention(attn, x, mask):
    """Explicit softmax(QK^T / sqrt(dh) + mask) V over (B, N, D) with an (N, N) boolean mask."""
    b, n, d = x.shape
    h = attn.heads
    q, k, v = attn.qkv(x).view(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
    s = (q @ k.transpose(-1, -2)) / (d // h) ** 0.5
    s = s.masked_fill(~mask, float("-inf"))
    y = s.softmax(-1) @ v
    return attn.proj(y.transpose(1, 2).reshape(b, n, d))


def window_reference_mask(g: int, k: int, s: int) -> torch.Tensor:
    """(N, N): tokens attend iff they share a window of the grid partitioned with boundaries at s, s+k, ...
    (no roll: the shifted windows in original coordinates, the border pieces as windows of their own)."""
    r, c = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")
    wr, wc = torch.div(r - s, k, rounding_mode="floor").flatten(), torch.div(c - s, k, rounding_mode="floor").flatten()
    return (wr[:, None] == wr[None, :]) & (wc[:, None] == wc[None, :])


@pytest.mark.parametrize("g,k,s", [(8, 4, 0), (8, 4, 2), (8, 2, 1), (6, 3, 1), (12, 4, 2), (4, 4, 0)])
def test_windowed_attention_equals_masked_global_attention(g, k, s):
    torch.manual_seed(g + k + s)
    blk = Block(16, 2, g, window=k, shift=s).double()
    x = torch.randn(2, g, g, 16, dtype=torch.float64)
    ref = naive_attention(blk.attn, x.reshape(2, g * g, 16), window_reference_mask(g, k, s)).view(2, g, g, 16)
    assert_close(blk.attend(x), ref)
    if s:  # the shift mask matters: without it the rolled windows mix tokens from opposite borders
        wrong = naive_attention(blk.attn, x.reshape(2, g * g, 16), window_reference_mask(g, k, 0)).view(2, g, g, 16)
        assert (blk.attend(x) - wrong).abs().max() > 1e-3


def test_shift_mask_hides_wrapped_tokens_only_in_border_windows():
    m = shift_window_mask(8, 4, 2)  # (4 windows, 16, 16)
    assert m[0].all()  # the interior window holds contiguous tokens
    assert not m[3].all() and m[3].any(dim=-1).all()  # the corner window is split, no empty row
    assert torch.equal(m, m.transpose(-1, -2))


def test_global_vit_is_permutation_equivariant_without_positions_and_causal_sees_only_the_past():
    torch.manual_seed(0)
    blk = Block(8, 2, 4, causal=True).double()
    x = torch.randn(1, 4, 4, 8, dtype=torch.float64)
    y = blk.attend(x).reshape(1, 16, 8)
    x2 = x.clone().reshape(1, 16, 8)
    x2[0, 10] += torch.randn(8, dtype=torch.float64)
    y2 = blk.attend(x2.view(1, 4, 4, 8)).reshape(1, 16, 8)
    assert_close(y2[0, :10], y[0, :10])
    assert (y2[0, 10:] - y[0, 10:]).abs().amax() > 1e-6


def test_conv_stem_keeps_the_patch_grid_and_overlaps_neighbouring_patches():
    torch.manual_seed(0)
    net = ViT(image_size=32, patch=8, dim=16, depth=1, heads=2, window=None, embed="conv", n_classes=None).eval()
    assert net.embed(torch.zeros(1, 1, 32, 32)).shape == (1, 16, 4, 4)
    x = torch.zeros(1, 1, 32, 32)
    x2 = x.clone()
    x2[0, 0, 7, 7] = 1.0  # the last pixel of grid cell (0, 0)
    d = (net.embed(x2) - net.embed(x)).abs().amax(1)[0]  # (4, 4): which tokens the pixel reaches
    assert (d[:2, :2] > 0).all()  # its own token and the next cells' (token k sees pixels 8k-7 .. 8k+7)
    assert (d[2:] == 0).all() and (d[:, 2:] == 0).all()  # receptive field 15 px: not two cells away
    patch = ViT(image_size=32, patch=8, dim=16, depth=1, heads=2, window=None, n_classes=None)
    assert ((patch.embed(x2) - patch.embed(x)).abs().amax(1)[0] > 0).sum() == 1


def test_vit_gradcheck_conv_stem_float64():
    torch.manual_seed(0)
    net = ViT(image_size=8, patch=4, dim=8, depth=1, heads=2, window=None, embed="conv", n_classes=3).double()
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: net(t), (x,))


def test_vit_gradcheck_windowed_float64():
    torch.manual_seed(0)
    net = ViT(image_size=8, patch=2, dim=8, depth=2, heads=2, window=2, n_classes=3).double()
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: net(t), (x,))


# ------------------------------------------------------------------------------- relative position bias


def naive_rel_pos_attention(blk, x):
    """Per-window loop with the bias built entry by entry from the table: no roll, no index tensor.

    Windows are the pieces of the grid cut at s, s+K, ... in original coordinates (the border pieces the
    shift mask keeps apart are windows of their own); inside a piece, query (r, c) and key (r', c') get
    logit q.k / sqrt(dh) + table[(r - r' + S - 1) (2S - 1) + (c - c' + S - 1), head], S = K (or G, global).
    """
    b, g, _, d = x.shape
    h = blk.attn.heads
    dh = d // h
    side, s = (g, 0) if blk.window is None else (blk.window, blk.shift)
    table = blk.rel_table
    qkv = blk.attn.qkv(x)  # (b, g, g, 3d)
    out = x.new_zeros(b, g, g, d)
    label = {}
    for r in range(g):
        for c in range(g):
            label.setdefault(((r - s) // side, (c - s) // side), []).append((r, c))
    for cells in label.values():
        n = len(cells)
        bias = x.new_zeros(h, n, n)
        for i, (r, c) in enumerate(cells):
            for j, (r2, c2) in enumerate(cells):
                bias[:, i, j] = table[(r - r2 + side - 1) * (2 * side - 1) + (c - c2 + side - 1)]
                if blk.causal and r2 * g + c2 > r * g + c:
                    bias[:, i, j] = float("-inf")
        t = torch.stack([qkv[:, r, c] for r, c in cells], 1).view(b, n, 3, h, dh)  # (b, n, 3, h, dh)
        q, k, v = t.unbind(2)  # (b, n, h, dh)
        att = (torch.einsum("bihe,bjhe->bhij", q, k) / dh ** 0.5 + bias).softmax(-1)
        y = torch.einsum("bhij,bjhe->bihe", att, v).reshape(b, n, d)
        for i, (r, c) in enumerate(cells):
            out[:, r, c] = y[:, i]
    return blk.attn.proj(out)


@pytest.mark.parametrize("g,k,s,causal", [(8, 4, 0, False), (8, 4, 2, False), (6, 3, 1, False),
                                          (4, None, 0, False), (4, None, 0, True)])
def test_rel_pos_attention_equals_a_naive_per_window_loop(g, k, s, causal):
    torch.manual_seed(g + s)
    blk = Block(16, 2, g, window=k, shift=s, causal=causal, rel_pos=True).double()
    side = g if k is None else k
    assert blk.rel_table.shape == ((2 * side - 1) ** 2, 2)
    with torch.no_grad():
        blk.rel_table.normal_()  # trained values, not the zero start, so that every entry matters
    x = torch.randn(2, g, g, 16, dtype=torch.float64)
    y = blk.attend(x)
    assert_close(y, naive_rel_pos_attention(blk, x))
    with torch.no_grad():  # the bias is really used: without it the output moves
        blk.rel_table.zero_()
    assert (blk.attend(x) - y).abs().max() > 1e-3


@pytest.mark.parametrize("side", [2, 3, 4])
def test_rel_pos_bias_depends_on_the_offset_only(side):
    blk = Block(8, 2, 8 if side == 4 else side * 2, window=side, rel_pos=True).double()
    with torch.no_grad():
        blk.rel_table.normal_()
    bias = blk.rel_bias()[0]  # (h, S^2, S^2)
    cells = [(r, c) for r in range(side) for c in range(side)]
    seen: dict[tuple[int, int], torch.Tensor] = {}
    for i, (r, c) in enumerate(cells):
        for j, (r2, c2) in enumerate(cells):
            off = (r - r2, c - c2)
            if off in seen:  # the same offset anywhere in the window: the same bias
                assert torch.equal(bias[:, i, j], seen[off])
            seen[off] = bias[:, i, j]
    assert len(seen) == (2 * side - 1) ** 2  # every offset occurs, each with its own row of the table
    assert sorted(relative_index(side).unique().tolist()) == list(range((2 * side - 1) ** 2))
    assert len({tuple(v.tolist()) for v in seen.values()}) == (2 * side - 1) ** 2  # rows are distinct


def test_rel_pos_keeps_the_shift_mask_and_starts_as_the_plain_block():
    torch.manual_seed(1)
    plain = Block(16, 2, 8, window=4, shift=2).double()
    torch.manual_seed(1)
    rel = Block(16, 2, 8, window=4, shift=2, rel_pos=True).double()
    x = torch.randn(2, 8, 8, 16, dtype=torch.float64)
    assert_close(rel.attend(x), plain.attend(x))  # zero table: the plain block, masked the same way
    with torch.no_grad():
        rel.rel_table.normal_(std=3.0)  # a large bias cannot reopen a key the shift mask hides
    x2 = x.clone()
    x2[:, 0, 0] += 1.0  # token (0, 0) sits in the wrapped corner window with (7, 7), (0, 7), (7, 0) ...
    d = (rel.attend(x2) - rel.attend(x)).abs().amax(-1)[0]  # (8, 8): which outputs the change reaches
    assert d[0, 0] > 0 and d[1, 1] > 0  # ... but the mask pairs it only with rows/columns 0..1
    assert (d[2:] == 0).all() and (d[:, 2:] == 0).all()
    assert torch.isfinite(rel.attend(x)).all()


def test_rel_pos_gradient_reaches_the_table_float64():
    torch.manual_seed(0)
    net = ViT(image_size=16, patch=2, dim=8, depth=2, heads=2, window=4, n_classes=3, rel_pos=True).double()
    x = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    net(x).square().sum().backward()
    for blk in net.blocks:  # from the zero start, both the plain and the shifted block's table learn
        assert blk.rel_table.grad is not None and blk.rel_table.grad.abs().sum() > 0
    blk = net.blocks[1]  # shifted
    t = torch.randn_like(blk.rel_table, requires_grad=True)
    z = torch.randn(1, 8, 8, 8, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda w: torch.func.functional_call(blk, {"rel_table": w}, (z,)), (t,))


# ------------------------------------------------------------------------------- the HW 2b mask

CAPTION = ["<SOS>", "a", "mountain", "range", "<PAD>"]
IMAGE = ["<ENC1>", "<ENC2>", "<ENC3>"]
# Rows: queries (the 5 caption tokens). Columns: keys/values, the 3 image tokens then the 5 caption tokens.
HW2B = torch.tensor([
    # E1 E2 E3 SOS a  mtn rng PAD
    [1, 1, 1, 1, 0, 0, 0, 0],  # <SOS>
    [1, 1, 1, 1, 1, 0, 0, 0],  # a
    [1, 1, 1, 1, 1, 1, 0, 0],  # mountain
    [1, 1, 1, 1, 1, 1, 1, 0],  # range
    [1, 1, 1, 1, 1, 1, 1, 0],  # <PAD>: sees the image and the real tokens, never the padding key
], dtype=torch.bool)


def test_hw2b_joint_mask_pattern_and_axes():
    pad = torch.tensor([[t == "<PAD>" for t in CAPTION]])
    m = joint_mask(pad, n_image=len(IMAGE))
    assert m.shape == (1, len(CAPTION), len(IMAGE) + len(CAPTION))  # (batch, queries, keys/values)
    assert torch.equal(m[0], HW2B)
    assert m[0].any(-1).all()  # no fully masked row


def _joint_outputs(layer, x, mem, pad, causal=True):
    return layer(x, layer.memory(mem), joint_mask(pad, mem.shape[1], causal))[0]


@pytest.fixture(params=[{}, {"image_kv": True}, {"image_norm": True}], ids=["shared-kv", "image-kv", "image-norm"])
def hw2b(request):
    torch.manual_seed(3)
    layer = JointLayer(8, 2, 2.0, **request.param).double()
    if "image_norm" in request.param:  # not the identity-like initial affine, so the norm's weights matter
        with torch.no_grad():
            layer.image_norm.weight.uniform_(0.5, 1.5)
            layer.image_norm.bias.normal_()
    x = torch.randn(1, 5, 8, dtype=torch.float64)
    mem = torch.randn(1, 3, 8, dtype=torch.float64)
    pad = torch.tensor([[False, False, False, False, True]])
    return layer, x, mem, pad


def test_hw2b_changing_token_t_leaves_earlier_outputs_unchanged(hw2b):
    layer, x, mem, pad = hw2b
    y = _joint_outputs(layer, x, mem, pad)
    for t in range(5):
        x2 = x.clone()
        x2[0, t] += torch.randn(8, dtype=torch.float64)
        y2 = _joint_outputs(layer, x2, mem, pad)
        assert_close(y2[0, :t], y[0, :t])
        assert (y2[0, t] - y[0, t]).abs().max() > 1e-6


def test_hw2b_padding_token_changes_no_other_output(hw2b):
    layer, x, mem, pad = hw2b
    for causal in (True, False):  # without causality only the padding mask protects the other outputs
        y = _joint_outputs(layer, x, mem, pad, causal)
        x2 = x.clone()
        x2[0, 4] = 10 * torch.randn(8, dtype=torch.float64)
        y2 = _joint_outputs(layer, x2, mem, pad, causal)
        assert_close(y2[0, :4], y[0, :4])
    x3 = x.clone()  # a real token, by contrast, changes later outputs
    x3[0, 1] += torch.randn(8, dtype=torch.float64)  # not a constant: LayerNorm would remove it
    moved = _joint_outputs(layer, x3, mem, pad)[0, 2:] - _joint_outputs(layer, x, mem, pad)[0, 2:]
    assert moved.abs().amax(-1).min() > 1e-6


def test_hw2b_one_image_token_changes_every_caption_output(hw2b):
    layer, x, mem, pad = hw2b
    y = _joint_outputs(layer, x, mem, pad)
    for j in range(3):
        mem2 = mem.clone()
        mem2[0, j] += torch.randn(8, dtype=torch.float64)
        y2 = _joint_outputs(layer, x, mem2, pad)
        assert (y2[0] - y[0]).abs().amax(-1).min() > 1e-6  # every one of the 5 rows moved


def test_hw2b_no_nan_even_for_an_all_padding_caption(hw2b):
    layer, x, mem, _ = hw2b
    pad = torch.tensor([[False, True, True, True, True]])
    assert torch.isfinite(_joint_outputs(layer, x, mem, pad)).all()
    assert joint_mask(torch.ones(1, 5, dtype=torch.bool), 3).any(-1).all()


# ------------------------------------------------------------------------------- decoding

@pytest.mark.parametrize("decoder", ["joint", "joint-image_kv", "joint-image_norm", "alternating"])
def test_cached_decoding_equals_recomputation(decoder):
    torch.manual_seed(5)
    net = Captioner(vocab_size=9, max_len=7, image_size=16, patch=4, dim=16, heads=2, enc_depth=1, dec_depth=2,
                    decoder=decoder.split("-")[0], image_kv=decoder.endswith("image_kv"),
                    image_norm=decoder.endswith("image_norm")).double().eval()
    img = torch.randn(3, 1, 16, 16, dtype=torch.float64)
    prefix = torch.randint(3, 9, (3, 7))
    prefix[:, 0] = net.bos_id
    for use in (True, False):  # per-step logits of the cached path equal the full teacher-forced logits
        step, _ = net._stepper(net.encoder(img), use)
        full = net.decode(net.encoder(img), prefix)
        for t in range(1, 8):
            # columns 2.. (not <pad>, <bos>, which decoding sets to -inf); summed in another order
            assert_close(step(prefix[:, :t])[:, 2:], full[:, t - 1, 2:], rtol=1e-9, atol=1e-10)
    assert torch.equal(net.greedy(img), net.greedy(img, use_cache=False))
    a, sa = net.beam_search(img, beam=3)
    b, sb = net.beam_search(img, beam=3, use_cache=False)
    assert torch.equal(a, b) and torch.allclose(sa, sb)
    g = net.greedy(img)
    c, _ = net.beam_search(img, beam=1)
    assert torch.equal(c[:, :g.shape[1]], g)


def _gen_logp(net, img, toks):
    logits = net(img, torch.tensor([toks]))[0, -1]
    logits[[net.pad_id, net.bos_id]] = float("-inf")  # decoding never emits <pad> or <bos> as a word
    return logits.log_softmax(-1)


def test_beam_search_with_wide_beam_finds_the_exhaustive_best():
    torch.manual_seed(2)
    net = Captioner(vocab_size=5, max_len=4, image_size=8, patch=4, dim=8, heads=2, decoder="joint").double().eval()
    img = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        _check_exhaustive(net, img)


def _check_exhaustive(net, img):
    seq, score = net.beam_search(img, beam=25)
    best = float("-inf")
    for a in range(5):  # brute force over every 3-token continuation with the same <eos>/<pad> rules
        for b in range(5):
            for c in range(5):
                toks, s, done = [net.bos_id], 0.0, False
                for w in (a, b, c):
                    if done:
                        if w != net.pad_id:
                            s = float("-inf")
                        toks.append(w)
                        continue
                    lp = _gen_logp(net, img, toks)[w]
                    s += float(lp.detach())
                    toks.append(w)
                    done = w == net.eos_id
                best = max(best, s)
    assert abs(float(score[0]) - best) < 1e-9


# ------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("kwargs,match", [
    ({"image_size": 30, "patch": 7}, "image_size=30"),
    ({"image_size": 28, "patch": 7, "window": 3}, "window=3"),
    ({"image_size": 28, "patch": 7, "window": 8}, "window=8"),
    ({"window": None, "causal": True, "image_size": 28, "patch": 7, "positions": "fourier"}, "positions="),
    ({"image_size": 28, "patch": 7, "window": None, "embed": "conv"}, "patch=7 is invalid for embed='conv'"),
    ({"image_size": 28, "patch": 4, "window": None, "embed": "vgg"}, "embed='vgg'"),
])
def test_vit_bad_sizes_are_clear_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ViT(**kwargs)


def test_captioner_rejects_long_captions_and_unknown_tokens():
    net = Captioner(vocab_size=10, max_len=5)
    img = torch.zeros(1, 1, 28, 28)
    with pytest.raises(ConfigError, match="max_len=5"):
        net(img, torch.ones(1, 6, dtype=torch.long))
    with pytest.raises(ConfigError, match="token id 12"):
        net(img, torch.tensor([[1, 12]]))
    with pytest.raises(ConfigError, match=r"image shape \(1, 32, 32\)"):
        net(torch.zeros(1, 1, 32, 32))


def test_attention_maps_are_the_attention_weights_on_image_tokens():
    torch.manual_seed(0)
    img = torch.randn(2, 1, 16, 16)
    tok = torch.tensor([[1, 4, 5, 2], [1, 6, 2, 0]])
    for decoder in ("joint", "alternating"):
        net = Captioner(vocab_size=9, max_len=6, image_size=16, patch=4, dim=16, heads=2, decoder=decoder).eval()
        with torch.no_grad():
            w = net.attention_maps(img, tok)  # (B, T, M)
        assert w.shape == (2, 4, 16) and (w >= 0).all()
        total = w.sum(-1)
        if decoder == "alternating":  # cross-attention: a distribution over the image tokens
            assert_close(total, torch.ones_like(total), rtol=1e-5, atol=1e-6)  # float32 softmax
        else:  # joint: the image share of one softmax over [image; caption]
            assert (total < 1).all() and (total > 0).all()


def test_joint_image_kv_projects_image_keys_on_their_own_and_stays_smaller_than_alternating():
    d = 16
    shared, own, alt = JointLayer(d, 2, 2.0), JointLayer(d, 2, 2.0, image_kv=True), AlternatingLayer(d, 2, 2.0)
    n = [sum(p.numel() for p in m.parameters()) for m in (shared, own, alt)]
    assert n[1] - n[0] == 2 * d * d + 2 * d and n[1] < n[2]
    mem = torch.randn(1, 3, d)
    with torch.no_grad():
        own.kv.load_state_dict(shared.kv.state_dict())
        k_shared = shared.kv(mem)[..., :d].view(1, 3, 2, d // 2).transpose(1, 2)  # (B, h, M, d/h)
        assert_close(shared.memory(mem)["mk"], k_shared)  # without image_kv, image keys come from kv
        own.image_kv.weight.zero_()
        own.image_kv.bias.zero_()
        assert (own.memory(mem)["mk"] == 0).all() and (own.memory(mem)["mv"] == 0).all()  # with it, never from kv


def test_joint_image_norm_normalises_only_the_image_tokens_and_starts_as_the_shared_layer():
    d = 16
    torch.manual_seed(0)
    plain = JointLayer(d, 2, 2.0)
    torch.manual_seed(0)
    normed = JointLayer(d, 2, 2.0, image_norm=True)
    n = [sum(p.numel() for p in m.parameters()) for m in (plain, normed, AlternatingLayer(d, 2, 2.0))]
    assert n[1] - n[0] == 2 * d and n[1] < n[2]
    for name, p in plain.named_parameters():  # the same initial weights: the norm draws no random numbers
        assert torch.equal(p, normed.get_parameter(name))
    mem, x = torch.randn(1, 3, d), torch.randn(1, 4, d)
    mask = joint_mask(torch.zeros(1, 4, dtype=torch.bool), 3)
    with torch.no_grad():
        normed.image_norm.weight.uniform_(0.5, 1.5)
        normed.image_norm.bias.normal_()
        ref = torch.nn.functional.layer_norm(mem, (d,), normed.image_norm.weight, normed.image_norm.bias)
        k, v = plain.kv(ref).chunk(2, -1)  # oracle: the shared projection of the normalised image tokens
        got = normed.memory(mem)
        assert_close(got["mk"], k.view(1, 3, 2, d // 2).transpose(1, 2))
        assert_close(got["mv"], v.view(1, 3, 2, d // 2).transpose(1, 2))
        # the caption tokens do not pass through it: the output is the plain layer's, fed the normalised image
        assert_close(normed(x, normed.memory(mem), mask)[0], plain(x, plain.memory(ref), mask)[0])
