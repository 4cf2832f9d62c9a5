"""Timed probe of the pieces of a ``soft-prompt-qa`` run, to size its default form (one torch thread, CPU time).

    python benchmarks/probe_softprompt_qa.py     # prints one line per piece; output in
                                                 # benchmarks/results/softprompt_qa_probe.md

Each piece is run once to warm up, then timed by ``time.process_time`` (this process's CPU time: what an idle
core takes, whatever the machine's load): a prompt-tuning step at P = 20 and P = 5 (batch 8 of the capitals
questions), a read-out of 100 test and of the 146 training questions, one coordinate-search candidate (no
gradient) and its gradient on 32 rows, and one full fine-tuning step (all weights, Adam). The default run's CPU
time is these figures times the counts of its config (docs/softprompt.md does the sum).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import os
import time

import torch


def main() -> None:
    from adaptlab.engine import make_optimizer
    from adaptlab.experiments import _softprompt_common as common
    from adaptlab.experiments import soft_prompt_qa as qa
    from adaptlab.lm.softprompt import input_embedding, make_batch, prompt_loss

    torch.set_num_threads(1)
    clock = time.process_time
    t = clock()
    lm = common.load_model("smollm2-135m-instruct")
    print(f"load model: {clock() - t:.2f} s", flush=True)

    def timeit(name, f, n=2):
        f()
        t = clock()
        for _ in range(n):
            f()
        print(f"{name}: {(clock() - t) / n:.3f} s", flush=True)

    cfg = qa.QAConfig(n_test=100, n_train=146)
    letters = qa.letter_ids(lm)
    data = qa.questions(cfg, lm)
    print(f"mean question tokens: {sum(len(c) for c, _ in data['train']) / len(data['train']):.1f}")
    batches = qa._batches(cfg, lm, data["train"], letters)
    for P in (20, 5):
        p = qa._init(cfg, lm, P, "letters", 1).requires_grad_()
        opt = make_optimizer([p], "adam", 1e-3)

        counter = itertools.count()

        def step(k=counter, p=p, opt=opt):
            opt.zero_grad()
            prompt_loss(p, lm, batches(next(k))).backward()
            opt.step()
        timeit(f"prompt step P={P}, batch 8", step)
    p = qa._init(cfg, lm, 20, "letters", 1)
    timeit("read-out, 100 test questions", lambda: qa.evaluate(lm, p, data["test"], letters), n=1)
    timeit("read-out, 146 training questions", lambda: qa.evaluate(lm, p, data["train"], letters), n=1)
    W = input_embedding(lm).weight  # (V, D)
    sb = make_batch(lm, [[("q", c), ("a", [letters[a]])] for c, a in data["train"][:32]], ["a"])
    ids = [lm.encode(qa.LETTER_TEXT)[i % 5] for i in range(5)]

    def candidate():
        with torch.no_grad():
            prompt_loss(W[ids], lm, sb)

    def search_grad():
        e = W[ids].detach().clone().requires_grad_()
        torch.autograd.grad(prompt_loss(e, lm, sb), e)
    timeit("search candidate, 32 rows, no gradient", candidate)
    timeit("search gradient, 32 rows", search_grad, n=1)
    model = copy.deepcopy(lm.model)
    for q in model.parameters():
        q.requires_grad_(True)
    ft = dataclasses.replace(lm, model=model)
    opt = make_optimizer(list(model.parameters()), "adam", 1e-5)
    fb = qa._batches(cfg, ft, data["train"][:32], letters)

    ft_counter = itertools.count()

    def ft_step(k=ft_counter):
        opt.zero_grad()
        prompt_loss(None, ft, fb(next(k))).backward()
        opt.step()
    timeit("full fine-tuning step, batch 8", ft_step)
    print(f"load average: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
