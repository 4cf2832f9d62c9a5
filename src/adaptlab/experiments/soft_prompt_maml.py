"""MAML over soft prompts (HW 5d): meta-learn a soft-prompt initialisation for a family of word-level tasks.

A task type is one of :data:`adaptlab.data.wordtasks.WORD_TASKS` (plural, past tense, capital of, English ->
Spanish, ...); a *task* is an episode of it: ``n_support`` (input, target) pairs to tune a soft prompt on and
``n_query`` pairs to score it on. Each example reads ``[soft prompt] "{input} ->"`` and the target is the next
token ``" {target}"`` (pairs whose target is not one token of the model's tokenizer are dropped), so a task is
a P x D prompt tuned by plain gradient steps on the next-token cross-entropy of a frozen LM:

    p_{k+1} = p_k - alpha * grad_p CE(LM([p_k; embed(x)]), y)        (the MAML core's inner update)

Initialisations of p_0, all meta-trained on the ``train_tasks`` types and meta-tested on the held-out
``test_tasks`` types:

* ``vocab``: P embeddings of tokens drawn from the 5000 first ids (Lester et al. 2021); the others start here.
* ``fomaml``: first-order MAML through :func:`adaptlab.meta.maml.maml_meta_loss` (per-task path,
  ``vectorize=False``: a HuggingFace LM does not vmap), Adam on the meta-gradient.
* ``reptile``: Reptile, Adam on the direction ``p - p_K`` averaged over the tasks of a step.
* ``multitask``: one prompt trained on batches pooled over all meta-training types (no inner loop).

Meta-test: for every held-out episode each init is tuned with k = 0..max(ks) steps on the support pairs and
scored on the query pairs (accuracy of the arg-max next token over the whole vocabulary), next to few-shot hard
prompting (the support pairs as ``"{input} -> {target}"`` demonstrations) and the zero-shot hard prompt. CIs are
over episodes (paired differences for init vs vocab; Student t).

Second-order MAML (``train.first_order=false``) differentiates through the inner gradient: torch's CPU SDPA
attention kernel has no double backward, so the model is switched to eager attention for it. The default is
first order: it is exact enough for a few inner steps, keeps no graph through the inner loop, and on this CPU
each second-order step costs several first-order ones.

The prompt's init, freezing and embedding lookup come from the soft-prompt core (:mod:`adaptlab.lm.softprompt`).
Its forward takes one prompt per call; here :func:`prompt_forward` takes one prompt *per episode*, so that the E
episodes of a meta-step or of the meta-test are tuned as one batch (one forward instead of E; on two loaded cores
the fixed cost of a 30-layer forward dominates these 4-token inputs). Each prompt's keys and values are computed
once and expanded over its rows (prefix caching, as in the core), with the graph kept so gradients reach it.

``model=tiny-random`` (the quick form) is a random 2-layer GPT-2 with a character tokenizer: there the target
is the first token of ``" {target}"`` (a space), so its numbers are a smoke test, nothing more.

References:
    Lester, Al-Rfou, Constant. The Power of Scale for Parameter-Efficient Prompt Tuning. EMNLP 2021.
    Finn, Abbeel, Levine. Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks. ICML 2017.
    Nichol, Achiam, Schulman. On First-Order Meta-Learning Algorithms (Reptile). 2018.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from adaptlab.config import BaseConfig, check
from adaptlab.eval.stats import mean_t_ci95
from adaptlab.io import progress, save_figure
from adaptlab.runner import Experiment, Stages

TINY = "tiny-random"
INITS = ("vocab", "fomaml", "reptile", "multitask")
LABELS = {"vocab": "vocabulary init", "fomaml": "first-order MAML", "reptile": "Reptile",
          "multitask": "multi-task prompt", "fewshot": "few-shot hard prompt", "zeroshot": "zero-shot hard prompt"}
TRAIN_TASKS = ("plural", "past", "gerund", "third", "capital", "number", "supersense", "es_en")
TEST_TASKS = ("comparative", "superlative", "country", "ordinal")
COLORS = {"vocab": "tab:gray", "fomaml": "tab:blue", "reptile": "tab:green", "multitask": "tab:orange",
          "fewshot": "tab:red", "zeroshot": "tab:purple"}


@dataclass
class TrainConfig:
    steps: int = 40  # meta-steps of FOMAML and of Reptile, and steps of the multi-task prompt (sized for 2 cores)
    lr: float = 5e-3  # Adam, on the meta-gradient (FOMAML), the Reptile direction and the multi-task loss
    tasks_per_step: int = 2  # episodes per meta-step (the multi-task prompt sees as many pairs per step)
    first_order: bool = True  # False: second-order MAML (eager attention, several times slower on CPU)
    checkpoint_every: int = 10  # steps between checkpoints (--resume)

    def __post_init__(self) -> None:
        check(0 <= self.steps <= 100_000, "train.steps", self.steps, "an integer in 0..100000")
        check(0 < self.lr <= 1, "train.lr", self.lr, "a number in (0, 1]")
        check(1 <= self.tasks_per_step <= 64, "train.tasks_per_step", self.tasks_per_step, "an integer in 1..64")
        check(1 <= self.checkpoint_every <= 100_000, "train.checkpoint_every", self.checkpoint_every,
              "an integer in 1..100000")


@dataclass
class InnerConfig:
    steps: int = 2  # inner prompt-tuning steps of FOMAML and Reptile during meta-training
    lr: float = 0.02  # SGD step of every prompt-tuning step (inner loop, meta-test); 0.05 diverged by step 8

    def __post_init__(self) -> None:
        check(1 <= self.steps <= 50, "inner.steps", self.steps, "an integer in 1..50")
        check(0 < self.lr <= 100, "inner.lr", self.lr, "a number in (0, 100]")


@dataclass
class SoftMAMLConfig(BaseConfig):
    model: str = "smollm2-135m-instruct"  # HF name, local folder, 'smollm2-135m-instruct' or 'tiny-random'
    train_tasks: list[str] = field(default_factory=lambda: list(TRAIN_TASKS))  # meta-training task types
    test_tasks: list[str] = field(default_factory=lambda: list(TEST_TASKS))  # held-out types, meta-test only
    prompt_len: int = 8  # soft-prompt vectors P
    n_support: int = 4  # pairs a prompt is tuned on per episode (the 4-16)
    n_query: int = 8  # pairs it is scored on
    ks: list[int] = field(default_factory=lambda: [1, 5, 20])  # prompt-tuning steps reported at meta-test
    episodes: int = 3  # meta-test episodes per held-out type (CIs over all of them)
    train: TrainConfig = field(default_factory=TrainConfig)
    inner: InnerConfig = field(default_factory=InnerConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        from adaptlab.data.wordtasks import WORD_TASKS

        for key in ("train_tasks", "test_tasks"):
            v = getattr(self, key)
            check(len(v) > 0 and all(t in WORD_TASKS for t in v) and len(set(v)) == len(v), key, v,
                  f"a non-empty list of distinct names from {', '.join(WORD_TASKS)}")
        both = sorted(set(self.train_tasks) & set(self.test_tasks))
        check(not both, "test_tasks", self.test_tasks, f"types not in train_tasks (both hold {both})")
        check(1 <= self.prompt_len <= 256, "prompt_len", self.prompt_len, "an integer in 1..256")
        check(1 <= self.n_support <= 64, "n_support", self.n_support, "an integer in 1..64")
        check(1 <= self.n_query <= 256, "n_query", self.n_query, "an integer in 1..256")
        check(len(self.ks) > 0 and all(1 <= k <= 500 for k in self.ks) and self.ks == sorted(set(self.ks)), "ks",
              self.ks, "a non-empty increasing list of integers in 1..500")
        check(2 <= self.episodes <= 1000, "episodes", self.episodes, "an integer in 2..1000 (for the CI)")


# ----------------------------------------------------------------------------------------------- model + data


def _model(cfg: SoftMAMLConfig):
    from adaptlab.lm.load import load_causal_lm, tiny_random_lm

    lm = tiny_random_lm(seed=cfg.seed) if cfg.model == TINY else load_causal_lm(cfg.model, device=cfg.device)
    if not cfg.train.first_order:  # CPU SDPA attention has no double backward
        lm.model.set_attn_implementation("eager")
    from adaptlab.lm.softprompt import freeze, input_embedding

    input_embedding(lm)  # a model without input embeddings cannot take a soft prompt: one line
    return freeze(lm)


def pools(cfg: SoftMAMLConfig, lm) -> dict[str, list[tuple[list[int], int]]]:
    """Per task type: ``(input ids of "{x} ->", target id)`` of every usable pair (sorted, deterministic)."""
    from adaptlab.data.wordtasks import fit_tokenizer, word_task

    out = {}
    for name in cfg.train_tasks + cfg.test_tasks:
        pairs = word_task(name)
        if cfg.model != TINY:
            pairs = fit_tokenizer(pairs, lm.encode)
        rows = [(lm.encode(f"{x} ->"), lm.encode(" " + y)[0]) for x, y in pairs]
        need = cfg.n_support + cfg.n_query
        if len(rows) < need:
            from adaptlab.errors import DataError

            raise DataError(f"word task {name!r} has {len(rows)} single-token pairs for this tokenizer; an episode "
                            f"needs n_support + n_query = {need}: lower them or pick other tasks")
        out[name] = rows
    return out


def episode(rows, n_s: int, n_q: int, rng: random.Random):
    """Support and query pairs of one episode, drawn without replacement."""
    pick = rng.sample(rows, n_s + n_q)
    return pick[:n_s], pick[n_s:]


def stack(sets: list[list[tuple[list[int], int]]], pad: int):
    """``({"ids": (T, n, L), "last": (T, n)}, y (T, n))`` of T equal-size sets, right-padded."""
    import torch

    L = max(len(ids) for s in sets for ids, _ in s)
    ids = torch.full((len(sets), len(sets[0]), L), pad, dtype=torch.long)
    for t, s in enumerate(sets):
        for i, (x, _) in enumerate(s):
            ids[t, i, :len(x)] = torch.tensor(x)
    last = torch.tensor([[len(x) - 1 for x, _ in s] for s in sets])
    y = torch.tensor([[tgt for _, tgt in s] for s in sets])
    return {"ids": ids, "last": last}, y


def batch_of(cfg, pools_, names, n: int, rng: random.Random, pad: int):
    """A :class:`SupportQuery` of ``n`` episodes, each of a type drawn from ``names``."""
    from adaptlab.tasks.batch import SupportQuery

    eps = [episode(pools_[rng.choice(names)], cfg.n_support, cfg.n_query, rng) for _ in range(n)]
    xs, ys = stack([s for s, _ in eps], pad)
    xq, yq = stack([q for _, q in eps], pad)
    return SupportQuery(xs, ys, xq, yq)


def pooled(b, pad: int):
    """``(x, y)`` of each episode's support and query pairs together: ``(T, n_s + n_q, ...)``."""
    import torch
    import torch.nn.functional as F

    L = max(b.support_x["ids"].shape[2], b.query_x["ids"].shape[2])
    ids = torch.cat([F.pad(v["ids"], (0, L - v["ids"].shape[2]), value=pad) for v in (b.support_x, b.query_x)], 1)
    last = torch.cat([b.support_x["last"], b.query_x["last"]], 1)
    return {"ids": ids, "last": last}, torch.cat([b.support_y, b.query_y], 1)


def prompt_forward(lm, cache_prompt: bool = True):
    """``forward(params, buffers, inputs)``: next-token logits after ``[BOS] prompt "{x} ->"`` for E episodes.

    ``inputs = {"ids": (E, n, L) right-padded, "last": (E, n)}`` (or ``(n, L)`` / ``(n,)`` for one episode);
    ``params["prompt"]`` is one prompt ``(P, D)`` for every row or one per episode ``(E, P, D)``. Returns
    ``(E, n, V)`` (or ``(n, V)``). The episodes are independent, so the gradient of the summed loss w.r.t. the
    ``(E, P, D)`` prompts is every episode's own gradient: E prompt-tuning problems run as one batch (tested
    against the MAML core's per-task path). Padding sits after the last real token, which causal attention
    keeps from it, so no attention mask is needed. With ``cache_prompt`` the BOS + prompt keys and values are
    computed once per prompt and expanded over its n rows (prefix caching; the graph reaches the prompt).
    """
    import torch

    from adaptlab.lm.scoring import _head, base_forward
    from adaptlab.lm.softprompt import input_embedding

    emb = input_embedding(lm)

    def forward(params, buffers, inputs):
        dev = emb.weight.device  # episodes are built on the CPU; the model may sit on a GPU
        ids, last = inputs["ids"].to(dev), inputs["last"].to(dev)
        single = ids.dim() == 2
        if single:
            ids, last = ids[None], last[None]
        E, n, L = ids.shape
        head = params["prompt"]
        head = head[None] if head.dim() == 2 else head  # (1 or E, P, D)
        if lm.bos_ids:
            head = torch.cat([emb(torch.tensor([lm.bos_ids], device=dev)).expand(head.shape[0], -1, -1), head], 1)
        H, per = head.shape[1], n * (E if head.shape[0] == 1 else 1)  # rows per prompt
        flat, rows = ids.reshape(E * n, L), torch.arange(E * n, device=dev)
        if cache_prompt and H > 0:  # (a zero-shot hard prompt has nothing to cache)
            _, cache = base_forward(lm, inputs_embeds=head)  # (1 or E) prompts, once each
            cache.batch_repeat_interleave(per)
            pos = torch.arange(H, H + L, device=dev).expand(E * n, -1)
            h, _ = base_forward(lm, cache, inputs_embeds=emb(flat), position_ids=pos)  # (E n, L, D)
            h = h[rows, last.reshape(-1)]
        else:
            x = torch.cat([head.repeat_interleave(per, 0), emb(flat)], 1)  # (E n, H + L, D)
            h, _ = base_forward(lm, inputs_embeds=x)
            h = h[rows, H + last.reshape(-1)]  # (E n, D)
        logits = _head(lm, h).reshape(E, n, -1)  # (E, n, V)
        return logits[0] if single else logits
    return forward


def episode_ce(logits, y):
    """Sum over episodes of each episode's mean next-token cross-entropy: ``(E, n, V), (E, n)`` (or one
    episode ``(n, V), (n,)``) -> scalar. Its gradient w.r.t. per-episode prompts is each episode's own."""
    import torch.nn.functional as F

    flat = y.reshape(-1).to(logits.device)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), flat, reduction="sum") / y.shape[-1]


def vocab_init(lm, P: int, seed: int):
    """The core's ``"vocab"`` init (:func:`adaptlab.lm.softprompt.init_prompt`): P input embeddings of token ids
    drawn from the first 5000 (Lester et al.'s sampled vocabulary), seeded."""
    import torch

    from adaptlab.lm.softprompt import init_prompt

    return init_prompt(lm, P, "vocab", generator=torch.Generator().manual_seed(seed))  # (P, D)


def check_inputs(cfg: SoftMAMLConfig) -> None:
    """Every word task's source and the model are there (one line, exit 2, before any run folder)."""
    from adaptlab.data.wordtasks import word_task

    for name in cfg.train_tasks + cfg.test_tasks:
        word_task(name)
    if cfg.model == "smollm2-135m-instruct":
        from adaptlab.lm.load import smollm2_gguf

        smollm2_gguf()
    elif cfg.model != TINY:
        _model(cfg)


# --------------------------------------------------------------------------------------------- training


def _rng(cfg: SoftMAMLConfig, stream: int, step: int) -> random.Random:
    """A fresh generator per (stream, step): a resumed run draws the same episodes without saving any state."""
    from adaptlab.engine import derive_seed

    return random.Random(derive_seed(cfg.seed, stream) * 1_000_003 + step)


def meta_train(cfg: SoftMAMLConfig, lm, pools_: dict, method: str, checkpoint=None) -> dict:
    """Train the ``method`` initialisation (fomaml, reptile or multitask) from the vocabulary init.

    FOMAML: ``T`` episodes adapt ``T`` copies of the prompt with :func:`adaptlab.meta.maml.inner_adapt` (one
    batch, :func:`prompt_forward`); the mean query loss of the adapted copies is back-propagated to the shared
    prompt through the copies (first order: the inner gradients are constants; second order with
    ``train.first_order=false``). Reptile: the optimizer's gradient is ``p - mean_t p_K^(t)``. Multi-task: the
    loss of all the episodes' pairs pooled, no inner loop.
    """
    import torch

    from adaptlab.engine import fit, make_optimizer
    from adaptlab.meta.maml import inner_adapt

    T, P = cfg.train.tasks_per_step, cfg.prompt_len
    theta = vocab_init(lm, P, cfg.seed).requires_grad_()
    opt = make_optimizer([theta], "adam", cfg.train.lr)
    fwd, pad = prompt_forward(lm), lm.pad_id()
    stream = 10 + INITS.index(method)

    def batches(step):
        b = batch_of(cfg, pools_, cfg.train_tasks, T, _rng(cfg, stream, step), pad)
        return pooled(b, pad) if method == "multitask" else b

    def step_fn(b):
        if method == "multitask":
            x, y = b
            return episode_ce(fwd({"prompt": theta}, {}, x), y) / T
        fast = inner_adapt({"prompt": theta.expand(T, *theta.shape)}, {}, b.support_x, b.support_y, forward=fwd,
                           loss_fn=episode_ce, steps=cfg.inner.steps, lr=cfg.inner.lr,
                           first_order=cfg.train.first_order)
        if method == "fomaml":
            return episode_ce(fwd(fast, {}, b.query_x), b.query_y) / T
        with torch.no_grad():  # reptile
            theta.grad = (theta - fast["prompt"]).mean(0)
            return episode_ce(fwd(fast, {}, b.query_x), b.query_y) / T

    hist = fit(step_fn, batches, steps=cfg.train.steps, optimizer=opt, params=[theta], checkpoint=checkpoint,
               progress=progress, desc=method)
    return {"prompt": theta.detach().clone(), "loss": hist["loss"], "seconds": hist["seconds"]}


# ------------------------------------------------------------------------------------------- meta-test


def test_episodes(cfg: SoftMAMLConfig, pools_: dict) -> list[tuple[str, list, list]]:
    """``episodes`` (type, support, query) per held-out type, the same for every initialisation."""
    rng = _rng(cfg, 2, 0)
    return [(name, *episode(pools_[name], cfg.n_support, cfg.n_query, rng)) for name in cfg.test_tasks
            for _ in range(cfg.episodes)]


def meta_test(cfg: SoftMAMLConfig, lm, eps: list, inits: dict) -> dict:
    """Query accuracy and loss per episode after 0 and each k of ``ks`` prompt-tuning steps, per init; and of
    the few-shot (support pairs as demonstrations) and zero-shot hard prompts."""
    import torch

    from adaptlab.lm.softprompt import input_embedding
    from adaptlab.meta.maml import inner_adapt

    fwd, pad = prompt_forward(lm), lm.pad_id()
    xs, ys = stack([s for _, s, _ in eps], pad)
    xq, yq = stack([q for _, _, q in eps], pad)
    E = len(eps)

    def score(prompt):
        with torch.no_grad():
            logits = fwd({"prompt": prompt}, {}, xq)  # (E, n_q, V)
            y = yq.to(logits.device)
            acc = (logits.argmax(-1) == y).double().mean(1).cpu()
            loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), y, reduction="none").double().mean(1).cpu()
        return acc.tolist(), loss.tolist()

    out: dict = {"types": [name for name, _, _ in eps], "inits": {}}
    for name, p0 in inits.items():
        t0 = time.perf_counter()
        fast, done = {"prompt": p0.expand(E, *p0.shape).clone()}, 0
        acc, loss = score(fast["prompt"])
        curve = {"0": {"acc": acc, "loss": loss}}
        for k in cfg.ks:
            fast = inner_adapt(fast, {}, xs, ys, forward=fwd, loss_fn=episode_ce, steps=k - done, lr=cfg.inner.lr,
                               first_order=True)
            fast, done = {"prompt": fast["prompt"].detach()}, k
            acc, loss = score(fast["prompt"])
            curve[str(k)] = {"acc": acc, "loss": loss}
        out["inits"][name] = curve
        out.setdefault("seconds", {})[name] = time.perf_counter() - t0
    emb = input_embedding(lm)
    nl = lm.encode("\n")
    for mode in ("fewshot", "zeroshot"):
        accs = []
        for _, support, query in eps:
            demo = [i for x, t in support for i in x + [t] + nl] if mode == "fewshot" else []
            ids = torch.tensor(demo, dtype=torch.long, device=emb.weight.device)
            prompt = emb(ids).detach()  # a hard prompt is its token embeddings
            x1, y1 = stack([query], pad)
            with torch.no_grad():
                logits = fwd({"prompt": prompt}, {}, {k: v[0] for k, v in x1.items()})  # (n_q, V)
            accs.append(float((logits.argmax(-1).cpu() == y1[0]).double().mean()))
        out[mode] = accs
    return out


def summarize(cfg: SoftMAMLConfig, raw: dict) -> dict:
    """Means with t CIs over episodes, per type, and paired differences against the vocabulary init."""
    ks = ["0"] + [str(k) for k in cfg.ks]
    types = raw["types"]
    table: dict = {}
    for name, curve in raw["inits"].items():
        row = {}
        for k in ks:
            m, h = mean_t_ci95(curve[k]["acc"])
            row[k] = {"acc": m, "ci95": h, "loss": mean_t_ci95(curve[k]["loss"])[0],
                      "per_type": {t: mean_t_ci95([a for a, tt in zip(curve[k]["acc"], types) if tt == t])[0]
                                   for t in cfg.test_tasks}}
            if name != "vocab":
                d = [a - b for a, b in zip(curve[k]["acc"], raw["inits"]["vocab"][k]["acc"])]
                dm, dh = mean_t_ci95(d)
                row[k]["minus_vocab"] = {"mean": dm, "ci95": dh, "excludes_zero": bool(dm - dh > 0 or dm + dh < 0)}
        table[name] = row
    hard = {m: {"acc": mean_t_ci95(raw[m])[0], "ci95": mean_t_ci95(raw[m])[1],
                "per_type": {t: mean_t_ci95([a for a, tt in zip(raw[m], types) if tt == t])[0] for t in cfg.test_tasks}}
            for m in ("fewshot", "zeroshot")}
    return {"steps": [int(k) for k in ks], "init": table, "hard": hard, "n_episodes": len(types)}


# ------------------------------------------------------------------------------------------- the run


def run(cfg: SoftMAMLConfig, out_dir: Path, resume: bool = False) -> dict:
    t0 = time.perf_counter()
    lm = _model(cfg)
    load_s = time.perf_counter() - t0
    pools_ = pools(cfg, lm)
    stages = Stages(out_dir, resume, every=cfg.train.checkpoint_every)
    inits = {"vocab": vocab_init(lm, cfg.prompt_len, cfg.seed)}
    train, seconds = {}, {}
    for method in INITS[1:]:
        done = stages.run(method, meta_train, cfg, lm, pools_, method)
        inits[method] = done["prompt"]
        stride = max(1, len(done["loss"]) // 200)
        train[method] = {"loss": done["loss"][::stride], "stride": stride}
        seconds[method] = done["seconds"]
    eps = test_episodes(cfg, pools_)
    t1 = time.perf_counter()
    raw = stages.run("meta-test", lambda c: meta_test(cfg, lm, eps, inits))
    test_s = raw.pop("seconds", {})
    per_step = {m: s / max(1, cfg.train.steps) for m, s in seconds.items()}
    return {"model": cfg.model, "pool_sizes": {k: len(v) for k, v in pools_.items()}, "train": train,
            "raw": raw, **summarize(cfg, raw),
            "timings": {"load_seconds": load_s, "train_seconds": seconds, "train_step_seconds": per_step,
                        "meta_test_seconds": test_s, "meta_test_total_seconds": time.perf_counter() - t1,
                        "total_seconds": time.perf_counter() - t0,
                        "cpu_seconds": time.process_time()}}  # this process's CPU (one thread: an idle core's time)


def _k5(results: dict) -> str:
    """The reported k closest to 5 (the issue's comparison point)."""
    return str(min((s for s in results["steps"] if s > 0), key=lambda s: abs(s - 5)))


def figures(results: dict, cfg: SoftMAMLConfig, out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    steps = results["steps"]
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.3))
    ax = axes[0]
    for name, row in results["init"].items():
        ax.errorbar(steps, [row[str(k)]["acc"] for k in steps], yerr=[row[str(k)]["ci95"] for k in steps],
                    fmt="-o", ms=4, capsize=3, color=COLORS[name], label=LABELS[name])
    for m, ls in (("fewshot", "--"), ("zeroshot", ":")):
        ax.axhline(results["hard"][m]["acc"], color=COLORS[m], ls=ls,
                   label=f"{LABELS[m]}" + (f" ({cfg.n_support} demos)" if m == "fewshot" else ""))
    ax.set(xscale="symlog", xlabel="prompt-tuning steps k on the support pairs", ylim=(-0.02, 1.02),
           ylabel=f"query accuracy (mean ± 95% t-CI, {results['n_episodes']} episodes)",
           title=f"held-out types: {', '.join(cfg.test_tasks)}")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    k5 = _k5(results)
    ax = axes[1]
    names = list(results["init"]) + ["fewshot"]
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        per = (results["init"][name][k5] if name in results["init"] else results["hard"][name])["per_type"]
        ax.bar([j + i * width for j in range(len(cfg.test_tasks))], [per[t] for t in cfg.test_tasks], width,
               color=COLORS[name], label=LABELS[name])
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(cfg.test_tasks))], cfg.test_tasks)
    ax.set(ylabel=f"query accuracy after k = {k5} steps", ylim=(0, 1.02), title="per held-out type")
    ax.legend(fontsize=7)
    ax = axes[2]
    for name, tr in results["train"].items():
        xs = [i * tr["stride"] + 1 for i in range(len(tr["loss"]))]
        ax.plot(xs, tr["loss"], color=COLORS[name], label=LABELS[name])
    ax.set(xlabel="meta-training step", ylabel="query loss after the inner steps (multi-task: pooled loss)",
           title=f"meta-training on {len(cfg.train_tasks)} types")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save_figure(fig, out_dir / "soft_prompt_maml.png")
    return ["soft_prompt_maml.png"]


def summary(results: dict, cfg: SoftMAMLConfig) -> str:
    tiny = " (a random tiny GPT-2: a smoke test)" if results["model"] == TINY else ""
    steps, k5 = results["steps"], _k5(results)
    lines = [f"Model `{results['model']}`{tiny}; P = {cfg.prompt_len} soft-prompt vectors; meta-trained on "
             f"{', '.join(cfg.train_tasks)}; tested on {results['n_episodes']} episodes of the held-out "
             f"{', '.join(cfg.test_tasks)} ({cfg.n_support} support / {cfg.n_query} query pairs, SGD lr "
             f"{cfg.inner.lr}). Query accuracy, mean ± 95% t-CI over episodes (`soft_prompt_maml.png`).", "",
             "| init | " + " | ".join(f"k = {k}" for k in steps) + f" | k = {k5} minus vocab |",
             "|---|" + "---|" * (len(steps) + 1)]
    for name, row in results["init"].items():
        d = row[k5].get("minus_vocab")
        diff = "—" if d is None else f"{d['mean']:+.3f} ± {d['ci95']:.3f}" + (" (CI excludes 0)" if
                                                                                d["excludes_zero"] else "")
        lines.append(f"| {LABELS[name]} | " + " | ".join(f"{row[str(k)]['acc']:.3f} ± {row[str(k)]['ci95']:.3f}"
                                                         for k in steps) + f" | {diff} |")
    for m in ("fewshot", "zeroshot"):
        h = results["hard"][m]
        lines.append(f"| {LABELS[m]} | {h['acc']:.3f} ± {h['ci95']:.3f} (no tuning) |" + " |" * len(steps))
    best = max((n for n in results["init"] if n != "vocab"),
               key=lambda n: results["init"][n][k5]["minus_vocab"]["mean"])
    d = results["init"][best][k5]["minus_vocab"]
    verdict = "beats" if d["mean"] - d["ci95"] > 0 else "does not beat (the CI includes zero or is below)"
    lines += ["", f"After k = {k5} steps the best learned init ({LABELS[best]}) {verdict} the vocabulary init: "
              f"{d['mean']:+.3f} ± {d['ci95']:.3f}."]
    return "\n".join(lines)


EXPERIMENTS = [
    Experiment("soft-prompt-maml", "MAML and Reptile over soft prompts of a frozen LM: meta-learned prompt inits "
               "on word-level tasks, tested on held-out task types", SoftMAMLConfig, run, figures, summary,
               quick={"model": TINY, "train_tasks": ["number", "capital"], "test_tasks": ["ordinal", "country"],
                      "prompt_len": 2, "n_support": 2, "n_query": 2, "ks": [1, 2], "episodes": 2,
                      "train.steps": 2, "train.checkpoint_every": 1},
               check=check_inputs),
]
