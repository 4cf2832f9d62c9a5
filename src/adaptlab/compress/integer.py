"""End-to-end int8 integer-only inference for the features/classifier CNNs of :mod:`adaptlab.models.cnn`.

Conversion (:func:`convert_integer`):

1. fold every batch norm into its conv (:func:`fold_bn_model`), so each layer is y = W x + b;
2. group the layers into integer ops: conv (+ReLU), linear (+ReLU), max-pool, flatten;
3. calibrate: run a few training batches through the folded float model and record the min/max of the
   input and of each op's output (after its ReLU) -> asymmetric int8 (S, Z) per activation;
4. quantize weights symmetric per output channel (int8), biases to int32 with scale S_w S_x, and the
   requantization multipliers S_w S_x / S_y to fixed point.

The converted :class:`IntegerCNN` quantizes its float input once, then runs only integer ops; its int8 logits'
argmax is the prediction. 1D convs run as 2D convs of height 1. Two paths run the same converted model:

* ``"reference"``: :func:`~adaptlab.compress.linear.int_conv2d`, ``int_linear``, ``int_maxpool2d`` -- exact
  fixed-point requantization; these define the semantics (the oracle);
* ``"fast"``: PyTorch's quantized CPU kernels fed with the same integers (:mod:`adaptlab.compress.qops`):
  the same int32 accumulators, float32 requantization (an output may differ by one step).

``path="auto"`` (the default) takes the fast one where it is available (CPU, a quantized engine whose kernels
pass :func:`~adaptlab.compress.qops.probe`) and the reference one otherwise.

References:
    B. Jacob et al. Quantization and training of neural networks for efficient integer-arithmetic-only
    inference. CVPR 2018.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn

from adaptlab.compress.linear import (
    calibration_qparams,
    dequantize,
    fold_bn,
    int_conv2d,
    int_linear,
    int_maxpool2d,
    quantize,
    quantize_weight_per_channel,
    requant_multiplier,
)

_CONVS = (nn.Conv1d, nn.Conv2d)
_BNS = (nn.BatchNorm1d, nn.BatchNorm2d)
PATHS = ("auto", "fast", "reference")   # IntegerCNN kernel paths; see the module docstring


def _check_path(path: str) -> str:
    if path not in PATHS:
        raise ValueError(f"integer model path={path!r}; accepted: {', '.join(PATHS)}")
    return path


def _layers(model: nn.Module) -> list[nn.Module]:
    return list(model.features) + list(model.classifier)


@torch.no_grad()
def fold_bn_model(model: nn.Module) -> nn.Module:
    """An eval-mode copy whose batch norms are folded into the preceding convs (and replaced by Identity)."""
    model = copy.deepcopy(model).eval()
    for seq in (model.features, model.classifier):
        for i in range(len(seq) - 1):
            if isinstance(seq[i], _CONVS) and isinstance(seq[i + 1], _BNS):
                conv = seq[i]
                w, b = fold_bn(conv.weight, conv.bias, seq[i + 1])
                conv.weight = nn.Parameter(w)
                conv.bias = nn.Parameter(b)
                seq[i + 1] = nn.Identity()
    return model


def _groups(folded: nn.Module) -> list[tuple[str, nn.Module | None, bool]]:
    """[(kind, module, relu)] with kind in conv / linear / pool / flatten; ReLUs merged into their op."""
    out: list[tuple[str, nn.Module | None, bool]] = []
    for m in _layers(folded):
        if isinstance(m, nn.Identity):
            continue
        if isinstance(m, nn.ReLU):
            if not out or out[-1][0] not in ("conv", "linear") or out[-1][2]:
                raise ValueError("integer conversion: a ReLU must directly follow a conv or linear layer")
            out[-1] = (out[-1][0], out[-1][1], True)
        elif isinstance(m, _CONVS):
            out.append(("conv", m, False))
        elif isinstance(m, nn.Linear):
            out.append(("linear", m, False))
        elif isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)):
            out.append(("pool", m, False))
        elif isinstance(m, nn.Flatten):
            out.append(("flatten", None, False))
        else:
            raise ValueError(f"integer conversion does not support {type(m).__name__}")
    return out


def _as_4d(x: torch.Tensor, conv1d: bool) -> torch.Tensor:
    if conv1d:
        return x.reshape(x.shape[0], -1, 1, x.shape[-1])           # (N, C, 1, L)
    return x.unsqueeze(1) if x.dim() == 3 else x


def _to2d(conv: nn.Module) -> tuple[torch.Tensor, tuple, tuple]:
    """Weight, stride and padding of a conv as 2D (a Conv1d becomes height 1)."""
    if isinstance(conv, nn.Conv1d):
        return conv.weight.unsqueeze(2), (1, conv.stride[0]), (0, conv.padding[0])
    return conv.weight, tuple(conv.stride), tuple(conv.padding)


@torch.no_grad()
def _float_forward(groups, x: torch.Tensor, record: list | None = None) -> torch.Tensor:
    """The folded float model op by op (as the integer model runs), recording each op's output range."""
    def note(t):
        if record is not None:
            record.append((float(t.min()), float(t.max())))
    note(x)
    for kind, m, relu in groups:
        if kind == "conv":
            w, s, p = _to2d(m)
            x = torch.nn.functional.conv2d(x, w, m.bias, stride=s, padding=p)
        elif kind == "linear":
            x = m(x)
        elif kind == "pool":
            k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            x = torch.nn.functional.max_pool2d(x, (1, k) if isinstance(m, nn.MaxPool1d) else k)
        else:
            x = x.flatten(1)
        if relu:
            x = x.clamp_min(0)
        if kind in ("conv", "linear"):
            note(x)
    return x


class IntegerCNN(nn.Module):
    """int8 integer-only CNN produced by :func:`convert_integer`.

    ``forward_int(x)`` -> int8 logits (N, classes); ``forward(x)`` -> their dequantized float values.
    Buffers hold int8 weights, int32 biases and int64 fixed-point multipliers. ``path`` (``"auto"``,
    ``"fast"`` or ``"reference"``, see the module docstring) is the default of ``forward_int(x, path=...)``;
    :meth:`resolve_path` says which one runs.
    """

    def __init__(self, ops: list[dict], in_qparams: tuple[float, int], out_qparams: tuple[float, int],
                 conv1d: bool, path: str = "auto"):
        super().__init__()
        self.ops, self.in_qparams, self.out_qparams, self.conv1d = ops, in_qparams, out_qparams, conv1d
        self.path = _check_path(path)
        self._packed: dict = {}                  # engine -> packed quantized-kernel ops (built on first use)
        for i, op in enumerate(ops):
            for k in ("qw", "q_bias", "M0", "shift"):
                if k in op:
                    self.register_buffer(f"op{i}_{k}", op[k])

    def __getstate__(self):                      # packed kernel params are a cache: rebuilt, never copied
        return {**self.__dict__, "_packed": {}}

    def resolve_path(self, path: str | None = None, device: torch.device | str = "cpu") -> str:
        """``"fast"`` or ``"reference"``: what ``forward_int`` runs for ``path`` (default: ``self.path``)."""
        from adaptlab.compress import qops

        path = _check_path(self.path if path is None else path)
        usable = torch.device(device).type == "cpu" and qops.fast_engine() is not None
        if path == "fast" and not usable:
            raise ValueError(f"path='fast' needs a CPU tensor and a quantized engine among {qops.ENGINES} whose "
                             f"kernels pass qops.probe (this build has "
                             f"{torch.backends.quantized.supported_engines}); use path='reference' or 'auto'")
        return "fast" if path == "fast" or (path == "auto" and usable) else "reference"

    @torch.no_grad()
    def forward_int(self, x: torch.Tensor, path: str | None = None) -> torch.Tensor:
        S, Z = self.in_qparams
        x = _as_4d(x, self.conv1d)                                      # (N, C, H, W)
        if self.resolve_path(path, x.device) == "fast":
            from adaptlab.compress import qops

            eng = qops.fast_engine()
            if eng not in self._packed:
                self._packed[eng] = [qops.pack_op(op, eng) for op in self.ops]
            return qops.run_packed(self._packed[eng], qops.quantize_quint8(x, S, Z), Z, eng)
        # the one float -> int step, at the input; activations then stay int8 in (N, H, W, C) layout
        q = quantize(x, S, Z).permute(0, 2, 3, 1)
        for op in self.ops:
            if op["kind"] == "conv":
                q = int_conv2d(q, Z, op["qw"], op["q_bias"], op["M0"], op["shift"], op["Z_y"], op["stride"],
                               op["padding"], op["relu"], channels_last=True)
            elif op["kind"] == "linear":
                q = int_linear(q, Z, op["qw"], op["q_bias"], op["M0"], op["shift"], op["Z_y"], op["relu"])
            elif op["kind"] == "pool":
                if op.get("pool1d"):
                    q = q.unfold(2, op["k1d"], op["k1d"]).amax(-1)
                else:
                    q = int_maxpool2d(q, op["kernel"][0], channels_last=True)
            else:
                q = q.permute(0, 3, 1, 2).flatten(1) if q.dim() == 4 else q   # PyTorch's (C, H, W) order
            Z = op.get("Z_y", Z)
        return q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        S, Z = self.out_qparams
        return dequantize(self.forward_int(x), S, Z)

    def size_bits(self) -> int:
        """int8 weights + int32 biases + 32-bit scale per output channel and per activation."""
        bits = 64 * (1 + len(self.ops))                                # activation S (32) + Z (32)
        for op in self.ops:
            if "qw" in op:
                bits += 8 * op["qw"].numel() + 32 * op["q_bias"].numel() + 32 * op["M0"].numel()
        return bits


@torch.no_grad()
def convert_integer(model: nn.Module, calib_batches: Iterable[torch.Tensor], bits: int = 8, path: str = "auto"
                    ) -> IntegerCNN:
    """Fold BN, calibrate activation ranges on ``calib_batches`` and build the int8 :class:`IntegerCNN`.

    Args:
        model: a trained features/classifier CNN (float).
        calib_batches: a few input batches (e.g. 4 training batches of 128); min/max over all of them.
        bits: 8 (the kernels store int8).
        path: default kernel path of the result: ``"auto"`` (fast where available), ``"fast"``, ``"reference"``.

    Returns:
        IntegerCNN on the model's device.
    """
    if bits != 8:
        raise ValueError("integer-only kernels are int8; use bits=8")
    folded = fold_bn_model(model)
    groups = _groups(folded)
    conv1d = isinstance(next((m for k, m, _ in groups if k == "conv"), None), nn.Conv1d)
    ranges: list[tuple[float, float]] | None = None
    for xb in calib_batches:
        rec: list = []
        _float_forward(groups, _as_4d(xb, conv1d), rec)
        ranges = rec if ranges is None else [(min(a[0], b[0]), max(a[1], b[1])) for a, b in zip(ranges, rec)]
    if ranges is None:
        raise ValueError("convert_integer needs at least one calibration batch")
    act = [calibration_qparams(lo, hi, bits) for lo, hi in ranges]      # input, then each conv/linear output
    S_x, Z_x = act[0]
    ops, j = [], 1
    for kind, m, relu in groups:
        if kind in ("conv", "linear"):
            S_y, Z_y = act[j]
            j += 1
            w, stride, pad = _to2d(m) if kind == "conv" else (m.weight, None, None)
            qw, S_w = quantize_weight_per_channel(w, bits)
            b = m.bias if m.bias is not None else w.new_zeros(w.shape[0])
            q_bias = torch.round(b.double() / (S_w * S_x)).to(torch.int32)
            M0, shift = requant_multiplier(S_w * S_x / S_y)
            ops.append(dict(kind=kind, qw=qw, q_bias=q_bias, M0=M0, shift=shift, Z_y=Z_y, relu=relu,
                            stride=stride, padding=pad))
            S_x, Z_x = S_y, Z_y
        elif kind == "pool":
            k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            if isinstance(m, nn.MaxPool1d):
                ops.append(dict(kind="pool", kernel=(1,), pool1d=True, k1d=k))
            else:
                ops.append(dict(kind="pool", kernel=(k,)))
        else:
            ops.append(dict(kind="flatten"))
    return IntegerCNN(ops, act[0], (S_x, Z_x), conv1d, _check_path(path))
