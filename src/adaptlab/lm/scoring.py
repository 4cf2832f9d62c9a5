"""Batched log-probabilities of continuations, with a shared prefix encoded once (prefix caching).

For a context ``c`` and a continuation ``y = (y_1..y_n)`` the score is

    log p(y | c) = sum_t log softmax(W h_{t-1})[y_t],

where ``h_{t-1}`` is the last-layer hidden state at the token before ``y_t`` and ``W`` the LM head. Sequences of a
batch are padded on the tokenizer's side; the attention mask hides the padding and the position ids are counted
over real tokens only (``cumsum(mask) - 1``), so a left-padded row gets the same positions as the unpadded
sequence (GPT-2's absolute positions need this; rotary models too). The LM head is applied only at the scored
positions: with a 262k vocabulary (Gemma) the full ``(B, L, V)`` logits would dominate the cost.

With ``prefix`` (an instruction plus demonstrations shared by every question) the prefix runs once; its key/value
cache is repeated across the batch and each row continues after it (positions start at the prefix length).

Example (a tiny random GPT-2, no download)::

    >>> from adaptlab.lm.load import tiny_random_lm
    >>> lm = tiny_random_lm()
    >>> s = score_options(lm, ["Q: 1+1=", "Q: 2+2="], [[" 2", " 3"], [" 4", " 5"]], prefix="Math.\\n")
    >>> s["logprob"].shape, bool((s["logprob"] < 0).all()), s["n_tokens"].tolist()
    (torch.Size([2, 2]), True, [[2, 2], [2, 2]])
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence

import torch
from torch import Tensor

from adaptlab.errors import ConfigError


def _head(lm, hidden: Tensor) -> Tensor:
    """Logits from last-layer hidden states, with Gemma-2-style final soft-capping where the config has it."""
    logits = lm.model.get_output_embeddings()(hidden)
    cap = getattr(lm.model.config, "final_logit_softcapping", None)
    return logits if not cap else cap * torch.tanh(logits / cap)


def base_forward(lm, cache=None, **kwargs):
    """``(last_hidden_state, cache)`` of the model body; the key/value cache keyword is ``cache`` in recent
    transformers (``past_key_values`` before), whichever the model's ``forward`` takes."""
    base = lm.model.base_model
    name = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
    out = base(**kwargs, **{name: cache}, use_cache=True)
    new = getattr(out, "past_key_values", None)
    return out.last_hidden_state, (new if new is not None else getattr(out, "cache", None))


def encode_prefix(lm, prefix_ids: Sequence[int]):
    """Run ``prefix_ids`` once: ``(cache, last_hidden (D,), length)`` for :func:`continuation_logprobs`."""
    ids = torch.tensor([list(prefix_ids)], device=lm.device)  # (1, P)
    h, cache = base_forward(lm, input_ids=ids)
    return cache, h[0, -1], ids.shape[1]


@torch.no_grad()
def continuation_logprobs(lm, contexts: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], *,
                          prefix_ids: Sequence[int] = (), cache_prefix: bool = True, batch_size: int = 32
                          ) -> list[Tensor]:
    """Per-token log-probabilities of ``targets[i]`` after ``prefix_ids + contexts[i]`` (token ids).

    Args:
        lm: a :class:`~adaptlab.lm.load.CausalLM`; its ``bos_ids`` start every sequence.
        contexts, targets: equal-length lists of token-id lists; every target is non-empty.
        prefix_ids: ids shared by all rows, placed after the BOS. cache_prefix: encode them once (True) or
            repeat them in every row (False, the reference).
        batch_size: rows per forward pass (rows are sorted by length first, so padding stays small).

    Returns:
        ``[Tensor (len(targets[i]),)]`` of log-probabilities, in input order.

    Raises:
        ConfigError: an empty target, a target with no token before it, or a sequence longer than the context.
    """
    if len(contexts) != len(targets):
        raise ConfigError(f"contexts ({len(contexts)}) and targets ({len(targets)}) must have the same length")
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} is invalid; expected a positive integer")
    head = list(lm.bos_ids) + list(prefix_ids)
    cached = cache_prefix and len(head) > 0
    rows = [(list(c) if cached else head + list(c)) for c in contexts]
    for i, (r, t) in enumerate(zip(rows, targets)):
        total = len(r) + len(t) + (len(head) if cached else 0)
        if len(t) == 0:
            raise ConfigError(f"target {i} is empty; every continuation needs at least one token")
        if len(r) == 0 and not cached:
            raise ConfigError(f"target {i} has no token before it (empty prompt and no BOS); add a prompt")
        if total > lm.max_length:
            raise ConfigError(f"sequence {i} has {total} tokens, longer than the model's context of "
                              f"{lm.max_length}; shorten the prompt or use fewer demonstrations")
    p_len, cache, h_last = 0, None, None
    if cached:
        cache, h_last, p_len = encode_prefix(lm, head)
    left = lm.tokenizer.padding_side == "left"
    pad = lm.pad_id()
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]) + len(targets[i]))
    out: list[Tensor | None] = [None] * len(rows)
    dev = lm.device
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        seqs = [rows[i] + list(targets[i]) for i in idx]
        L = max(len(q) for q in seqs)
        B = len(idx)
        ids = torch.full((B, L), pad, dtype=torch.long)
        mask = torch.zeros(B, L, dtype=torch.long)
        offs = []
        for b, q in enumerate(seqs):
            o = L - len(q) if left else 0
            ids[b, o:o + len(q)] = torch.tensor(q)
            mask[b, o:o + len(q)] = 1
            offs.append(o)
        ids, mask = ids.to(dev), mask.to(dev)
        pos = (mask.cumsum(1) - 1).clamp(min=0) + p_len  # (B, L): real tokens counted, after the prefix
        kv = None
        if cached:  # a fresh copy per batch: the forward appends this batch's keys and values to it
            kv = copy.deepcopy(cache)
            kv.batch_repeat_interleave(B)
        full_mask = torch.cat([mask.new_ones(B, p_len), mask], 1)  # (B, P + L)
        h, _ = base_forward(lm, kv, input_ids=ids, attention_mask=full_mask, position_ids=pos)  # (B, L, D)
        first = (h_last if cached else h.new_zeros(h.shape[-1])).expand(B, 1, -1)
        h = torch.cat([first, h], 1)  # (B, 1 + L, D): column j + 1 predicts the token at row position j + 1
        rb, rp, tok, sizes = [], [], [], []
        for b, i in enumerate(idx):
            start = offs[b] + len(rows[i])  # row position of the first target token
            n = len(targets[i])
            rb += [b] * n
            cols = list(range(start, start + n))  # column start + t of h holds the state before target token t
            if len(rows[i]) == 0:  # (cached prefix, empty context) the first target follows the prefix itself;
                cols[0] = 0  # with left padding column `start` would be a pad, so take the prefix's last state
            rp += cols
            tok += list(targets[i])
            sizes.append(n)
        logits = _head(lm, h[torch.tensor(rb, device=dev), torch.tensor(rp, device=dev)])  # (N, V)
        lp = torch.log_softmax(logits.float(), -1).gather(1, torch.tensor(tok, device=dev)[:, None])[:, 0]
        for i, piece in zip(idx, lp.split(sizes)):
            out[i] = piece.cpu()
    return out  # type: ignore[return-value]


def score_options(lm, prompts: Sequence[str], options: Sequence[Sequence[str]], *, prefix: str = "",
                  cache_prefix: bool = True, batch_size: int = 32) -> dict[str, Tensor]:
    """Score every option of every question as a continuation of ``prefix + prompt``.

    The prefix, each prompt and each option are tokenized separately and concatenated, so cached and uncached
    scoring see the same tokens. Use options like ``" A"`` for letter scoring and the answer text (``" Paris"``)
    for cloze scoring.

    Args:
        lm: a :class:`~adaptlab.lm.load.CausalLM`.
        prompts: Q question prompts. options: Q lists of O option strings each (the same O for all).
        prefix: text shared by every prompt (encoded once when ``cache_prefix``).
        batch_size: (question, option) rows per forward pass.

    Returns:
        ``{"logprob": (Q, O) summed log-probabilities, "n_tokens": (Q, O) token counts}``.
    """
    if len(prompts) != len(options):
        raise ConfigError(f"prompts ({len(prompts)}) and options ({len(options)}) must have the same length")
    n_opt = {len(o) for o in options}
    if len(n_opt) > 1:
        raise ConfigError(f"every question needs the same number of options; got {sorted(n_opt)}")
    O = n_opt.pop() if n_opt else 0
    ctx, tgt = [], []
    enc_cache: dict[str, list[int]] = {}

    def enc(text: str) -> list[int]:
        if text not in enc_cache:
            enc_cache[text] = lm.encode(text)
        return enc_cache[text]

    for p, opts in zip(prompts, options):
        for o in opts:
            ctx.append(enc(p))
            tgt.append(enc(o))
    lps = continuation_logprobs(lm, ctx, tgt, prefix_ids=enc(prefix) if prefix else (), cache_prefix=cache_prefix,
                                batch_size=batch_size)
    Q = len(prompts)
    logprob = torch.tensor([float(x.sum()) for x in lps], dtype=torch.float64).reshape(Q, O)
    n_tokens = torch.tensor([len(x) for x in lps], dtype=torch.long).reshape(Q, O)
    return {"logprob": logprob, "n_tokens": n_tokens}
