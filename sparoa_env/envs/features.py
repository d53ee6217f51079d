"""Operator features for observations: op-type categories and the per-op static feature table."""

from __future__ import annotations

import numpy as np

__all__ = ["OP_CATEGORIES", "op_category", "static_op_features", "N_STATIC"]

OP_CATEGORIES = ("conv", "matmul", "attention", "norm", "pool", "elementwise", "other")

_PREFIXES = {
    "conv": ("aten.convolution", "aten.conv", "aten._convolution", "aten.mkldnn_convolution"),
    "matmul": ("aten.addmm", "aten.mm", "aten.bmm", "aten.baddbmm", "aten.linear", "aten.matmul", "aten.addbmm"),
    "attention": ("aten._scaled_dot_product", "aten.scaled_dot_product"),
    "norm": ("aten.native_batch_norm", "aten._native_batch_norm", "aten.native_layer_norm", "aten.layer_norm",
             "aten.batch_norm", "aten.group_norm", "aten.native_group_norm", "aten._softmax", "aten.softmax",
             "aten._log_softmax", "aten.var", "aten.sum", "aten.mean", "aten.amax", "aten.rsqrt"),
    "pool": ("aten.max_pool", "aten.avg_pool", "aten.adaptive_avg_pool", "aten.adaptive_max_pool",
             "aten._adaptive_avg_pool"),
    "elementwise": ("aten.add", "aten.sub", "aten.mul", "aten.div", "aten.relu", "aten.hardswish", "aten.hardsigmoid",
                    "aten.sigmoid", "aten.silu", "aten.gelu", "aten.tanh", "aten.clamp", "aten.hardtanh", "aten.where",
                    "aten.pow", "aten.sqrt", "aten.exp", "aten.neg", "aten.erf", "aten.threshold", "aten.leaky_relu",
                    "aten.minimum", "aten.maximum", "aten.cat", "aten.constant_pad", "aten.copy", "aten._to_copy",
                    "aten.embedding", "aten.index", "aten.gather", "aten.roll", "aten.masked_fill", "aten.fill"),
}


def op_category(op_type: str) -> int:
    for c, prefixes in _PREFIXES.items():
        if op_type.startswith(prefixes):
            return OP_CATEGORIES.index(c)
    return OP_CATEGORIES.index("other")


#: columns of :func:`static_op_features`
STATIC_COLUMNS = (
    "rho", "weight_sparsity", "input_sparsity", "log_intensity", "log_flops", "log_bytes", "log_aux_flops",
    *(f"cat_{c}" for c in OP_CATEGORIES),
    "log_cpu_us", "log_acc_us", "rho_star", "log_i_star", "rule_cpu", "progress",
)
N_STATIC = len(STATIC_COLUMNS)


def _log(x: np.ndarray, scale: float) -> np.ndarray:
    return np.log10(1.0 + np.maximum(x, 0.0)) / scale


def static_op_features(graph, nominal_ms: np.ndarray, rho_star: float, i_star: float) -> np.ndarray:
    """``(n_ops, N_STATIC)`` float32: what is known of each op before it runs (see the env docstring)."""
    from ..thresholds import threshold_rule

    f = graph.features
    n = len(graph.nodes)
    out = np.zeros((n, N_STATIC), dtype=np.float64)
    out[:, 0] = f["sparsity"]
    out[:, 1] = f["weight_sparsity"]
    out[:, 2] = f["input_sparsity"]
    out[:, 3] = _log(f["intensity"], 3.0)
    out[:, 4] = _log(f["flops"], 10.0)
    out[:, 5] = _log(f["bytes_in"] + f["bytes_out"] + f["weight_bytes"], 9.0)
    out[:, 6] = _log(f["aux_flops"], 9.0)
    cats = np.array([op_category(nd.op_type) for nd in graph.nodes], dtype=np.int64)
    out[np.arange(n), 7 + cats] = 1.0
    k = 7 + len(OP_CATEGORIES)
    out[:, k] = _log(nominal_ms[:, 0] * 1000.0, 4.0)
    out[:, k + 1] = _log(nominal_ms[:, 1:].min(axis=1) * 1000.0, 4.0)
    out[:, k + 2] = rho_star
    out[:, k + 3] = np.log10(1.0 + i_star) / 3.0
    out[:, k + 4] = threshold_rule(f["sparsity"], f["intensity"], rho_star, i_star)
    out[:, k + 5] = np.arange(n) / max(n, 1)
    return out.astype(np.float32)
