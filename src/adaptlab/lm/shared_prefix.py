"""Shared-prefix attention: a soft prompt's keys and values computed once and read by every row, in one model call.

The batch ``[prompt, row_b]`` (b = 1..B) is packed into one sequence of ``T = P + B L`` tokens,
``[prompt (P); row 1 (L); ...; row B (L)]``, with position ids ``0..P-1`` for the prompt and ``P..P+L-1`` again in
every row. Every per-token layer (projections, MLP, norms) then runs once over the T tokens: one matrix product of
T rows per weight, where a key/value cache needs a batch-1 call over the P prompt tokens (small, inefficient
products and a second pass of per-layer overhead) and a second call over the B L row tokens. Only attention sees
the structure. Through transformers' attention interface each layer's queries, keys and values (after the rotary
embedding) are split:

- the prompt attends causally to itself at batch 1: ``o_p = softmax(q_p k_p^T / sqrt(d) + causal) v_p``;
- row b attends to the prompt's keys followed by its own, causally, padding hidden:
  ``o_b = softmax(q_b [k_p; k_b]^T / sqrt(d) + mask_b) [v_p; v_b]``, with ``k_p, v_p`` expanded over the batch
  (a view; their gradient is summed over the rows by one reduction).

That is the attention of a key/value cache of the prompt, so the states and the gradient reaching the prompt are
those of the uncached forward over ``[prompt, row_b]`` (tested). Both attentions are done by the model's own
attention implementation (``sdpa`` or ``eager``, whichever it was loaded with; eager keeps double backward for
second-order MAML); on CPU, sdpa is called with grouped-query heads read in place instead of copied. Models
that do not use transformers' attention interface, other attention implementations, and sequences longer than
a sliding window fall back to the key/value cache (:func:`supported` says which).

Example (a tiny random GPT-2, no download)::

    >>> import torch
    >>> from adaptlab.lm.load import tiny_random_lm
    >>> lm = tiny_random_lm()
    >>> prompt, tok = torch.randn(3, 32), torch.randn(2, 5, 32)
    >>> mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    >>> h = shared_prefix_hidden(lm, prompt, tok, mask)  # (B, P + L, D)
    >>> x = torch.cat([prompt, tok[1, :3]])[None]  # row 2 alone, unpadded, after the prompt
    >>> ref = lm.model.base_model(inputs_embeds=x).last_hidden_state[0]
    >>> tuple(h.shape), bool(torch.allclose(h[1, :6], ref, atol=1e-5))
    ((2, 8, 32), True)
"""

from __future__ import annotations

import sys

import torch
from torch import Tensor

NAME = "adaptlab_shared_prefix"  # the name registered in transformers' AttentionInterface
INNER = ("sdpa", "eager")  # attention implementations this layout delegates to (both take 4D additive masks)
_KEY = "adaptlab_shared_prefix"  # the keyword that carries the layout from the model call to every layer


def supported(lm, P: int, L: int) -> bool:
    """Whether ``lm`` can run :func:`shared_prefix_hidden` exactly for a prompt of P and rows of L tokens."""
    model = lm.model
    cfg = model.config
    if not getattr(type(model), "_supports_attention_backend", False):
        return False  # its layers do not call transformers' attention interface
    if getattr(cfg, "_attn_implementation", None) not in INNER or getattr(cfg, "reorder_and_upcast_attn", False):
        return False
    window = getattr(cfg, "sliding_window", None)  # the masks here have no window: exact only inside one
    return window is None or P + L < window


def _register() -> None:
    from transformers import AttentionInterface

    if NAME not in AttentionInterface._global_mapping:
        AttentionInterface.register(NAME, _attention)


def _cpu_sdpa(module, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None, **kwargs):
    """torch's SDPA with each key/value head read by its group of query heads (``enable_gqa``), no copies.

    transformers' sdpa copies the key/value heads to the query heads whenever a mask is passed (on CUDA a mask
    with GQA falls back to the math kernel); the CPU kernel takes both, so on CPU the copy is skipped.
    A ``None`` mask means causal (the prompt's own attention).
    """
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=mask, dropout_p=kwargs.get("dropout", 0.0), is_causal=mask is None,
        scale=kwargs.get("scaling"), enable_gqa=query.shape[1] != key.shape[1])  # (b, H, q, d)
    return out.transpose(1, 2), None  # (b, q, H, d), as transformers' attention functions return it


def _inner(module, impl: str, device: torch.device):
    """The attention function the model was loaded with (a model's ``eager`` lives in its modeling file)."""
    if impl == "eager":
        return sys.modules[type(module).__module__].eager_attention_forward
    if impl == "sdpa" and device.type == "cpu":
        return _cpu_sdpa
    from transformers import AttentionInterface

    return AttentionInterface._global_mapping[impl]


def _attention(module, query: Tensor, key: Tensor, value: Tensor, attention_mask, **kwargs):
    """One layer's attention over the packed ``(1, heads, P + B L, d)`` queries, keys and values."""
    lay = kwargs.pop(_KEY)
    P, B, L = lay["P"], lay["B"], lay["L"]
    inner = _inner(module, lay["impl"], query.device)

    def rows(x):  # (1, h, P + B L, d) -> (B, h, L, d), a view
        return x[0, :, P:].unflatten(1, (B, L)).transpose(0, 1)

    def after_prompt(x):  # (B, h, P + L, d): the prompt's keys (or values), expanded, then the row's own
        return torch.cat([x[:, :, :P].expand(B, -1, -1, -1), rows(x)], 2)

    prompt_mask = None if inner is _cpu_sdpa else lay["prompt_mask"]  # None: SDPA's own causal mask
    o_p, _ = inner(module, query[:, :, :P], key[:, :, :P], value[:, :, :P], prompt_mask, **kwargs)
    o_r, _ = inner(module, rows(query), after_prompt(key), after_prompt(value), lay["rows_mask"], **kwargs)
    # (1, P, H, d) and (B, L, H, d) -> (1, P + B L, H, d), the layout the layer reshapes for its output projection
    return torch.cat([o_p[0], o_r.reshape(B * L, *o_r.shape[2:])], 0)[None], None


def _masks(attention_mask: Tensor, P: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Additive masks: the prompt's causal ``(1, 1, P, P)`` and the rows' ``(B, 1, L, P + L)`` (prompt, causal, pad)."""
    B, L = attention_mask.shape
    dev = attention_mask.device
    low = torch.finfo(dtype).min
    causal_p = torch.ones(P, P, dtype=torch.bool, device=dev).tril()
    causal_r = torch.ones(L, L, dtype=torch.bool, device=dev).tril()
    see = torch.cat([causal_r.new_ones(B, L, P), causal_r & attention_mask.bool()[:, None, :]], 2)  # (B, L, P + L)
    prompt_mask = torch.zeros(1, 1, P, P, dtype=dtype, device=dev).masked_fill(~causal_p, low)
    rows_mask = torch.zeros(B, 1, L, P + L, dtype=dtype, device=dev).masked_fill(~see[:, None], low)
    return prompt_mask, rows_mask


def shared_prefix_hidden(lm, prompt: Tensor, tok: Tensor, attention_mask: Tensor) -> Tensor:
    """Last-layer states ``(B, P + L, D)`` of ``[prompt (P, D), tok[b] (L, D)]`` for every row, one model call.

    ``attention_mask`` (B, L) marks the real tokens of the right-padded rows. Equal to the uncached forward
    over the concatenated embeddings; the prompt's states are the same in every row (expanded, a view).
    """
    B, L, D = tok.shape
    P = prompt.shape[0]
    dev = tok.device
    _register()
    x = torch.cat([prompt, tok.reshape(B * L, D)], 0)[None]  # (1, P + B L, D)
    pos = torch.cat([torch.arange(P, device=dev), P + torch.arange(L, device=dev).repeat(B)])[None]  # (1, T)
    prompt_mask, rows_mask = _masks(attention_mask, P, tok.dtype)
    cfg = lm.model.config
    impl = cfg._attn_implementation
    lay = {"P": P, "B": B, "L": L, "impl": impl, "prompt_mask": prompt_mask, "rows_mask": rows_mask}
    cfg._attn_implementation = NAME  # for this call only: the layers look their attention function up by name
    try:
        h = lm.model.base_model(inputs_embeds=x, position_ids=pos, use_cache=False, **{_KEY: lay})
    finally:
        cfg._attn_implementation = impl
    h = h.last_hidden_state  # (1, P + B L, D)
    return torch.cat([h[:, :P].expand(B, P, D), h[0, P:].view(B, L, D)], 1)  # (B, P + L, D)
