"""Image captioners: a ViT encoder and a caption decoder, alternating or joint, with KV-cached decoding.

Two decoder layers read the image tokens ``m`` (B, M, D) while generating caption tokens ``x`` (B, T, D):

* **alternating** (the standard decoder): ``x += SelfAttn(LN x)`` (causal, padding keys hidden),
  ``x += CrossAttn(LN x, m)``, ``x += MLP(LN x)``: two attentions, ``8 D^2`` attention weights.
* **joint**: ``x += Attn(q = LN x, k = v = [m; LN x], mask)``, ``x += MLP(LN x)``: one attention whose keys
  are the image tokens followed by the caption tokens, with one boolean mask (:func:`joint_mask`): every image
  key visible to every caption query, caption keys causal, padding keys hidden: ``4 D^2`` attention weights.

Decoding (:meth:`Captioner.greedy`, :meth:`Captioner.beam_search`) keeps a KV cache: the image keys/values of
every layer are computed once, and each step appends one caption key/value per layer, so step t costs
``O(M + t)`` instead of recomputing the whole prefix; ``use_cache=False`` recomputes (the reference).

Example::

    >>> net = Captioner(vocab_size=12, max_len=6, image_size=28, patch=7, dim=16, heads=2, decoder="joint")
    >>> tokens = torch.tensor([[1, 5, 6, 2, 0, 0]])           # <bos> w w <eos> <pad> <pad>
    >>> net(torch.zeros(1, 1, 28, 28), tokens).shape           # teacher-forced logits
    torch.Size([1, 6, 12])
    >>> net.greedy(torch.zeros(2, 1, 28, 28)).shape[0]
    2
    >>> joint_mask(torch.tensor([[False, False, True]]), n_image=2).int()[0]
    tensor([[1, 1, 1, 0, 0],
            [1, 1, 1, 1, 0],
            [1, 1, 1, 1, 0]], dtype=torch.int32)

References:
    A. Vaswani et al. Attention is all you need. NeurIPS 2017.
    O. Vinyals et al. Show and tell: a neural image caption generator. CVPR 2015.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from adaptlab.errors import ConfigError
from adaptlab.models.registry import register
from adaptlab.models.vit import ViT, mlp


def joint_mask(pad: torch.Tensor, n_image: int, causal: bool = True) -> torch.Tensor:
    """The joint layer's boolean mask (B, T, M + T): rows are caption queries, columns keys/values.

    Args:
        pad: (B, T) True where the caption token is padding.
        n_image: M, the number of image tokens (the first M key columns, always visible).
        causal: caption query t sees caption keys 0..t (False: every non-padding caption key).

    Returns:
        (B, T, M + T) True = may attend. No row is empty: every query sees the M image keys.
    """
    b, t = pad.shape
    img = pad.new_ones(b, t, n_image)
    cap = ~pad[:, None, :].expand(b, t, t)  # padding keys hidden
    if causal:
        cap = cap & torch.ones(t, t, dtype=torch.bool, device=pad.device).tril()
    return torch.cat([img, cap], -1)


def self_mask(pad: torch.Tensor, causal: bool = True) -> torch.Tensor:
    """(B, T, T) mask of the alternating layer's self-attention: causal, padding keys hidden, diagonal kept."""
    t = pad.shape[1]
    eye = torch.eye(t, dtype=torch.bool, device=pad.device)
    m = ~pad[:, None, :].expand(-1, t, t)
    if causal:
        m = m & torch.ones(t, t, dtype=torch.bool, device=pad.device).tril()
    return m | eye  # a padding query still sees itself (never an empty row)


def _heads(x: torch.Tensor, h: int) -> torch.Tensor:  # (B, n, D) -> (B, h, n, D/h)
    b, n, d = x.shape
    return x.view(b, n, h, d // h).transpose(1, 2)


def _attend(q, k, v, mask, weights: bool):
    """SDPA over (B, h, n, dh) tensors with a (B, T, S) boolean mask; optionally the (B, T, S) head-mean weights."""
    m = None if mask is None else mask[:, None]
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
    w = None
    if weights:
        s = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
        if m is not None:
            s = s.masked_fill(~m, float("-inf"))
        w = s.softmax(-1).mean(1)
    b, h, n, dh = y.shape
    return y.transpose(1, 2).reshape(b, n, h * dh), w


class JointLayer(nn.Module):
    """One attention over keys [image; caption] with one mask, then an MLP (pre-norm).

    ``image_kv=True`` gives the image tokens their own key/value projection (``2 D^2 + 2 D`` more weights,
    ``6 D^2`` attention weights in all); it is still one attention over [image; caption] under one mask.
    ``image_norm=True`` gives them a LayerNorm of their own (``2 D`` more weights) before the key/value
    projection, as the caption tokens have ``norm1``: without it every layer reads the encoder's output as is.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float, image_kv: bool = False, image_norm: bool = False):
        super().__init__()
        self.h = heads
        self.norm1, self.q, self.kv, self.proj = nn.LayerNorm(dim), nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), \
            nn.Linear(dim, dim)
        self.norm2, self.mlp = nn.LayerNorm(dim), mlp(dim, mlp_ratio)
        if image_kv:  # created last, so the shared-projection layer's initialisation is unchanged
            self.image_kv = nn.Linear(dim, 2 * dim)
        if image_norm:  # ones and zeros, no random draws: every other weight starts as without it
            self.image_norm = nn.LayerNorm(dim)

    def memory(self, m: torch.Tensor) -> dict:  # image keys/values, computed once per image
        proj = getattr(self, "image_kv", self.kv)
        if hasattr(self, "image_norm"):
            m = self.image_norm(m)
        mk, mv = proj(m).chunk(2, -1)
        return {"mk": _heads(mk, self.h), "mv": _heads(mv, self.h)}

    def forward(self, x, mem: dict, mask, cache: dict | None = None, weights: bool = False):
        """x (B, T, D); mask (B, T, M + T'), T' = cached + T; ``cache`` gains this call's caption keys."""
        z = self.norm1(x)
        k, v = (_heads(t, self.h) for t in self.kv(z).chunk(2, -1))
        if cache is not None:
            k = cache["k"] = torch.cat([cache["k"], k], 2) if "k" in cache else k
            v = cache["v"] = torch.cat([cache["v"], v], 2) if "v" in cache else v
        y, w = _attend(_heads(self.q(z), self.h), torch.cat([mem["mk"], k], 2), torch.cat([mem["mv"], v], 2),
                       mask, weights)
        x = x + self.proj(y)
        x = x + self.mlp(self.norm2(x))
        n_image = mem["mk"].shape[2]
        return x, (None if w is None else w[..., :n_image])


class AlternatingLayer(nn.Module):
    """Causal self-attention, cross-attention to the image tokens, MLP (pre-norm)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.h = heads
        self.norm1, self.qkv, self.proj1 = nn.LayerNorm(dim), nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.norm2, self.q, self.kv, self.proj2 = nn.LayerNorm(dim), nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), \
            nn.Linear(dim, dim)
        self.norm3, self.mlp = nn.LayerNorm(dim), mlp(dim, mlp_ratio)

    def memory(self, m: torch.Tensor) -> dict:
        mk, mv = self.kv(m).chunk(2, -1)
        return {"mk": _heads(mk, self.h), "mv": _heads(mv, self.h)}

    def forward(self, x, mem: dict, mask, cache: dict | None = None, weights: bool = False):
        """x (B, T, D); mask (B, T, T') of the self-attention (None: all visible, the cached step)."""
        q, k, v = (_heads(t, self.h) for t in self.qkv(self.norm1(x)).chunk(3, -1))
        if cache is not None:
            k = cache["k"] = torch.cat([cache["k"], k], 2) if "k" in cache else k
            v = cache["v"] = torch.cat([cache["v"], v], 2) if "v" in cache else v
        x = x + self.proj1(_attend(q, k, v, mask, False)[0])
        y, w = _attend(_heads(self.q(self.norm2(x)), self.h), mem["mk"], mem["mv"], None, weights)
        x = x + self.proj2(y)
        return x + self.mlp(self.norm3(x)), w


class Captioner(nn.Module):
    """ViT encoder + caption decoder (``decoder="joint"`` or ``"alternating"``) + tied-free linear LM head.

    Args:
        vocab_size: tokens, with ``pad_id``, ``bos_id``, ``eos_id`` among them.
        max_len: the decoder's context (tokens incl. <bos>); longer captions raise ConfigError.
        image_size, patch, in_channels, window, positions, embed: the :class:`~adaptlab.models.vit.ViT` encoder's.
        dim, heads, mlp_ratio: widths shared by encoder and decoder. enc_depth, dec_depth: block counts.
        decoder: ``"joint"`` or ``"alternating"``.
        causal: causal mask among caption tokens (False: the no-mask ablation that cannot generate).
        image_kv: joint decoder only: a key/value projection of its own for the image tokens (see
            :class:`JointLayer`); the alternating decoder always has one (its cross-attention).
        image_norm: joint decoder only: a LayerNorm of its own for the image tokens in every layer.
    """

    def __init__(self, vocab_size: int = 20, max_len: int = 10, image_size: int = 28, patch: int = 7,
                 in_channels: int = 1, dim: int = 32, heads: int = 4, mlp_ratio: float = 2.0, enc_depth: int = 1,
                 dec_depth: int = 1, window: int | None = None, positions: str = "learned",
                 decoder: str = "joint", causal: bool = True, pad_id: int = 0, bos_id: int = 1, eos_id: int = 2,
                 embed: str = "patch", image_kv: bool = False, image_norm: bool = False):
        super().__init__()
        if decoder not in ("joint", "alternating"):
            raise ConfigError(f"decoder={decoder!r} is invalid; expected 'joint' or 'alternating'")
        if not all(0 <= i < vocab_size for i in (pad_id, bos_id, eos_id)) or len({pad_id, bos_id, eos_id}) < 3:
            raise ConfigError(f"special ids (pad={pad_id}, bos={bos_id}, eos={eos_id}) are invalid; expected "
                              f"three distinct ids in 0..{vocab_size - 1}")
        self.vocab_size, self.max_len, self.decoder, self.causal = vocab_size, max_len, decoder, causal
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.encoder = ViT(image_size, patch, in_channels, dim, enc_depth, heads, mlp_ratio, window, positions,
                           n_classes=None, embed=embed)
        self.tok = nn.Embedding(vocab_size, dim)
        self.pos = nn.Parameter(0.02 * torch.randn(max_len, dim))
        if decoder == "joint":
            self.layers = nn.ModuleList(JointLayer(dim, heads, mlp_ratio, image_kv, image_norm)
                                        for _ in range(dec_depth))
        else:
            self.layers = nn.ModuleList(AlternatingLayer(dim, heads, mlp_ratio) for _ in range(dec_depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size)

    # ---------------------------------------------------------------------------- teacher forcing
    def check_tokens(self, tokens: torch.Tensor) -> None:
        if tokens.dim() != 2 or tokens.shape[1] > self.max_len:
            raise ConfigError(f"caption of shape {tuple(tokens.shape)} is invalid; expected (batch, length) with "
                              f"length <= max_len={self.max_len}")
        if ((tokens < 0) | (tokens >= self.vocab_size)).any():
            bad = tokens[(tokens < 0) | (tokens >= self.vocab_size)][0]
            raise ConfigError(f"token id {int(bad)} is invalid; expected ids in 0..{self.vocab_size - 1}")

    def _masks(self, tokens: torch.Tensor, n_image: int) -> torch.Tensor:
        pad = tokens == self.pad_id
        return joint_mask(pad, n_image, self.causal) if self.decoder == "joint" else self_mask(pad, self.causal)

    def decode(self, m: torch.Tensor, tokens: torch.Tensor, weights: bool = False):
        """Teacher-forced logits (B, T, V) for image tokens m (B, M, D); with ``weights`` also the last
        layer's head-mean attention weights on the image tokens (B, T, M)."""
        self.check_tokens(tokens)
        t = tokens.shape[1]
        x = self.tok(tokens) + self.pos[:t]
        mask = self._masks(tokens, m.shape[1])
        w = None
        for layer in self.layers:
            x, w = layer(x, layer.memory(m), mask, weights=weights)
        logits = self.head(self.norm(x))
        return (logits, w) if weights else logits

    def forward(self, images: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, V) of the next token after each prefix; ``tokens=None`` scores the <bos> prefix."""
        if tokens is None:
            tokens = torch.full((images.shape[0], 1), self.bos_id, dtype=torch.long, device=images.device)
        return self.decode(self.encoder(images), tokens)

    def loss(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy over non-padding targets."""
        logits = self(images, tokens[:, :-1])
        return F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten(), ignore_index=self.pad_id)

    def attention_maps(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T, M): how much each caption position's query attends to each image patch (last layer)."""
        return self.decode(self.encoder(images), tokens, weights=True)[1]

    # ------------------------------------------------------------------------------------ decoding
    def _stepper(self, m: torch.Tensor, use_cache: bool):
        """``next_logits(prefix (B, t)) -> (B, V)`` (<pad>, <bos> at -inf) and ``reorder(index)`` for beams."""
        mems = [layer.memory(m) for layer in self.layers]
        caches: list[dict] = [{} for _ in self.layers]
        state = {"m": m, "mems": mems}
        special = torch.tensor([self.pad_id, self.bos_id], device=m.device)

        def next_logits(prefix: torch.Tensor) -> torch.Tensor:
            if not use_cache:
                out = self.decode(state["m"], prefix)[:, -1]
            else:
                t = prefix.shape[1] - 1
                x = self.tok(prefix[:, -1:]) + self.pos[t:t + 1]  # (B, 1, D): only the new token
                for layer, mem, cache in zip(self.layers, state["mems"], caches):
                    x, _ = layer(x, mem, None, cache=cache)  # the cache holds only the past: causal by construction
                out = self.head(self.norm(x))[:, 0]
            # never emit <pad> or <bos> as a word (a generated <pad> would be a hidden key on recomputation)
            return out.index_fill(-1, special, float("-inf"))

        def reorder(index: torch.Tensor) -> None:
            state["m"] = state["m"][index]
            state["mems"] = [{k: v[index] for k, v in mem.items()} for mem in state["mems"]]
            for cache in caches:
                for k in list(cache):
                    cache[k] = cache[k][index]

        return next_logits, reorder

    def _cache_ok(self, use_cache: bool) -> bool:
        return use_cache and self.causal  # a decoder trained without the causal mask is decoded by recomputing

    @torch.no_grad()
    def greedy(self, images: torch.Tensor, max_len: int | None = None, use_cache: bool = True) -> torch.Tensor:
        """Greedy captions (B, L): <bos> first, <pad> after <eos>; L <= max_len (default the context)."""
        n = self._length(max_len)
        next_logits, _ = self._stepper(self.encoder(images), self._cache_ok(use_cache))
        seq = torch.full((images.shape[0], 1), self.bos_id, dtype=torch.long, device=images.device)
        done = torch.zeros(images.shape[0], dtype=torch.bool, device=images.device)
        for _ in range(n - 1):
            nxt = next_logits(seq).argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, self.pad_id), nxt)
            seq = torch.cat([seq, nxt[:, None]], 1)
            done = done | (nxt == self.eos_id)
            if bool(done.all()):
                break
        return seq

    @torch.no_grad()
    def beam_search(self, images: torch.Tensor, beam: int = 4, max_len: int | None = None,
                    use_cache: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Beam search: the highest summed log-probability caption per image, (B, L) and its score (B,).

        A finished beam (it emitted <eos>) keeps its score and is extended by <pad> at log-probability 0.
        """
        if beam < 1:
            raise ConfigError(f"beam={beam} is invalid; expected a positive integer")
        n = self._length(max_len)
        b, dev = images.shape[0], images.device
        m = self.encoder(images).repeat_interleave(beam, 0)  # (B*W, M, D)
        next_logits, reorder = self._stepper(m, self._cache_ok(use_cache))
        seq = torch.full((b * beam, 1), self.bos_id, dtype=torch.long, device=dev)
        score = torch.full((b, beam), float("-inf"), device=dev)
        score[:, 0] = 0.0
        done = torch.zeros(b * beam, dtype=torch.bool, device=dev)
        base = (torch.arange(b, device=dev) * beam)[:, None]
        for _ in range(n - 1):
            logp = next_logits(seq).log_softmax(-1)  # (B*W, V)
            frozen = torch.full_like(logp, float("-inf"))
            frozen[:, self.pad_id] = 0.0
            logp = torch.where(done[:, None], frozen, logp)
            cand = (score.view(-1, 1) + logp).view(b, beam * self.vocab_size)
            score, idx = cand.topk(beam, -1)  # (B, W)
            src = (base + idx // self.vocab_size).view(-1)
            tok = (idx % self.vocab_size).view(-1)
            reorder(src)
            seq = torch.cat([seq[src], tok[:, None]], 1)
            done = done[src] | (tok == self.eos_id)
            if bool(done.all()):
                break
        best = score.argmax(-1)  # (B,)
        pick = base[:, 0] + best
        return seq[pick], score.gather(1, best[:, None])[:, 0]

    def _length(self, max_len: int | None) -> int:
        n = self.max_len if max_len is None else max_len
        if not 2 <= n <= self.max_len:
            raise ConfigError(f"max_len={n} is invalid; expected 2..{self.max_len} (the decoder's context)")
        return n


@register("captioner-joint", input_shape=(1, 28, 28), output_shape=lambda b: (b, 1, 20))
def captioner_joint(**kwargs) -> Captioner:
    """A :class:`Captioner` with the joint self/cross-attention decoder layer."""
    return Captioner(decoder="joint", **kwargs)


@register("captioner-alternating", input_shape=(1, 28, 28), output_shape=lambda b: (b, 1, 20))
def captioner_alternating(**kwargs) -> Captioner:
    """A :class:`Captioner` with alternating self-attention / cross-attention decoder layers."""
    return Captioner(decoder="alternating", **kwargs)
