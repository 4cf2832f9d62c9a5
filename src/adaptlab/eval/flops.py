"""FLOPs counted with :class:`torch.utils.flop_counter.FlopCounterMode`, CPU attention included.

torch's counter knows the CUDA kernels of ``F.scaled_dot_product_attention`` (flash, efficient, cuDNN) but
not the CPU one (``aten._scaled_dot_product_flash_attention_for_cpu``), which it silently counts as 0;
:func:`count_flops` registers that op and its backward with torch's own SDPA formulas
(``4 B h N S d``: ``QK^T`` and ``AV``, masks not discounted).

Example::

    >>> import torch, torch.nn.functional as F
    >>> q = torch.randn(1, 2, 16, 8)
    >>> count_flops(F.scaled_dot_product_attention, q, q, q)   # 4 * 1 * 2 * 16 * 16 * 8
    16384
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def _mapping() -> dict:
    from torch.utils import flop_counter as fc

    def fwd(q, k, v, *args, out_shape=None, **kwargs):
        return fc.sdpa_flop_count(q, k, v)

    def bwd(grad_out, q, k, v, *args, out_shape=None, **kwargs):
        return fc.sdpa_backward_flop_count(grad_out, q, k, v)

    aten = torch.ops.aten
    return {aten._scaled_dot_product_flash_attention_for_cpu: fwd,
            aten._scaled_dot_product_flash_attention_for_cpu_backward: bwd}


def count_flops(fn: Callable, *args, **kwargs) -> int:
    """Total FLOPs (multiply-add = 2) of ``fn(*args, **kwargs)``, forward and any backward it runs."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False, custom_mapping=_mapping())
    with counter:
        fn(*args, **kwargs)
    return int(counter.get_total_flops())
