"""First-order MAML over a soft prompt of a tiny randomly initialised HuggingFace GPT-2 (no download).

The model does not vmap (data-dependent control flow on the attention mask), so it takes MAML's per-task path;
its inputs are keyword tensors (input ids and an attention mask) and only the prompt is adapted and learned.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from adaptlab.meta.maml import maml_meta_loss
from adaptlab.tasks.batch import SupportQuery

transformers = pytest.importorskip("transformers", reason="transformers is not installed (pip install -e '.[hf]')")

P, D, V, L = 4, 32, 100, 8  # prompt vectors, embedding width, vocabulary, sequence length


def _lm(**config):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=D, n_head=2, vocab_size=V, n_positions=64, bos_token_id=0,
                                  eos_token_id=0, **config)
    lm = transformers.GPT2LMHeadModel(cfg).eval()  # eval: no dropout, so both evaluations see one function
    return lm, {k: v.detach() for k, v in lm.named_parameters()}, dict(lm.named_buffers())


def _prompted(lm):
    """forward(params, buffers, inputs): the soft prompt params["prompt"] (P, D) prepended to the embeddings."""
    def forward(params, buffers, inputs):
        ids, mask = inputs["input_ids"], inputs["attention_mask"]  # (n, L) each
        n = ids.shape[0]
        embeds = torch.cat([params["prompt"].expand(n, P, D), F.embedding(ids, params["transformer.wte.weight"])],
                           1)  # (n, P + L, D)
        weights = {k: v for k, v in params.items() if k != "prompt"}
        keywords = {"inputs_embeds": embeds, "attention_mask": torch.cat([mask.new_ones(n, P), mask], 1)}
        out = functional_call(lm, (weights, buffers), (), keywords)
        return out.logits[:, P:]  # (n, L, V): the text positions only
    return forward


def next_token_loss(logits, labels):
    """Next-token cross-entropy; padded positions carry label -100 and are ignored."""
    return F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=-100)


def _tasks(T=3, n=2, seed=0):
    """T tasks, each a 'language' repeating its own short token pattern; the first positions are padding."""
    g = torch.Generator().manual_seed(seed)
    pattern = torch.randint(0, V, (T, 1, 3), generator=g)

    def sets():
        start = torch.randint(0, 3, (T, n, 1), generator=g)
        ids = pattern.expand(T, n, 3).gather(-1, (start + torch.arange(L)) % 3)  # (T, n, L)
        mask = torch.ones(T, n, L, dtype=torch.long)
        mask[:, :, :2] = 0  # left padding: only the attention mask keeps it from the text
        from_pad = F.pad(mask[..., :-1], (1, 0)) == 0  # a token predicted from a padded position is not scored
        return {"input_ids": ids, "attention_mask": mask}, ids.masked_fill((mask == 0) | from_pad, -100)

    (xs, ys), (xq, yq) = sets(), sets()
    return SupportQuery(xs, ys, xq, yq)


def test_first_order_maml_learns_a_soft_prompt_of_a_tiny_gpt2():
    lm, weights, buffers = _lm()
    forward, batch = _prompted(lm), _tasks()
    prompt = (0.02 * torch.randn(P, D, generator=torch.Generator().manual_seed(1))).requires_grad_()
    kw = dict(forward=forward, loss_fn=next_token_loss, steps=2, lr=1.0, first_order=True, adapt=["prompt"],
              vectorize=False)
    loss, _ = maml_meta_loss({"prompt": prompt, **weights}, buffers, batch, **kw)
    (grad,) = torch.autograd.grad(loss, [prompt])
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert all(not v.requires_grad for v in weights.values())  # only the prompt is learned
    # the attention mask is used: other padded tokens leave the meta-gradient alone; no mask changes it
    def support_inputs(**change):
        return SupportQuery({**batch.support_x, **change}, batch.support_y, batch.query_x, batch.query_y)

    ids, mask = batch.support_x["input_ids"], batch.support_x["attention_mask"]
    for other, same in ((support_inputs(input_ids=ids.masked_fill(mask == 0, 7)), True),
                        (support_inputs(input_ids=ids.masked_fill(mask == 0, 7), attention_mask=torch.ones_like(mask)),
                         False)):
        (g_other,) = torch.autograd.grad(maml_meta_loss({"prompt": prompt, **weights}, buffers, other, **kw)[0],
                                         [prompt])
        assert torch.allclose(g_other, grad, rtol=1e-4, atol=1e-7) == same  # float32 attention: rounding only
    with torch.no_grad():
        stepped = prompt - 0.2 * grad / grad.norm()  # one outer step of length 0.2 along the meta-gradient
    after, _ = maml_meta_loss({"prompt": stepped, **weights}, buffers, batch, **kw)
    assert after < loss - 1e-3
    # and the inner loop itself adapts: the query loss after two prompt steps is below the unadapted one
    unadapted, _ = maml_meta_loss({"prompt": prompt, **weights}, buffers, batch, **{**kw, "steps": 0})
    assert loss < unadapted


def test_second_order_through_gpt2_needs_eager_attention_and_differs_from_first_order():
    """Second order runs through the eager attention (CPU SDPA has no double backward, so it is first order only
    here); both attentions are one model: their first-order meta-gradients agree."""
    batch = _tasks(T=2)
    prompt = (0.02 * torch.randn(P, D, generator=torch.Generator().manual_seed(1))).requires_grad_()
    grads = {}
    for impl, first_order in (("sdpa", True), ("eager", True), ("eager", False)):
        lm, weights, buffers = _lm(attn_implementation=impl)
        loss, _ = maml_meta_loss({"prompt": prompt, **weights}, buffers, batch, forward=_prompted(lm),
                                 loss_fn=next_token_loss, steps=1, lr=1.0, first_order=first_order,
                                 adapt=["prompt"], vectorize=False)
        (grads[impl, first_order],) = torch.autograd.grad(loss, [prompt])
    torch.testing.assert_close(grads["eager", True], grads["sdpa", True], rtol=1e-4, atol=1e-6)  # one model
    second = grads["eager", False]
    assert torch.isfinite(second).all()
    assert not torch.allclose(second, grads["eager", True], rtol=1e-2, atol=1e-5)  # the Hessian term counts
