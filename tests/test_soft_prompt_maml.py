"""soft-prompt-maml: the batched-episode prompt forward against per-episode references and the MAML core's
per-task path, on a tiny random GPT-2 (no download)."""

from __future__ import annotations

import random

import pytest
import torch

from adaptlab.errors import ConfigError
from adaptlab.meta.maml import inner_adapt, maml_meta_loss

pytest.importorskip("transformers", reason="transformers is not installed (pip install -e '.[softmaml]')")

from adaptlab.experiments import soft_prompt_maml as spm  # noqa: E402
from adaptlab.lm.load import tiny_random_lm  # noqa: E402

P = 3


def _setup(attn="sdpa", E=3, n=4, seed=0):
    lm = tiny_random_lm(seed=0)
    if attn != "sdpa":
        lm.model.set_attn_implementation(attn)
    for p in lm.model.parameters():
        p.requires_grad_(False)
    rng = random.Random(seed)
    V = lm.model.config.vocab_size

    def pair():
        return [rng.randrange(2, V) for _ in range(rng.randint(1, 5))], rng.randrange(2, V)

    sets = [[pair() for _ in range(n)] for _ in range(E)]
    x, y = spm.stack(sets, lm.pad_id())
    g = torch.Generator().manual_seed(seed)
    prompts = 0.1 * torch.randn(E, P, lm.model.config.n_embd, generator=g)
    return lm, x, y, prompts


def test_prompt_cache_and_batched_episodes_equal_one_row_at_a_time():
    lm, x, y, prompts = _setup()
    E, n = y.shape
    cached, plain = spm.prompt_forward(lm, True), spm.prompt_forward(lm, False)
    p = prompts.clone().requires_grad_()
    out = cached({"prompt": p}, {}, x)  # (E, n, V)
    (g_cached,) = torch.autograd.grad(spm.episode_ce(out, y), [p])
    ref = torch.stack([torch.stack([plain({"prompt": p[e]}, {}, {"ids": x["ids"][e, i:i + 1, :x["last"][e, i] + 1],
                                                                 "last": x["last"][e, i:i + 1]})[0]
                                    for i in range(n)]) for e in range(E)])  # each row alone, unpadded
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)  # float32 attention: rounding only
    (g_ref,) = torch.autograd.grad(sum(torch.nn.functional.cross_entropy(ref[e], y[e]) for e in range(E)), [p])
    torch.testing.assert_close(g_cached, g_ref, rtol=1e-4, atol=1e-6)
    assert g_cached.abs().sum() > 0
    # one shared prompt (P, D) equals that prompt given to every episode
    shared = cached({"prompt": prompts[0]}, {}, x)
    torch.testing.assert_close(shared, cached({"prompt": prompts[0].expand(E, -1, -1)}, {}, x), rtol=1e-5,
                               atol=1e-6)


def test_a_hard_prompt_as_embeddings_equals_feeding_its_tokens():
    lm, x, y, _ = _setup(E=1, n=2)
    demo = lm.encode("ab -> c\nde -> f\n")
    emb = lm.model.get_input_embeddings()
    got = spm.prompt_forward(lm)({"prompt": emb(torch.tensor(demo))}, {}, {k: v[0] for k, v in x.items()})
    for i in range(2):
        ids = torch.tensor([demo + x["ids"][0, i, :x["last"][0, i] + 1].tolist()])
        want = lm.model(input_ids=ids).logits[0, -1]
        torch.testing.assert_close(got[i], want, rtol=1e-4, atol=1e-5)


def test_batched_prompt_tuning_equals_tuning_each_episode_alone():
    lm, x, y, prompts = _setup()
    fwd = spm.prompt_forward(lm)
    kw = dict(forward=fwd, loss_fn=spm.episode_ce, steps=3, lr=0.5, first_order=True)
    batched = inner_adapt({"prompt": prompts}, {}, x, y, **kw)["prompt"]
    for e in range(y.shape[0]):
        alone = inner_adapt({"prompt": prompts[e]}, {}, {k: v[e] for k, v in x.items()}, y[e], **kw)["prompt"]
        torch.testing.assert_close(batched[e], alone, rtol=1e-4, atol=1e-6)
    before = spm.episode_ce(fwd({"prompt": prompts}, {}, x), y)
    assert spm.episode_ce(fwd({"prompt": batched}, {}, x), y) < before  # the steps lower the support loss
    assert not torch.allclose(batched, prompts)


@pytest.mark.parametrize("first_order", [True, False])
def test_meta_gradient_equals_the_maml_core_per_task_path(first_order):
    """The experiment's meta-loss (T prompt copies adapted as one batch, then the mean query loss) has the
    meta-gradient of maml_meta_loss's per-task loop (vectorize=False), first and second order (eager)."""
    from adaptlab.tasks.batch import SupportQuery

    lm, xs, ys, prompts = _setup(attn="eager", E=2, n=3, seed=1)
    _, xq, yq, _ = _setup(attn="eager", E=2, n=3, seed=2)
    fwd = spm.prompt_forward(lm)
    theta = prompts[0].clone().requires_grad_()
    T = ys.shape[0]
    fast = inner_adapt({"prompt": theta.expand(T, *theta.shape)}, {}, xs, ys, forward=fwd, loss_fn=spm.episode_ce,
                       steps=2, lr=0.5, first_order=first_order)
    (ours,) = torch.autograd.grad(spm.episode_ce(fwd(fast, {}, xq), yq) / T, [theta])
    loss, _ = maml_meta_loss({"prompt": theta}, {}, SupportQuery(xs, ys, xq, yq), forward=fwd,
                             loss_fn=torch.nn.functional.cross_entropy, steps=2, lr=0.5, first_order=first_order,
                             vectorize=False)
    (core,) = torch.autograd.grad(loss, [theta])
    torch.testing.assert_close(ours, core, rtol=1e-4, atol=1e-6)  # float32 attention: rounding only
    assert core.abs().sum() > 0


def test_second_order_differs_from_first_order():
    from adaptlab.tasks.batch import SupportQuery

    lm, xs, ys, prompts = _setup(attn="eager", E=2, n=3, seed=1)
    _, xq, yq, _ = _setup(attn="eager", E=2, n=3, seed=2)
    theta = prompts[0].clone().requires_grad_()
    grads = []
    for fo in (True, False):
        loss, _ = maml_meta_loss({"prompt": theta}, {}, SupportQuery(xs, ys, xq, yq), forward=spm.prompt_forward(lm),
                                 loss_fn=torch.nn.functional.cross_entropy, steps=1, lr=2.0, first_order=fo,
                                 vectorize=False)
        grads.append(torch.autograd.grad(loss, [theta])[0])
    assert not torch.allclose(grads[0], grads[1], rtol=1e-2, atol=1e-5)  # the Hessian term counts


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="test_tasks"):
        spm.SoftMAMLConfig(train_tasks=["plural", "past"], test_tasks=["past"])
    with pytest.raises(ConfigError, match="train_tasks"):
        spm.SoftMAMLConfig(train_tasks=["plurals"])
    with pytest.raises(ConfigError, match="prompt_len"):
        spm.SoftMAMLConfig(prompt_len=0)
    with pytest.raises(ConfigError, match="ks"):
        spm.SoftMAMLConfig(ks=[5, 1])
