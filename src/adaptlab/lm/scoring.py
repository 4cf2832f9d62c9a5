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


def _pad(rows: Sequence[Sequence[int]], pad: int, left: bool, dev) -> tuple[Tensor, Tensor, list[int]]:
    """(B, L) ids, (B, L) mask and each row's offset, padded on the left or the right."""
    L = max(len(r) for r in rows)
    ids = torch.full((len(rows), L), pad, dtype=torch.long)
    mask = torch.zeros(len(rows), L, dtype=torch.long)
    offs = []
    for b, r in enumerate(rows):
        o = L - len(r) if left else 0
        ids[b, o:o + len(r)] = torch.tensor(list(r), dtype=torch.long)
        mask[b, o:o + len(r)] = 1
        offs.append(o)
    return ids.to(dev), mask.to(dev), offs


@torch.no_grad()
def grouped_logprobs(lm, contexts: Sequence[Sequence[int]], options: Sequence[Sequence[Sequence[int]]], *,
                     prefix_ids: Sequence[int] = (), batch_size: int = 32) -> list[list[Tensor]]:
    """Per-token log-probs of ``options[q][o]`` after ``prefix + contexts[q]``, each context run once.

    Three levels share work: the prefix runs once (its cache repeated over the batch), each question's context
    runs once per question (its cache repeated over its O options), and only the option tokens run per option.
    With single-token options (letters) the option pass is skipped: the context's last state scores them all.
    Equal to :func:`continuation_logprobs` on the concatenated sequences (tested).

    Args:
        contexts: Q token-id lists (non-empty unless BOS/prefix ids precede them). options: Q lists of the same
            number O of non-empty token-id lists. batch_size: option rows per forward pass.
    """
    Q = len(contexts)
    if len(options) != Q:
        raise ConfigError(f"contexts ({Q}) and options ({len(options)}) must have the same length")
    if Q == 0:
        return []
    O = len(options[0])
    if any(len(o) != O for o in options) or O == 0:
        raise ConfigError("every question needs the same, positive number of options")
    head = list(lm.bos_ids) + list(prefix_ids)
    for q in range(Q):
        longest = max(len(t) for t in options[q])
        if min(len(t) for t in options[q]) == 0:
            raise ConfigError(f"an option of question {q} is empty; every option needs at least one token")
        if not head and not contexts[q]:
            raise ConfigError(f"question {q} has no token before its options (empty prompt and no BOS)")
        if len(head) + len(contexts[q]) + longest > lm.max_length:
            raise ConfigError(f"question {q} has {len(head) + len(contexts[q]) + longest} tokens, longer than the "
                              f"model's context of {lm.max_length}; shorten the prompt or use fewer demonstrations")
    cache, h_last, p_len = encode_prefix(lm, head) if head else (None, None, 0)
    left, pad, dev = lm.tokenizer.padding_side == "left", lm.pad_id(), lm.device
    order = sorted(range(Q), key=lambda q: len(contexts[q]))
    per = max(1, batch_size // O)
    out: list[list[Tensor]] = [[] for _ in range(Q)]
    for s in range(0, Q, per):
        idx = order[s:s + per]
        B = len(idx)
        kv = None
        if cache is not None:
            kv = copy.deepcopy(cache)
            kv.batch_repeat_interleave(B)
        if all(contexts[q] for q in idx):
            ids, mask, offs = _pad([contexts[q] for q in idx], pad, left, dev)
            pos = (mask.cumsum(1) - 1).clamp(min=0) + p_len
            h, kv = base_forward(lm, kv, input_ids=ids, attention_mask=torch.cat([mask.new_ones(B, p_len), mask], 1),
                                 position_ids=pos)  # (B, Lc, D)
            last = h[torch.arange(B, device=dev), torch.tensor([o + len(contexts[q]) - 1 for o, q in
                                                                zip(offs, idx)], device=dev)]  # (B, D)
        else:  # an empty context somewhere: run rows one question at a time through the flat path
            for q in idx:
                flat = continuation_logprobs(lm, [contexts[q]] * O, options[q], prefix_ids=prefix_ids,
                                             batch_size=batch_size)
                out[q] = flat
            continue
        lens = torch.tensor([len(contexts[q]) for q in idx], device=dev)
        first_tok = torch.tensor([[options[q][o][0] for o in range(O)] for q in idx], device=dev)  # (B, O)
        first = torch.log_softmax(_head(lm, last).float(), -1).gather(1, first_tok)  # (B, O)
        longest = max(len(t) for q in idx for t in options[q])
        if longest == 1:
            for b, q in enumerate(idx):
                out[q] = [first[b, o:o + 1].cpu() for o in range(O)]
            continue
        kv.batch_repeat_interleave(O)  # rows (q0 o0, q0 o1, ..., q1 o0, ...)
        rows = [options[q][o][:-1] or [pad] for q in idx for o in range(O)]  # inputs predicting tokens 1..n-1
        oid, omask, _ = _pad(rows, pad, False, dev)  # right: option tokens follow their context directly
        for r, (q, o) in enumerate((q, o) for q in idx for o in range(O)):
            if len(options[q][o]) == 1:
                omask[r] = 0
        Lo = oid.shape[1]
        pos = p_len + lens.repeat_interleave(O)[:, None] + torch.arange(Lo, device=dev)  # (B*O, Lo)
        cmask = torch.cat([mask.new_ones(B, p_len), mask], 1).repeat_interleave(O, 0)
        ho, _ = base_forward(lm, kv, input_ids=oid, attention_mask=torch.cat([cmask, omask], 1), position_ids=pos)
        lp = torch.log_softmax(_head(lm, ho).float(), -1)  # (B*O, Lo, V)
        for b, q in enumerate(idx):
            for o in range(O):
                t = options[q][o]
                rest = lp[b * O + o, torch.arange(len(t) - 1, device=dev), torch.tensor(t[1:], device=dev,
                                                                                     dtype=torch.long)]
                out[q].append(torch.cat([first[b, o:o + 1], rest]).cpu())
    return out


def score_options(lm, prompts: Sequence[str], options: Sequence[Sequence[str]], *, prefix: str = "",
                  cache_prefix: bool = True, batch_size: int = 32) -> dict[str, Tensor]:
    """Score every option of every question as a continuation of ``prefix + prompt``.

    The prefix, each prompt and each option are tokenized separately and concatenated, so cached and uncached
    scoring see the same tokens. Use options like ``" A"`` for letter scoring and the answer text (``" Paris"``)
    for cloze scoring. With ``cache_prefix`` the work is shared by :func:`grouped_logprobs` (prefix once,
    each prompt once, option tokens per option); without, every (prompt, option) row is a full sequence.

    Args:
        lm: a :class:`~adaptlab.lm.load.CausalLM`.
        prompts: Q question prompts. options: Q lists of O option strings each (the same O for all).
        prefix: text shared by every prompt.
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
    enc_cache: dict[str, list[int]] = {}

    def enc(text: str) -> list[int]:
        if text not in enc_cache:
            enc_cache[text] = lm.encode(text)
        return enc_cache[text]

    pre = enc(prefix) if prefix else []
    Q = len(prompts)
    if cache_prefix:
        nested = grouped_logprobs(lm, [enc(p) for p in prompts], [[enc(o) for o in opts] for opts in options],
                                  prefix_ids=pre, batch_size=batch_size)
        lps = [x for row in nested for x in row]
    else:
        ctx = [enc(p) for p, opts in zip(prompts, options) for _ in opts]
        tgt = [enc(o) for opts in options for o in opts]
        lps = continuation_logprobs(lm, ctx, tgt, prefix_ids=pre, cache_prefix=False, batch_size=batch_size)
    logprob = torch.tensor([float(x.sum()) for x in lps], dtype=torch.float64).reshape(Q, O)
    n_tokens = torch.tensor([len(x) for x in lps], dtype=torch.long).reshape(Q, O)
    return {"logprob": logprob, "n_tokens": n_tokens}
