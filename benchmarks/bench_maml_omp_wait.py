"""Two intra-op threads on an oversubscribed CPU: OpenMP's spin-waiting against ``OMP_WAIT_POLICY=PASSIVE``.

    python benchmarks/bench_maml_omp_wait.py
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_maml_omp_wait.py

One second-order MAML meta-step of 5-way 1-shot Omniglot (Conv4, 8 tasks, 1 inner step), the per-task loop
and adaptlab's default path, at 1 and 2 threads, 2 rounds each; prints the wait policy, threads, method, wall
seconds, CPU seconds of the process and the load average. With more runnable processes than cores, libgomp's
default (spin before sleeping) lets a waiting thread burn the core the working thread needs; the output is in
``benchmarks/results/maml_conv_fold.md``.
"""

from __future__ import annotations

import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from adaptlab.meta.maml import maml_meta_loss  # noqa: E402
from adaptlab.models.conv4 import Conv4  # noqa: E402
from bench_omniglot import _episodes, _l2l_loop  # noqa: E402


def main() -> None:
    torch.manual_seed(0)
    model = Conv4(n_classes=5)
    params = dict(model.named_parameters())
    leaves = list(params.values())
    sampler, g = _episodes(5, 1, 1, 1)
    b = sampler.sample(8, g)
    fs = {"loop": lambda: _l2l_loop(model, params, b, 1, 0.4, False),
          "auto": lambda: maml_meta_loss(params, {}, b, model=model, loss_fn=F.cross_entropy, steps=1, lr=0.4)[0]}
    for th in (1, 2):
        torch.set_num_threads(th)
        for _ in range(2):
            for m, f in fs.items():
                t0, c0 = time.perf_counter(), time.process_time()
                torch.autograd.grad(f(), leaves)
                print(os.environ.get("OMP_WAIT_POLICY"), th, m, round(time.perf_counter() - t0, 2),
                      round(time.process_time() - c0, 2), os.getloadavg()[0], flush=True)


if __name__ == "__main__":
    main()
