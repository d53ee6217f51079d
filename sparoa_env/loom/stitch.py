"""Model stitching: a stitched variant takes block k from any variant of the same base model.

A stitched variant is a tuple ``(v_0, ..., v_{K-1})`` of indices into :data:`~sparoa_env.loom.variants.VARIANTS`;
a *uniform* one (all ``v_k`` equal) is a variant of the original zoo. Blocks are aligned by
construction (every variant keeps the block's input and output shapes), so no retraining is needed:
the only glue is an adapter where the producer's and the consumer's dtypes differ
(:func:`sparoa_env.loom.variants.adapt`).

:class:`StitchedModel` runs one stitched variant end to end in torch. :func:`measure_all` measures the
held-out accuracy of *every* stitched variant of a task (``V ** K``, 10 000 for 10 variants and 4
blocks) for real: it walks the prefix tree, so each distinct prefix's activations are computed once
(10 + 100 + 1 000 + 10 000 block evaluations instead of 40 000); the results are identical to running
each variant on its own (tested). :func:`index_of` / :func:`variant_of` map tuples to the flat index
(lexicographic, block 0 most significant).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, Sequence

from .variants import VARIANTS, adapt, calibrate, make_block, variant_spec

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = ["BlockBank", "StitchedModel", "measure_all", "index_of", "variant_of", "uniform", "all_variants"]


def index_of(stitch: Sequence[int], n_variants: int = len(VARIANTS)) -> int:
    i = 0
    for v in stitch:
        if not 0 <= v < n_variants:
            raise ValueError(f"variant index {v} out of range [0, {n_variants})")
        i = i * n_variants + int(v)
    return i


def variant_of(index: int, n_blocks: int, n_variants: int = len(VARIANTS)) -> tuple[int, ...]:
    out = []
    for _ in range(n_blocks):
        index, r = divmod(index, n_variants)
        out.append(r)
    return tuple(reversed(out))


def uniform(v: int, n_blocks: int) -> tuple[int, ...]:
    return (v,) * n_blocks


def all_variants(n_blocks: int, n_variants: int = len(VARIANTS)) -> list[tuple[int, ...]]:
    return list(itertools.product(range(n_variants), repeat=n_blocks))


class BlockBank:
    """Every block of one trained model in every variant, plus the boundary scales."""

    def __init__(self, model: Any, x_train: Any, variants: Sequence[str] = VARIANTS) -> None:
        self.variants = tuple(variants)
        self.dtypes = tuple(variant_spec(v).dtype for v in self.variants)
        self.calibration = calibrate(model, x_train)
        n = self.n_blocks = len(model)
        self.blocks = [[make_block(b, v, index=k, n_blocks=n, calibration=self.calibration) for v in self.variants]
                       for k, b in enumerate(model)]

    def run_block(self, x: Any, k: int, v: int, src_dtype: str) -> Any:
        x = adapt(x, src_dtype, self.dtypes[v], self.calibration.scales[k])
        return self.blocks[k][v](x)


class StitchedModel:
    """One stitched variant as a callable (tensor in, float32 logits out)."""

    def __init__(self, bank: BlockBank, stitch: Sequence[int]) -> None:
        if len(stitch) != bank.n_blocks:
            raise ValueError(f"a stitched variant names one variant per block: {bank.n_blocks} expected, got {len(stitch)}")
        self.bank = bank
        self.stitch = tuple(int(v) for v in stitch)

    def __call__(self, x: Any) -> Any:
        import torch

        with torch.no_grad():
            dtype = "float32"
            for k, v in enumerate(self.stitch):
                x = self.bank.run_block(x, k, v, dtype)
                dtype = self.bank.dtypes[v]
            return x.float()


def measure_all(bank: BlockBank, x_test: "np.ndarray", y_test: "np.ndarray") -> list[int]:
    """Correct predictions on the held-out split of every stitched variant, in :func:`index_of` order."""
    import torch

    V, K = len(bank.variants), bank.n_blocks
    y = torch.from_numpy(y_test)
    out: list[int] = []

    def walk(x: Any, k: int, dtype: str) -> None:
        for v in range(V):
            h = bank.run_block(x, k, v, dtype)
            if k == K - 1:
                out.append(int((h.argmax(dim=1) == y).sum()))
            else:
                walk(h, k + 1, bank.dtypes[v])

    with torch.no_grad():
        walk(torch.from_numpy(x_test), 0, "float32")
    return out
