"""What the soft-prompt experiments share: the model, prompt training through ``fit``, PEFT's prompt tuning as the
peer, single-token accuracy and failure-token statistics.

Training draws batches as a seeded permutation per epoch (``derive_seed(seed, 100 + epoch)``), computed from the
step alone, so a resumed run sees the same batches without a generator in the checkpoint.
"""

from __future__ import annotations

import random
import warnings
from collections import Counter
from collections.abc import Callable, Sequence

import torch

from adaptlab.engine import derive_seed, fit, make_optimizer
from adaptlab.errors import DataError

TINY = "tiny-random"
PEFT_INSTALL = "pip install 'adaptlab[softprompt]'  (peft)"
UNINFORMATIVE = ("the", " the", ",", ".", "\n", " ", " a")  # what a failing LM falls back to (HW 4b(vi))


def load_model(name: str, seed: int = 0, device: str = "cpu"):
    """The frozen LM: ``"tiny-random"`` (a random 2-layer GPT-2, for quick forms) or any name/folder."""
    from adaptlab.lm.load import load_causal_lm, tiny_random_lm
    from adaptlab.lm.softprompt import freeze

    lm = tiny_random_lm(n_positions=1024, seed=seed) if name == TINY else load_causal_lm(name, device=device)
    return freeze(lm)


def check_model(name: str):
    """The model can be found before a run folder exists. SmolLM2 (its wheel is there) and the tiny model give
    None; any other name is loaded here, so a bad name or a model without input embeddings fails in one line,
    and the loaded model is returned for the experiment's own token checks."""
    from adaptlab.lm.load import SMOLLM2, smollm2_gguf
    from adaptlab.lm.softprompt import input_embedding

    try:
        import transformers  # noqa: F401
    except ModuleNotFoundError:
        raise DataError("soft prompts need transformers; run: pip install 'adaptlab[lm]'") from None
    if name == SMOLLM2:
        smollm2_gguf()
        return None
    if name == TINY:
        return None
    lm = load_model(name)
    input_embedding(lm)
    return lm


def check_peft() -> None:
    try:
        import peft  # noqa: F401
    except ModuleNotFoundError:
        raise DataError(f"the PEFT comparison needs peft; run: {PEFT_INSTALL} (or set peft=false)") from None


def order(n: int, batch_size: int, seed: int, step: int) -> list[int]:
    """Example indices of training step ``step``: epoch-wise seeded permutations, batches of ``batch_size``."""
    per = max(1, n // batch_size)
    epoch, k = divmod(step, per)
    perm = list(range(n))
    random.Random(derive_seed(seed, 100 + epoch % 800)).shuffle(perm)
    return perm[k * batch_size:(k + 1) * batch_size]


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, n // batch_size)


def train_prompt(lm, prompt0: torch.Tensor, batches: Callable[[int], dict], *, steps: int, lr: float,
                 evaluate: Callable[[torch.Tensor], dict] | None = None, eval_every: int = 0, checkpoint=None,
                 cache_prefix: bool = True, optimizer: str = "adam") -> tuple[torch.Tensor, dict]:
    """Adam on a soft prompt through :func:`adaptlab.engine.fit`; ``history["eval"]`` holds ``evaluate(prompt)``
    with its ``step`` at step 0, every ``eval_every`` steps and at the end."""
    from adaptlab.lm.softprompt import SoftPrompt

    sp = SoftPrompt(prompt0)
    opt = make_optimizer(sp.parameters(), optimizer, lr)
    history: dict = {"eval": []}

    def cb(step, hist):
        if evaluate is not None and (step == 0 or step == steps or (eval_every and step % eval_every == 0)):
            with torch.no_grad():
                hist["eval"].append({"step": step, **evaluate(sp.prompt.detach())})

    fit(lambda b: sp.loss(lm, b, cache_prefix=cache_prefix), batches, steps=steps, optimizer=opt,
        modules={"prompt": sp}, history=history, checkpoint=checkpoint, callbacks=[cb])
    return sp.prompt.detach().clone(), history


def peft_train(lm, prompt0: torch.Tensor, batches: Callable[[int], dict], *, steps: int, lr: float,
               evaluate: Callable[[torch.Tensor], dict] | None = None, eval_every: int = 0, checkpoint=None
               ) -> tuple[torch.Tensor, dict]:
    """The same training with PEFT's prompt tuning (``PromptTuningConfig``), started from the same prompt.

    PEFT prepends its virtual tokens and computes the model's own shifted loss on ``labels``; the trained
    embedding table is returned as a ``(P, D)`` prompt, evaluated by our code (same function as ours).
    """
    check_peft()
    from peft import PromptTuningConfig, get_peft_model

    P = int(prompt0.shape[0])
    with warnings.catch_warnings():  # peft calls transformers' deprecated is_gradient_checkpointing
        warnings.simplefilter("ignore", FutureWarning)
        model = get_peft_model(lm.model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P))
    table = model.prompt_encoder["default"].embedding
    with torch.no_grad():
        table.weight.copy_(prompt0)
    opt = make_optimizer(table.parameters(), "adam", lr)
    history: dict = {"eval": []}

    def cb(step, hist):
        if evaluate is not None and (step == 0 or step == steps or (eval_every and step % eval_every == 0)):
            with torch.no_grad():
                hist["eval"].append({"step": step, **evaluate(table.weight.detach().clone())})

    def step_fn(b):
        return model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"]).loss

    try:
        fit(step_fn, batches, steps=steps, optimizer=opt, modules={"peft_prompt": table}, history=history,
            checkpoint=checkpoint, callbacks=[cb])
    finally:
        lm.model = model.get_base_model()  # unwrap: the frozen LM is used again by the other stages
    return table.weight.detach().clone(), history


@torch.no_grad()
def predict_next(lm, prompt: torch.Tensor | None, contexts: Sequence[Sequence[int]], batch_size: int = 32,
                 allowed: Sequence[int] | None = None) -> list[int]:
    """Greedy next token after ``prompt + context`` for each context (restricted to ``allowed`` ids if given)."""
    from adaptlab.lm.softprompt import next_token_logits

    out: list[int] = []
    for s in range(0, len(contexts), batch_size):
        logits = next_token_logits(prompt, lm, contexts[s:s + batch_size])  # (B, V)
        if allowed is not None:
            ids = torch.tensor(list(allowed), device=logits.device)
            out += ids[logits[:, ids].argmax(-1)].tolist()
        else:
            out += logits.argmax(-1).tolist()
    return out


def hard_prompt(text: str, lm) -> torch.Tensor | None:
    """The token embeddings of ``text`` as a ``(P, D)`` prompt (None for no text): fed through the soft-prompt
    path it is exactly the hard prompt ``text`` (the same inputs_embeds), and its keys and values are computed
    once per batch by the prefix cache instead of once per row."""
    from adaptlab.lm.softprompt import input_embedding

    ids = lm.encode(text) if text else []
    return input_embedding(lm).weight[torch.tensor(ids, device=lm.device)].detach() if ids else None


def unigram_ranks(lm, texts: Sequence[str]) -> dict[int, int]:
    """Rank (1 = most frequent) of each token id in ``texts`` tokenized by the model's tokenizer."""
    counts: Counter = Counter()
    for t in texts:
        counts.update(lm.encode(" " + t))
    return {tok: r + 1 for r, (tok, _) in enumerate(counts.most_common())}


def failure_stats(lm, preds: Sequence[int], targets: Sequence[int], ranks: dict[int, int]) -> dict:
    """What the model predicts when wrong: share of uninformative tokens, their corpus unigram ranks, top tokens."""
    wrong = [(p, t) for p, t in zip(preds, targets) if p != t]
    uninf = {tid for s in UNINFORMATIVE for tid in lm.encode(s)[:1] if len(lm.encode(s)) == 1}
    unseen = len(ranks) + 1
    if not wrong:
        return {"n_wrong": 0, "uninformative_share": 0.0, "median_rank_wrong": 0, "median_rank_target": 0,
                "top20_share": 0.0, "top_wrong": []}
    rk = sorted(ranks.get(p, unseen) for p, _ in wrong)
    rt = sorted(ranks.get(t, unseen) for _, t in wrong)
    top = Counter(p for p, _ in wrong).most_common(5)
    return {"n_wrong": len(wrong), "uninformative_share": sum(p in uninf for p, _ in wrong) / len(wrong),
            "median_rank_wrong": rk[len(rk) // 2], "median_rank_target": rt[len(rt) // 2],
            "top20_share": sum(r <= 20 for r in rk) / len(rk),
            "top_wrong": [[lm.tokenizer.decode([t]), c] for t, c in top]}
