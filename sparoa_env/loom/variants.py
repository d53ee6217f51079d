"""Sparse / reduced-precision variants of the small tasks' blocks: real transforms of the trained weights.

Every task model is an ``nn.Sequential`` of blocks with one MAC layer (conv or linear) each (see
:mod:`sparoa_env.loom.tasks`). A *variant* transforms that layer; the zoo of a task has ``len(VARIANTS)``
variants and a *uniform* variant applies the same transform to every block (what the paper's original
zoo holds); a *stitched* variant picks each block's transform independently (:mod:`sparoa_env.loom.stitch`).

=====================  ======================================================================  =========
variant                transform (no retraining)                                               dtype
=====================  ======================================================================  =========
``dense``              the trained weights                                                     float32
``unstructured-P``     :func:`sparoa_env.zoo.apply_variant`: the ``round(P * numel)`` smallest float32
                       magnitudes of the layer's weight set to zero (P = 0.2 .. 0.9)
``structured-P``       :func:`sparoa_env.zoo.apply_variant`: the ``round(P * out)`` output      float32
                       channels with the smallest L1 norm zeroed with their bias; the classifier
                       block (its outputs are the classes) prunes input columns instead
``fp16``               weights cast to ``torch.float16`` (``.half()``); the block's output is  float16
                       rounded to float16 too. CPU fp16 kernels are slow or missing, so the
                       arithmetic runs in float32 on the float16 values (as fp16 GEMMs with
                       float32 accumulators do): the rounding effect on accuracy is real
``int8``               per-output-channel symmetric int8 weights, per-tensor symmetric int8    int8
                       activations at the block's input and output (scales: max |x| / 127 over
                       the training split, calibrated on the dense model, one scale per block
                       boundary), int32 accumulation, float32 bias. Emulated exactly in float32:
                       products of int8 values summed over at most 1040 terms stay below 2**24
=====================  ======================================================================  =========

Adapters at block boundaries (:func:`adapt`): when the producer's output dtype differs from the
consumer's input dtype, the tensor is converted: ``quantize`` to int8 (the boundary's scale),
``dequantize`` from int8 (exact), or a float16 / float32 cast. int8 -> int8 needs none (shared scale).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["VARIANTS", "VariantSpec", "variant_spec", "Calibration", "calibrate", "make_block", "adapt",
           "layer_sparsity", "QMAX"]

VARIANTS: tuple[str, ...] = ("dense", "unstructured-0.2", "unstructured-0.4", "unstructured-0.6", "unstructured-0.8",
                             "unstructured-0.9", "structured-0.25", "structured-0.5", "fp16", "int8")
QMAX = 127.0


@dataclass(frozen=True)
class VariantSpec:
    name: str
    kind: str     # dense | unstructured | structured | fp16 | int8
    level: float  # pruning level (0 for the others)
    dtype: str    # float32 | float16 | int8

    @property
    def pattern(self) -> str:
        return self.kind if self.kind in ("unstructured", "structured") else "dense"


def variant_spec(name: str) -> VariantSpec:
    if name in ("dense", "fp16", "int8"):
        return VariantSpec(name, name, 0.0, {"dense": "float32", "fp16": "float16", "int8": "int8"}[name])
    kind, _, level = name.partition("-")
    if kind in ("unstructured", "structured") and level:
        try:
            p = float(level)
        except ValueError:
            p = -1.0
        if 0.0 < p < 1.0:
            return VariantSpec(name, kind, p, "float32")
    raise ValueError(f"unknown loom variant {name!r}; valid: {', '.join(VARIANTS)} (or unstructured-P / "
                     "structured-P with P in (0, 1))")


@dataclass(frozen=True)
class Calibration:
    """Per-boundary int8 scales: ``scales[k]`` quantizes the input of block k, ``scales[K]`` the logits."""

    scales: tuple[float, ...]


def calibrate(model: Any, x_train: Any) -> Calibration:
    """Activation scales (max |x| / 127) at every block boundary of the dense model on the training split."""
    import torch

    scales = []
    with torch.no_grad():
        x = torch.from_numpy(x_train)
        for block in model:
            scales.append(float(x.abs().max()) / QMAX)
            x = block(x)
        scales.append(float(x.abs().max()) / QMAX)
    return Calibration(tuple(max(s, 1e-12) for s in scales))


def _mac_layer(block: Any) -> Any:
    from torch import nn

    layers = [m for m in block.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if len(layers) != 1:
        raise ValueError(f"a loom block must hold exactly one conv/linear layer, found {len(layers)}")
    return layers[0]


def _quantize(x: "torch.Tensor", scale: float) -> "torch.Tensor":
    import torch

    return torch.clamp(torch.round(x / scale), -QMAX, QMAX) * scale


class _Int8Block:  # replaced by an nn.Module subclass on first use (keeps torch out of import time)
    pass


def _int8_block_class() -> Any:
    from torch import nn

    class Int8Block(nn.Module):
        """The block with int8 weights (per output channel) whose output is requantized to int8."""

        def __init__(self, block: nn.Module, out_scale: float) -> None:
            super().__init__()
            self.block = block
            self.out_scale = out_scale
            import torch

            layer = _mac_layer(block)
            with torch.no_grad():
                w = layer.weight
                s_w = w.detach().abs().flatten(1).amax(dim=1).clamp_min(1e-12) / QMAX
                shape = (-1,) + (1,) * (w.dim() - 1)
                w.copy_(torch.clamp(torch.round(w / s_w.view(shape)), -QMAX, QMAX) * s_w.view(shape))

        def forward(self, x):  # x is already on the input boundary's int8 grid (see adapt)
            return _quantize(self.block(x), self.out_scale)

    return Int8Block


def _fp16_block_class() -> Any:
    from torch import nn

    class Fp16Block(nn.Module):
        def __init__(self, block: nn.Module) -> None:
            super().__init__()
            self.block = block.half().float()  # real float16 weights, arithmetic in float32 (module docstring)

        def forward(self, x):
            return self.block(x).half().float()

    return Fp16Block


def make_block(block: Any, variant: str, *, index: int, n_blocks: int, calibration: Calibration) -> Any:
    """A transformed copy of ``block`` (the ``index``-th of ``n_blocks``) for ``variant``."""
    import torch

    from sparoa_env import zoo

    spec = variant_spec(variant)
    b = copy.deepcopy(block).eval()
    if spec.kind == "unstructured":
        zoo.apply_variant(b, spec.name)
    elif spec.kind == "structured":
        if index == n_blocks - 1:  # classifier: its output channels are the classes; prune input columns
            layer = _mac_layer(b)
            with torch.no_grad():
                k = round(spec.level * layer.weight.shape[1])
                cols = torch.argsort(layer.weight.abs().sum(0), stable=True)[:k]
                layer.weight[:, cols] = 0
        else:
            zoo.apply_variant(b, spec.name)
    elif spec.kind == "fp16":
        b = _fp16_block_class()(b)
    elif spec.kind == "int8":
        b = _int8_block_class()(b, calibration.scales[index + 1])
    return b.eval()


def adapt(x: "torch.Tensor", src_dtype: str, dst_dtype: str, scale: float) -> "torch.Tensor":
    """Convert a boundary tensor from the producer's dtype to the consumer's (module docstring)."""
    if src_dtype == dst_dtype:
        return x
    if dst_dtype == "int8":
        return _quantize(x, scale)
    if dst_dtype == "float16":
        return x.half().float()
    return x  # to float32: dequantize / upcast is exact


def adapter_kind(src_dtype: str, dst_dtype: str) -> str | None:
    """The adapter op at a boundary, ``None`` when the dtypes agree."""
    if src_dtype == dst_dtype:
        return None
    if dst_dtype == "int8":
        return "quantize"
    if src_dtype == "int8":
        return "dequantize"
    return "cast"


def layer_sparsity(block: Any) -> float:
    """Fraction of exact zeros in the block's conv/linear weight."""
    layer = _mac_layer(block)
    w = layer.weight.detach()
    return float((w == 0).sum()) / w.numel()


def variant_sparsities(model: Any, calibration: Calibration, variants: Sequence[str] = VARIANTS) -> list[list[float]]:
    """``[block][variant]`` weight sparsity measured on the transformed weights."""
    n = len(model)
    out = []
    for k, block in enumerate(model):
        row = []
        for v in variants:
            b = make_block(block, v, index=k, n_blocks=n, calibration=calibration)
            inner = b.block if hasattr(b, "block") else b
            row.append(layer_sparsity(inner))
        out.append(row)
    return out
