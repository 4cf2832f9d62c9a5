"""Float64 check of the grid's T = 32, K = 5 cell: default path and vmap against the per-task loop.

    python benchmarks/check_maml_conv_f64.py
    THREADS=2 OMP_WAIT_POLICY=PASSIVE python benchmarks/check_maml_conv_f64.py

Same batch as ``bench_omniglot.py --part maml-paths`` (its second sample). For each order it prints, per dtype
and path (``loop``, ``auto`` = the default folded path, ``True`` = vmap), the relative difference of the
meta-gradient to the loop's in the same dtype, and to the float64 loop's (the reference: how far each float32
computation is from the exact meta-gradient). Output in ``benchmarks/results/maml_conv_fold.md`` and
``benchmarks/results/maml_conv_profile.md``.
"""

import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from adaptlab.meta.maml import maml_meta_loss  # noqa: E402
from adaptlab.models.conv4 import Conv4  # noqa: E402
from adaptlab.tasks.batch import SupportQuery  # noqa: E402
from bench_omniglot import _episodes, _l2l_loop  # noqa: E402

torch.set_num_threads(int(os.environ.get("THREADS", 1)))  # 2: the folded path chunks the first layer in pairs
torch.manual_seed(0)
model = Conv4(n_classes=5)
sampler, g = _episodes(5, 1, 1, 1)
batches = {T: sampler.sample(T, g) for T in (8, 32)}   # the benchmark's batches
b = batches[32]
K = int(os.environ.get("K", 5))
for fo in (True, False):
    grads = {}
    for dt in (torch.float64, torch.float32):
        m = model.to(dt)
        params = dict(m.named_parameters())
        leaves = list(params.values())
        bb = SupportQuery(b.support_x.to(dt), b.support_y, b.query_x.to(dt), b.query_y)
        grads[dt, "loop"] = torch.cat([x.flatten() for x in torch.autograd.grad(
            _l2l_loop(m, params, bb, K, 0.4, fo), leaves)]).double()
        for v in ("auto", True):
            loss = maml_meta_loss(params, {}, bb, model=m, loss_fn=F.cross_entropy, steps=K, lr=0.4, first_order=fo,
                                  vectorize=v)[0]
            grads[dt, v] = torch.cat([x.flatten() for x in torch.autograd.grad(loss, leaves)]).double()
    exact = grads[torch.float64, "loop"]
    for (dt, v), gr in grads.items():
        same = grads[dt, "loop"]
        d_same, d_exact = float((gr - same).norm() / same.norm()), float((gr - exact).norm() / exact.norm())
        print(f"{'first' if fo else 'second'} order K={K} {str(dt)[6:]} {v}: vs loop same dtype {d_same:.1e}, "
              f"vs float64 loop {d_exact:.1e}", flush=True)
