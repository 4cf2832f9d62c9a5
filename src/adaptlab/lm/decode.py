"""Greedy and sampled generation (temperature, nucleus/top-p) with a key/value cache, batched.

At each step the next token is ``argmax_v z_v`` (greedy) or drawn from

    p_v ∝ exp(z_v / T) restricted to the nucleus N_p = the smallest set of most likely tokens with mass >= p,

renormalised (Holtzman et al.). Prompts of a batch are padded on the left (whatever the tokenizer's own side,
so every row's next token sits in the last column); the attention mask hides the padding and positions count
real tokens only. A row stops at the EOS token (or after ``max_new_tokens``).

Example (a tiny random GPT-2, no download)::

    >>> import torch
    >>> from adaptlab.lm.load import tiny_random_lm
    >>> lm = tiny_random_lm()
    >>> out = generate(lm, ["abc", "hello"], max_new_tokens=4)
    >>> len(out), all(isinstance(t, str) for t in out)
    (2, True)
    >>> top_p_filter(torch.tensor([0.5, 0.3, 0.2]), 0.7).tolist()  # 0.5 < 0.7 <= 0.5 + 0.3
    [0.625, 0.375, 0.0]

References:
    A. Holtzman, J. Buys, L. Du, M. Forbes, Y. Choi. The curious case of neural text degeneration. ICLR 2020.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from adaptlab.errors import ConfigError


def top_p_filter(probs: Tensor, top_p: float) -> Tensor:
    """Keep the smallest set of most likely entries whose mass is >= ``top_p`` (last dim), renormalised.

    Ties at the boundary are broken by sort order. ``top_p >= 1`` keeps every entry with nonzero probability.
    """
    if not 0 < top_p <= 1:
        raise ConfigError(f"top_p={top_p!r} is invalid; expected a number in (0, 1]")
    sorted_p, order = probs.sort(-1, descending=True)
    before = sorted_p.cumsum(-1) - sorted_p  # mass strictly before each entry
    keep_sorted = before < top_p  # the first entry always kept; stop once the mass reached top_p
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    kept = probs * keep
    return kept / kept.sum(-1, keepdim=True)


def next_token(logits: Tensor, *, do_sample: bool, temperature: float = 1.0, top_p: float = 1.0,
               generator: torch.Generator | None = None) -> Tensor:
    """(B, V) logits -> (B,) token ids: argmax, or a draw at ``temperature`` from the top-p nucleus."""
    if not do_sample:
        return logits.argmax(-1)
    if not temperature > 0:
        raise ConfigError(f"temperature={temperature!r} is invalid with sampling; expected a number > 0 "
                          "(use greedy decoding, do_sample=False, for temperature 0)")
    probs = torch.softmax(logits.double() / temperature, -1)  # float64: T -> 0 must not overflow to NaN
    probs = top_p_filter(probs, top_p)
    return torch.multinomial(probs.float().cpu(), 1, generator=generator)[:, 0].to(logits.device)


def generate_ids(lm, prompts: Sequence[Sequence[int]], *, max_new_tokens: int = 16, do_sample: bool = False,
                 temperature: float = 1.0, top_p: float = 1.0, generator: torch.Generator | None = None,
                 stop_at_eos: bool = True, prefix_ids: Sequence[int] = ()) -> list[list[int]]:
    """New token ids after ``BOS + prefix_ids + prompt`` for each prompt (token ids). See :func:`generate`.

    The shared ``prefix_ids`` run once; their key/value cache is repeated over the batch.
    """
    return _decode(lm, prompts, max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature,
                   top_p=top_p, generator=generator, stop_at_eos=stop_at_eos, prefix_ids=prefix_ids)[0]


@torch.no_grad()
def _decode(lm, prompts: Sequence[Sequence[int]], *, max_new_tokens: int, do_sample: bool = False,
            temperature: float = 1.0, top_p: float = 1.0, generator: torch.Generator | None = None,
            stop_at_eos: bool = True, prefix_ids: Sequence[int] = (), score_ids: Sequence[int] = ()
            ) -> tuple[list[list[int]], Tensor | None]:
    """:func:`generate_ids`, plus the log-probabilities of the tokens ``score_ids`` at the first step
    ((B, len(score_ids)), read from the same logits the first token is chosen from; None when empty)."""
    if max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens={max_new_tokens!r} is invalid; expected a positive integer")
    if do_sample and not temperature > 0:
        next_token(torch.zeros(1, 1), do_sample=True, temperature=temperature)  # raises the one-line error
    from adaptlab.lm.scoring import _head, base_forward, encode_prefix

    head = list(lm.bos_ids) + list(prefix_ids)
    rows = [list(p) for p in prompts]
    for i, r in enumerate(rows):
        if not r:
            raise ConfigError(f"prompt {i} is empty; give it some text")
        if len(head) + len(r) + max_new_tokens > lm.max_length:
            raise ConfigError(f"prompt {i} has {len(head) + len(r)} tokens; with max_new_tokens={max_new_tokens} "
                              f"that is longer than the model's context of {lm.max_length}")
    if not rows:
        return [], None
    dev, pad, eos = lm.device, lm.pad_id(), lm.tokenizer.eos_token_id
    B, L = len(rows), max(len(r) for r in rows)
    ids = torch.full((B, L), pad, dtype=torch.long)
    mask = torch.zeros(B, L, dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, L - len(r):] = torch.tensor(r)
        mask[b, L - len(r):] = 1
    ids, mask = ids.to(dev), mask.to(dev)
    cache, p_len = None, 0
    if head:
        cache, _, p_len = encode_prefix(lm, head)
        cache.batch_repeat_interleave(B)
    pos = (mask.cumsum(1) - 1).clamp(min=0) + p_len  # (B, L)
    mask = torch.cat([mask.new_ones(B, p_len), mask], 1)  # (B, P + L): left pads sit between prefix and prompt
    new = torch.empty(B, 0, dtype=torch.long, device=dev)
    done = torch.zeros(B, dtype=torch.bool, device=dev)
    scores = None
    for step in range(max_new_tokens):
        h, cache = base_forward(lm, cache, input_ids=ids, attention_mask=mask, position_ids=pos)
        logits = _head(lm, h[:, -1]).float()  # (B, V)
        if step == 0 and len(score_ids):
            scores = torch.log_softmax(logits, -1)[:, torch.tensor(list(score_ids), device=dev)].cpu()  # (B, S)
        tok = next_token(logits, do_sample=do_sample, temperature=temperature, top_p=top_p,
                         generator=generator)  # (B,)
        tok = torch.where(done, torch.full_like(tok, pad), tok)
        new = torch.cat([new, tok[:, None]], 1)
        if stop_at_eos and eos is not None:
            done = done | (tok == eos)
            if bool(done.all()):
                break
        ids, pos = tok[:, None], pos[:, -1:] + 1
        mask = torch.cat([mask, mask.new_ones(B, 1)], 1)
    result = []
    for b in range(B):
        r = new[b].tolist()
        if stop_at_eos and eos is not None and eos in r:
            r = r[:r.index(eos)]
        result.append(r)
    return result, scores


def generate(lm, prompts: Sequence[str], *, max_new_tokens: int = 16, do_sample: bool = False,
             temperature: float = 1.0, top_p: float = 1.0, generator: torch.Generator | None = None,
             batch_size: int = 16, prefix: str = "") -> list[str]:
    """Continue ``prefix + prompt`` for each prompt; returns the decoded new text (EOS and what follows removed).

    Args:
        lm: a :class:`~adaptlab.lm.load.CausalLM`. prompts: the texts to continue.
        prefix: text shared by all prompts (instruction, demonstrations), encoded once.
        max_new_tokens: tokens to generate at most.
        do_sample: False = greedy (argmax); True = sample at ``temperature`` (> 0) from the ``top_p`` nucleus.
        generator: the random stream of the draws (CPU).
        batch_size: prompts per batch.

    Raises:
        ConfigError: temperature <= 0 with sampling, top_p outside (0, 1], or a prompt that with
            ``max_new_tokens`` exceeds the model's context.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} is invalid; expected a positive integer")
    enc = [lm.encode(p) for p in prompts]
    pre = lm.encode(prefix) if prefix else []
    out: list[str] = []
    for s in range(0, len(enc), batch_size):
        for r in generate_ids(lm, enc[s:s + batch_size], max_new_tokens=max_new_tokens, do_sample=do_sample,
                              temperature=temperature, top_p=top_p, generator=generator, prefix_ids=pre):
            out.append(lm.tokenizer.decode(r, skip_special_tokens=True))
    return out


def generate_scored(lm, prompts: Sequence[str], options: Sequence[str], *, prefix: str = "",
                    max_new_tokens: int = 2, batch_size: int = 16) -> tuple[list[str], Tensor]:
    """Greedy answers and the log-probability of each single-token option as the next token, in one pass.

    The first greedy token is the argmax of the same logits the options are scored from, so the prompt runs
    through the model once for both (the scored read and the generated read of a lettered strategy);
    equal to :func:`generate` plus :func:`~adaptlab.lm.scoring.score_options` (tested).

    Args:
        options: O option strings (``" A"``, ``" B"``, ...), each exactly one token, shared by every prompt.

    Returns:
        ``(texts, logprob)``: the decoded new text per prompt and a (Q, O) float64 tensor.

    Raises:
        ConfigError: an option that is not exactly one token (score it with ``score_options``), or what
            :func:`generate` refuses.

    >>> from adaptlab.lm.load import tiny_random_lm
    >>> texts, lp = generate_scored(tiny_random_lm(), ["Q: 1+1=", "Q: 2+2="], ["2", "4"], max_new_tokens=2)
    >>> len(texts), tuple(lp.shape)
    (2, (2, 2))
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} is invalid; expected a positive integer")
    ids = [lm.encode(o) for o in options]
    bad = [o for o, i in zip(options, ids) if len(i) != 1]
    if bad or not ids:
        raise ConfigError(f"options {bad or list(options)!r} are not one token each; expected a non-empty list of "
                          "single-token options (score longer ones with score_options)")
    enc = [lm.encode(p) for p in prompts]
    pre = lm.encode(prefix) if prefix else []
    texts: list[str] = []
    parts = []
    for s in range(0, len(enc), batch_size):
        new, lp = _decode(lm, enc[s:s + batch_size], max_new_tokens=max_new_tokens, prefix_ids=pre,
                          score_ids=[i[0] for i in ids])
        texts += [lm.tokenizer.decode(r, skip_special_tokens=True) for r in new]
        parts.append(lp)
    logprob = torch.cat(parts).double() if parts else torch.empty(0, len(ids), dtype=torch.float64)
    return texts, logprob
