"""Soft prompts for a frozen causal LM (prompt tuning, Lester et al. 2021): init, masked loss, prefix caching.

A soft prompt is a ``(P, D)`` tensor fed before the input embeddings of a frozen LM (``inputs_embeds``); only the
prompt is trained. Every function takes the prompt as an explicit tensor argument, so ``torch.autograd.grad`` or
``torch.func.grad`` differentiate with respect to it (MAML over prompts needs nothing else). Works on any
HuggingFace causal LM with ``get_input_embeddings()``.

API (stable; the names and argument meanings below are what callers build on):

- ``init_prompt(lm, P, init="vocab", *, text=None, generator=None) -> Tensor (P, D)``: ``"uniform"``
  (U(-0.5, 0.5), Lester et al.), ``"vocab"`` (embeddings of P token ids drawn from the first 5000 of the
  vocabulary), ``"text"`` (the embeddings of ``text``'s tokens, repeated cyclically to length P: class labels or
  an instruction).
- ``Segment = (role, token_ids)``; an example is a list of segments, e.g. ``[("question", q), ("answer", a)]``.
- ``make_batch(lm, examples, loss_on) -> dict(input_ids (B, L), attention_mask (B, L), labels (B, L))``: right
  padded; ``labels[b, t]`` is the token id where the token at ``t`` belongs to a role in ``loss_on``, else -100.
  The labels are aligned with the tokens (not shifted): the shift is done once, in :func:`loss_positions`.
- ``loss_positions(labels, P) -> (rows, pred, target)``: over the full ``(B, P + L)`` sequence, the row, the
  position whose output predicts, and the target token of every token carrying loss (``pred = position - 1``).
  This is the one-position shift, in one place.
- ``prompt_hidden(prompt, lm, input_ids, attention_mask, *, cache_prefix=True) -> Tensor (B, P + L, D)``:
  last-layer states of ``[prompt, embed(input_ids)]``. With ``cache_prefix`` the prompt's keys and values at
  every layer are computed once, with the graph kept: ``"shared"`` packs the prompt and the rows into one
  sequence whose attention lets every row read the prompt's keys and values (one model call,
  :mod:`adaptlab.lm.shared_prefix`); ``"kv"`` runs the prompt at batch 1 and repeats its key/value cache over
  the batch (rebuilt on every call: transformers appends to a cache in place); ``True`` picks ``"shared"``
  where the model supports it.
- ``prompt_loss(prompt, lm, batch, *, cache_prefix=True) -> scalar``: mean cross-entropy over the tokens
  carrying loss (the LM head runs only at their predicting positions).
- ``next_token_logits(prompt, lm, contexts, *, cache_prefix=True) -> Tensor (B, V)``: the logits after
  ``prompt + context`` (single-token answers, letters).
- ``prompt_generate(prompt, lm, contexts, max_new_tokens, stop="\\n") -> list[str]``: greedy continuations.
- ``freeze(lm)``: ``requires_grad_(False)`` on every model parameter; ``SoftPrompt(prompt)``: an ``nn.Module``
  holding the prompt as a parameter, whose methods call the functions above (for ``fit``'s checkpoints).

``prompt`` may be ``None`` or ``(0, D)`` only where stated (hard-prompt baselines use the same code with
``P = 0``: :func:`prompt_hidden` and the functions on it accept an empty prompt).

Example (a tiny random GPT-2, no download)::

    >>> import torch
    >>> from adaptlab.lm.load import tiny_random_lm
    >>> lm = freeze(tiny_random_lm())
    >>> prompt = init_prompt(lm, 4, "uniform", generator=torch.Generator().manual_seed(0)).requires_grad_()
    >>> batch = make_batch(lm, [[("question", lm.encode("1+1=")), ("answer", lm.encode("2"))]], ["answer"])
    >>> loss = prompt_loss(prompt, lm, batch)
    >>> g, = torch.autograd.grad(loss, prompt)
    >>> tuple(g.shape), bool(loss > 0)
    ((4, 32), True)

References: Lester, Al-Rfou, Constant, "The Power of Scale for Parameter-Efficient Prompt Tuning", 2021.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from adaptlab.errors import ConfigError
from adaptlab.lm import shared_prefix
from adaptlab.lm.scoring import _head, base_forward

INITS = ("uniform", "vocab", "text")
CACHE_MODES = (True, False, "shared", "kv")  # cache_prefix values: see prompt_hidden
VOCAB_TOP = 5000  # "vocab" init draws from the first ids: BPE vocabularies put frequent tokens first (Lester 2021)


def input_embedding(lm):
    """The model's input embedding module; a model without one cannot take a soft prompt (ConfigError)."""
    get = getattr(lm.model, "get_input_embeddings", None)
    emb = get() if callable(get) else None
    if emb is None or not hasattr(emb, "weight"):
        raise ConfigError(f"model {getattr(lm, 'name', type(lm.model).__name__)!r} has no input embeddings "
                          "(get_input_embeddings() gave None); soft prompts need a causal LM that accepts "
                          "inputs_embeds")
    return emb


def freeze(lm):
    """Turn off gradients for every model parameter (the LM stays frozen); returns ``lm``."""
    for p in lm.model.parameters():
        p.requires_grad_(False)
    return lm


def check_length(P: int) -> int:
    if not isinstance(P, int) or isinstance(P, bool) or P <= 0:
        raise ConfigError(f"prompt length P={P!r} is invalid; expected a positive integer (soft tokens)")
    return P


def init_prompt(lm, P: int, init: str = "vocab", *, text: str | None = None,
                generator: torch.Generator | None = None) -> Tensor:
    """A ``(P, D)`` soft prompt: ``"uniform"`` U(-0.5, 0.5), ``"vocab"`` sampled token embeddings, or
    ``"text"``: the embeddings of ``text`` (e.g. the class labels ``" A B C D E"``), cycled to length P."""
    check_length(P)
    W = input_embedding(lm).weight.detach()  # (V, D)
    if init == "uniform":
        return torch.rand(P, W.shape[1], generator=generator, dtype=W.dtype).to(W.device) - 0.5
    if init == "vocab":
        ids = torch.randint(0, min(VOCAB_TOP, W.shape[0]), (P,), generator=generator)
        return W[ids.to(W.device)].clone()
    if init == "text":
        ids = lm.encode(text) if text else []
        if not ids:
            raise ConfigError(f"init='text' needs a non-empty text; got text={text!r}")
        return W[torch.tensor([ids[i % len(ids)] for i in range(P)], device=W.device)].clone()
    raise ConfigError(f"init={init!r} is invalid; expected one of {INITS}")


def make_batch(lm, examples: Sequence[Sequence[tuple[str, Sequence[int]]]], loss_on: Sequence[str]) -> dict:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (B, L) from segmented examples.

    ``labels`` copies the token id where the token's segment role is in ``loss_on`` and is -100 elsewhere
    (other roles and padding); it is not shifted. The BOS ids of the model (if any) start every row, no loss.

    Raises:
        ConfigError: no examples, or an example whose segments in ``loss_on`` hold no token.
    """
    if len(examples) == 0:
        raise ConfigError("make_batch got no examples; expected a non-empty list")
    want = set(loss_on)
    rows, labs = [], []
    for i, ex in enumerate(examples):
        ids, lab = list(lm.bos_ids), [-100] * len(lm.bos_ids)
        for role, toks in ex:
            toks = list(toks)
            ids += toks
            lab += toks if role in want else [-100] * len(toks)
        if all(v == -100 for v in lab):
            roles = sorted({r for r, _ in ex})
            raise ConfigError(f"example {i}: the loss mask selects no token (loss_on={sorted(want)}, the example "
                              f"has roles {roles} with tokens); put at least one target token under loss_on")
        rows.append(ids)
        labs.append(lab)
    L = max(len(r) for r in rows)
    B = len(rows)
    input_ids = torch.full((B, L), lm.pad_id(), dtype=torch.long)
    attention_mask = torch.zeros(B, L, dtype=torch.long)
    labels = torch.full((B, L), -100, dtype=torch.long)
    for b, (r, lab) in enumerate(zip(rows, labs)):
        input_ids[b, :len(r)] = torch.tensor(r)
        attention_mask[b, :len(r)] = 1
        labels[b, :len(r)] = torch.tensor(lab)
    dev = lm.device
    return {"input_ids": input_ids.to(dev), "attention_mask": attention_mask.to(dev), "labels": labels.to(dev)}


def loss_positions(labels: Tensor, P: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(rows, pred, target)`` of every token carrying loss in the full ``[P soft tokens, L tokens]`` sequence.

    The token at full position ``t = P + j`` (``labels[b, j] != -100``) is predicted by the output at
    ``t - 1``: ``pred = P + j - 1``. This is the only place the shift happens. A label at full position 0
    (no prompt, first token) has nothing before it and is refused.
    """
    rows, cols = (labels != -100).nonzero(as_tuple=True)  # (N,), (N,)
    if rows.numel() == 0:
        raise ConfigError("the loss mask selects no token; put at least one target token under loss_on")
    if P == 0 and bool((cols == 0).any()):
        raise ConfigError("a target token is the first token of its row (no prompt, no BOS): nothing predicts it")
    return rows, cols + P - 1, labels[rows, cols]


def _wide(x: Tensor) -> Tensor:
    """Logits in at least float32 (a half-precision model's logits are widened; float64 stays float64)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _as_prompt(prompt: Tensor | None, D: int, like: Tensor) -> Tensor:
    return like.new_zeros(0, D) if prompt is None else prompt


def _prefix_mode(cache_prefix: bool | str, lm, P: int, L: int) -> str:
    """``"none"``, ``"shared"`` or ``"kv"``: how :func:`prompt_hidden` computes the prompt's keys and values."""
    if not any(cache_prefix is m or (isinstance(m, str) and cache_prefix == m) for m in CACHE_MODES):
        raise ConfigError(f"cache_prefix={cache_prefix!r} is invalid; expected one of {CACHE_MODES}")
    if cache_prefix is False or P == 0:
        return "none"
    if cache_prefix is True:
        return "shared" if shared_prefix.supported(lm, P, L) else "kv"
    if cache_prefix == "shared" and not shared_prefix.supported(lm, P, L):
        raise ConfigError(f"cache_prefix='shared' needs a model whose layers use transformers' attention interface "
                          f"with attn_implementation in {shared_prefix.INNER} and no sliding window shorter than "
                          f"P + L = {P + L}; model {getattr(lm, 'name', '?')!r} has not: use True or 'kv'")
    return cache_prefix


def prompt_hidden(prompt: Tensor | None, lm, input_ids: Tensor, attention_mask: Tensor, *,
                  cache_prefix: bool | str = True) -> Tensor:
    """Last-layer hidden states ``(B, P + L, D)`` of ``[prompt, embed(input_ids)]`` (right padded rows).

    ``cache_prefix=False``: one forward over the concatenated embeddings, the prompt run in every row.
    The prompt's keys and values are the same in every row, so the cached modes compute them once:

    - ``"shared"`` (:mod:`adaptlab.lm.shared_prefix`): one model call over ``[prompt; row 1; ...; row B]``
      packed into one sequence, the prompt's keys and values read by every row's attention;
    - ``"kv"``: the prompt runs once at batch 1, its key/value cache is repeated over the batch
      (``repeat_interleave`` keeps the graph to the prompt) and the rows continue after it at positions
      ``P..P + L - 1`` (a second model call);
    - ``True``: ``"shared"`` where the model supports it (transformers' attention interface, sdpa or eager
      attention, no sliding window shorter than ``P + L``), else ``"kv"``.

    All give the same states and prompt gradients (tested).
    """
    emb = input_embedding(lm)
    tok = emb(input_ids)  # (B, L, D)
    B, L, D = tok.shape
    prompt = _as_prompt(prompt, D, tok)
    P = prompt.shape[0]
    if prompt.ndim != 2 or prompt.shape[1] != D:
        raise ConfigError(f"prompt has shape {tuple(prompt.shape)}; expected (P, {D}) for this model")
    prompt = prompt.to(tok.dtype)
    mode = _prefix_mode(cache_prefix, lm, P, L)
    if mode == "shared":
        return shared_prefix.shared_prefix_hidden(lm, prompt, tok, attention_mask)
    mask = torch.cat([attention_mask.new_ones(B, P), attention_mask], 1)  # (B, P + L)
    if mode == "none":
        x = torch.cat([prompt.expand(B, P, D), tok], 1)  # (B, P + L, D)
        pos = torch.arange(P + L, device=tok.device).expand(B, -1)
        h, _ = base_forward(lm, None, inputs_embeds=x, attention_mask=mask, position_ids=pos)
        return h
    hp, cache = base_forward(lm, None, inputs_embeds=prompt[None],
                             position_ids=torch.arange(P, device=tok.device)[None])  # (1, P, D)
    cache.batch_repeat_interleave(B)  # (1, ...) -> (B, ...) per layer, out of place: gradients reach the prompt
    pos = (P + torch.arange(L, device=tok.device)).expand(B, -1)
    ht, _ = base_forward(lm, cache, inputs_embeds=tok, attention_mask=mask, position_ids=pos)  # (B, L, D)
    return torch.cat([hp.expand(B, P, D), ht], 1)


def prompt_loss(prompt: Tensor | None, lm, batch: dict, *, cache_prefix: bool | str = True) -> Tensor:
    """Mean cross-entropy of the tokens carrying loss (``batch["labels"] != -100``) after the soft prompt.

    ``loss = -1/N sum_{(b, t) in mask} log softmax(W h_{b, t-1})[x_{b, t}]`` over the full sequence.
    """
    P = 0 if prompt is None else prompt.shape[0]
    h = prompt_hidden(prompt, lm, batch["input_ids"], batch["attention_mask"], cache_prefix=cache_prefix)
    rows, pred, target = loss_positions(batch["labels"], P)
    logits = _wide(_head(lm, h[rows, pred]))  # (N, V): the head only where loss is taken
    return torch.nn.functional.cross_entropy(logits, target)


def next_token_logits(prompt: Tensor | None, lm, contexts: Sequence[Sequence[int]], *,
                      cache_prefix: bool | str = True) -> Tensor:
    """``(B, V)`` logits of the token after ``prompt + BOS + contexts[b]`` (right padded, last real state)."""
    ex = [[("context", list(c) or [lm.pad_id()])] for c in contexts]
    batch = make_batch(lm, ex, ["context"])
    P = 0 if prompt is None else prompt.shape[0]
    h = prompt_hidden(prompt, lm, batch["input_ids"], batch["attention_mask"], cache_prefix=cache_prefix)
    last = P + batch["attention_mask"].sum(1) - 1  # (B,)
    return _wide(_head(lm, h[torch.arange(h.shape[0], device=h.device), last]))


@torch.no_grad()
def prompt_generate(prompt: Tensor | None, lm, contexts: Sequence[Sequence[int]], max_new_tokens: int = 32,
             stop: str = "\n") -> list[str]:
    """Greedy continuations of ``prompt + context`` (recomputed per token: short answers only), cut at ``stop``."""
    rows = [list(c) for c in contexts]
    out = [[] for _ in rows]
    live = list(range(len(rows)))
    for _ in range(max_new_tokens):
        if not live:
            break
        nxt = next_token_logits(prompt, lm, [rows[i] + out[i] for i in live]).argmax(-1).tolist()
        keep = []
        for i, t in zip(live, nxt):
            out[i].append(t)
            if stop not in lm.tokenizer.decode(out[i]) and t != lm.tokenizer.eos_token_id:
                keep.append(i)
        live = keep
    texts = [lm.tokenizer.decode(o) for o in out]
    return [t.split(stop)[0] if stop else t for t in texts]


class SoftPrompt(nn.Module):
    """A soft prompt as an ``nn.Module`` (for optimizers and ``fit``'s checkpoints); methods call the functions.

    >>> import torch
    >>> from adaptlab.lm.load import tiny_random_lm
    >>> lm = freeze(tiny_random_lm())
    >>> sp = SoftPrompt(init_prompt(lm, 3, "text", text="ab"))
    >>> batch = make_batch(lm, [[("q", lm.encode("x=")), ("a", lm.encode("1"))]], ["a"])
    >>> bool(sp.loss(lm, batch) > 0), sp.length
    (True, 3)
    """

    def __init__(self, prompt: Tensor):
        super().__init__()
        check_length(int(prompt.shape[0]))
        self.prompt = nn.Parameter(prompt.detach().clone())

    @property
    def length(self) -> int:
        return int(self.prompt.shape[0])

    def loss(self, lm, batch: dict, *, cache_prefix: bool | str = True) -> Tensor:
        return prompt_loss(self.prompt, lm, batch, cache_prefix=cache_prefix)

    def next_token_logits(self, lm, contexts, *, cache_prefix: bool | str = True) -> Tensor:
        return next_token_logits(self.prompt, lm, contexts, cache_prefix=cache_prefix)

    def generate(self, lm, contexts, max_new_tokens: int = 32, stop: str = "\n") -> list[str]:
        return prompt_generate(self.prompt.detach(), lm, contexts, max_new_tokens, stop)
