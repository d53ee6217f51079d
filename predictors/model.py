"""The threshold predictor: a Transformer encoder over the op feature sequence, an LSTM, and heads for
rho* and I*; plus the non-sequential comparator (an MLP on pooled features). torch only.

Both networks answer on the fixed candidate grid of the dataset (:data:`predictors.dataset.RHO_GRID` x
:data:`predictors.dataset.I_GRID`): the **rho* head** gives logits over the rho* grid and the **I* head**
logits over the I* grid *for each* rho* (``(B, R, K)``), so ``log p(rho*, I*) = log_softmax(rho) +
log_softmax(I | rho*)``, a joint distribution that can express "either (0.1, 30) or (0.8, 3), but not
(0.1, 3)", which two independent regressions cannot. The prediction is the most probable cell.

The heads score every cell from the network's context vector *and* the cell's placement summary
(:func:`cell_features`: which share of ops, of CPU time and of accelerator time that cell's rule sends to
the CPU in this very graph). Thresholds are absolute numbers whose meaning depends on the graph's own rho
and I values; the summary states them in the graph's own terms, which is what lets a model trained on a
handful of architectures say something about an unseen one.

Transformer-LSTM (``arch="transformer_lstm"``)::

    ops (B, L<=max_tokens, F) --Linear--> + Linear(hw) --> TransformerEncoder (pre-norm, n_layers)
        --> mean over op spans --> (B, lstm_steps, D) --> LSTM --> last hidden h (B, H)
    [h, masked mean of the encoder output, hw] --> MLP context --> with cell_features: rho* head (B, R),
                                                                                       I* head (B, R, K)

Graphs longer than ``max_tokens`` ops are average-pooled in order to ``max_tokens`` tokens before the
encoder; the LSTM runs over ``lstm_steps`` contiguous spans of the encoded sequence (mean of each span),
which keeps its sequential cost fixed whatever the graph size.

Pooled MLP (``arch="pooled_mlp"``): mean, standard deviation and maximum of every op feature, the
log op count and the hardware state, into a two-layer MLP with the same heads.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

try:
    import torch
    from torch import nn
except ImportError as e:  # pragma: no cover - depends on the install
    raise ImportError("the threshold predictor needs torch: pip install 'sparoa-env[torch]'") from e

__all__ = ["PredictorConfig", "TransformerLSTM", "PooledMLP", "build_model", "pool_tokens", "span_matrix", "cell_features",
           "collate", "joint_log_prob", "decode", "save_checkpoint", "load_checkpoint", "ARCHS"]

ARCHS = ("transformer_lstm", "pooled_mlp")


@dataclass(frozen=True)
class PredictorConfig:
    """Architecture of a predictor; saved as JSON next to its weights. Unknown keys are rejected."""

    arch: str = "transformer_lstm"
    n_op_features: int = 17
    n_hw_features: int = 10
    d_model: int = 32
    n_heads: int = 2
    n_layers: int = 1
    ff_dim: int = 64
    lstm_hidden: int = 32
    max_tokens: int = 128
    lstm_steps: int = 24
    mlp_hidden: int = 64
    dropout: float = 0.1
    rho_grid: tuple[float, ...] = ()
    i_grid: tuple[float, ...] = ()
    op_feature_columns: tuple[str, ...] = ()
    hw_feature_columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if not self.rho_grid or not self.i_grid:
            from .dataset import HW_FEATURE_COLUMNS, I_GRID, OP_FEATURE_COLUMNS, RHO_GRID

            object.__setattr__(self, "rho_grid", tuple(float(v) for v in RHO_GRID))
            object.__setattr__(self, "i_grid", tuple(float(v) for v in I_GRID))
            object.__setattr__(self, "op_feature_columns", tuple(OP_FEATURE_COLUMNS))
            object.__setattr__(self, "hw_feature_columns", tuple(HW_FEATURE_COLUMNS))
        for name in ("rho_grid", "i_grid", "op_feature_columns", "hw_feature_columns"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if len(self.op_feature_columns) != self.n_op_features or len(self.hw_feature_columns) != self.n_hw_features:
            raise ValueError("PredictorConfig: feature column lists do not match n_op_features / n_hw_features")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PredictorConfig":
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - valid
        if unknown:
            raise ValueError(f"PredictorConfig: unknown key(s) {sorted(unknown)}; valid: {sorted(valid)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------------ input shaping

def pool_tokens(feats_LF: np.ndarray, max_tokens: int) -> np.ndarray:
    """Average contiguous ops so that at most ``max_tokens`` remain (order kept)."""
    n = feats_LF.shape[0]
    if n <= max_tokens:
        return feats_LF
    edges = np.linspace(0, n, max_tokens + 1).round().astype(np.int64)
    csum = np.concatenate([np.zeros((1, feats_LF.shape[1]), feats_LF.dtype), np.cumsum(feats_LF, axis=0)])
    return ((csum[edges[1:]] - csum[edges[:-1]]) / np.diff(edges)[:, None]).astype(np.float32)


def span_matrix(n: int, L: int, steps: int) -> np.ndarray:
    """``(steps, L)``: row s averages tokens of the s-th of ``steps`` contiguous spans of ``n`` tokens
    (short sequences repeat tokens, so every span holds at least one)."""
    m = np.zeros((steps, L), dtype=np.float32)
    for s in range(steps):
        a = (s * n) // steps
        b = max(((s + 1) * n) // steps, a + 1)
        m[s, a:b] = 1.0 / (b - a)
    return m


def collate(op_feats: list[np.ndarray], hw: list[np.ndarray], cfg: PredictorConfig,
            cells: list[np.ndarray] | None = None) -> dict[str, torch.Tensor]:
    """Pad a list of per-case op feature arrays into a batch (tokens pooled to ``max_tokens``); the cell
    features are computed from the full sequences unless given (training caches them)."""
    if cells is None:
        cells = [cell_features(np.asarray(f, dtype=np.float32), cfg) for f in op_feats]
    seqs = [pool_tokens(np.asarray(f, dtype=np.float32), cfg.max_tokens) for f in op_feats]
    L = max(len(s) for s in seqs)
    B, F = len(seqs), cfg.n_op_features
    x = np.zeros((B, L, F), dtype=np.float32)
    mask = np.zeros((B, L), dtype=bool)
    spans = np.zeros((B, cfg.lstm_steps, L), dtype=np.float32)
    n_ops = np.zeros(B, dtype=np.float32)
    for b, (s, f) in enumerate(zip(seqs, op_feats)):
        x[b, :len(s)] = s
        mask[b, :len(s)] = True
        spans[b] = span_matrix(len(s), L, cfg.lstm_steps)
        n_ops[b] = len(f)
    return {"ops_BLF": torch.from_numpy(x), "mask_BL": torch.from_numpy(mask), "spans_BSL": torch.from_numpy(spans),
            "hw_BH": torch.from_numpy(np.stack([np.asarray(h, dtype=np.float32) for h in hw])),
            "log_n_B": torch.from_numpy(np.log10(np.maximum(n_ops, 1.0)) / 3.0),
            "cells_BNC": torch.from_numpy(np.stack(cells))}


# ---------------------------------------------------------------------------------------------- networks

N_CELL_FEATURES = 7


def cell_features(feats_LF: np.ndarray, cfg: PredictorConfig) -> np.ndarray:
    """``(R * K, N_CELL_FEATURES)`` float32: what each grid cell's rule placement does to *this* graph.

    Per cell: share of ops sent to the CPU; log10(1 + their CPU time / the graph's total accelerator
    time); share of the accelerator time they take away; CPU<->GPU switches along the op order per op;
    log10(1 + their CPU time / the accelerator time left); and the cell's own rho* and log10(1 + I*) / 3.
    Everything is recovered from the op feature sequence (rho, log intensity, log CPU / accelerator us),
    so the scorer sees the placement in the graph's own terms, which carries over to unseen models.
    """
    cols = cfg.op_feature_columns
    rho = feats_LF[:, cols.index("rho")].astype(np.float64)
    inten = 10.0 ** (3.0 * feats_LF[:, cols.index("log_intensity")].astype(np.float64)) - 1.0
    cpu = 10.0 ** (4.0 * feats_LF[:, cols.index("log_cpu_us")].astype(np.float64)) - 1.0
    acc = 10.0 ** (4.0 * feats_LF[:, cols.index("log_acc_us")].astype(np.float64)) - 1.0
    rg, ig = np.asarray(cfg.rho_grid), np.asarray(cfg.i_grid)
    n = len(rho)
    R, K = len(rg), len(ig)
    # cell (a, b) sends op j to the CPU iff A[a, j] and B[b, j], so every per-cell sum is a small matmul
    # (a tiny tolerance: intensities come back from a log round trip)
    A = (rho[None, :] >= rg[:, None] - 1e-9).astype(np.float64)                  # (R, n)
    B = (inten[None, :] <= ig[:, None] * (1 + 1e-6) + 1e-9).astype(np.float64)   # (K, n)
    count = A @ B.T
    cpu_t = (A * cpu) @ B.T
    acc_t = (A * acc) @ B.T
    if n > 1:  # switches along the op order: sum_j |m_j - m_j+1| = 2 * count - m_0 - m_last - 2 * both
        both = (A[:, 1:] * A[:, :-1]) @ (B[:, 1:] * B[:, :-1]).T
        switches = 2 * count - np.outer(A[:, 0], B[:, 0]) - np.outer(A[:, -1], B[:, -1]) - 2 * both
    else:
        switches = np.zeros((R, K))
    total_acc = max(acc.sum(), 1e-9)
    out = np.empty((R * K, N_CELL_FEATURES), dtype=np.float64)
    out[:, 0] = (count / max(n, 1)).ravel()
    out[:, 1] = np.log10(1.0 + cpu_t / total_acc).ravel()
    out[:, 2] = (acc_t / total_acc).ravel()
    out[:, 3] = (switches / max(n, 1)).ravel()
    out[:, 4] = np.log10(1.0 + cpu_t / np.maximum(total_acc - acc_t, 1e-3 * total_acc)).ravel()
    out[:, 5] = np.repeat(rg, K)
    out[:, 6] = np.tile(np.log10(1.0 + ig) / 3.0, R)
    return out.astype(np.float32)


class _Heads(nn.Module):
    """rho* head and I* head over the grid, both scoring cells from the context and the cell features.

    ``joint = score(context, cell) + rho_bias(context)[rho*]``; the rho* logits are ``logsumexp`` of a
    row of ``joint`` and the I* logits the row itself, so ``log_softmax(rho) + log_softmax(I | rho)``
    is exactly the joint softmax over cells (:func:`joint_log_prob`).
    """

    def __init__(self, *, d_in: int, hidden: int, n_rho: int, n_i: int, dropout: float) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout),
                                   nn.Linear(hidden, hidden), nn.GELU())
        self.rho_head = nn.Linear(hidden, n_rho)
        self.ctx_proj = nn.Linear(hidden, hidden)
        self.cell_proj = nn.Linear(N_CELL_FEATURES, hidden)
        self.i_head = nn.Sequential(nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 1))
        self.n_rho, self.n_i = n_rho, n_i

    def forward(self, z_BD: torch.Tensor, cells_BNC: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(z_BD)
        score_BN = self.i_head(self.cell_proj(cells_BNC) + self.ctx_proj(h)[:, None, :])[..., 0]
        joint_BRK = score_BN.view(-1, self.n_rho, self.n_i) + self.rho_head(h)[:, :, None]
        return torch.logsumexp(joint_BRK, dim=2), joint_BRK


class TransformerLSTM(nn.Module):
    """Transformer encoder over op tokens -> LSTM over spans -> rho* / I* heads (module docstring)."""

    def __init__(self, cfg: PredictorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D = cfg.d_model
        self.op_proj = nn.Linear(cfg.n_op_features, D)
        self.hw_proj = nn.Linear(cfg.n_hw_features, D)
        # no dropout inside the encoder: at this size it costs more time than it regularises (heads only)
        layer = nn.TransformerEncoderLayer(D, cfg.n_heads, cfg.ff_dim, 0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(D)
        self.lstm = nn.LSTM(D, cfg.lstm_hidden, batch_first=True)
        self.heads = _Heads(d_in=cfg.lstm_hidden + D + cfg.n_hw_features, hidden=cfg.mlp_hidden,
                            n_rho=len(cfg.rho_grid), n_i=len(cfg.i_grid), dropout=cfg.dropout)

    def forward(self, ops_BLF: torch.Tensor, mask_BL: torch.Tensor, spans_BSL: torch.Tensor, hw_BH: torch.Tensor,
                cells_BNC: torch.Tensor, log_n_B: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        tok_BLD = self.op_proj(ops_BLF) + self.hw_proj(hw_BH)[:, None, :]
        pad = None if bool(mask_BL.all()) else ~mask_BL
        enc_BLD = self.norm(self.encoder(tok_BLD, src_key_padding_mask=pad))
        m = mask_BL.to(enc_BLD.dtype)[:, :, None]
        mean_BD = (enc_BLD * m).sum(1) / m.sum(1).clamp_min(1.0)
        seq_BSD = torch.bmm(spans_BSL, enc_BLD)
        _, (h_1BH, _) = self.lstm(seq_BSD)
        return self.heads(torch.cat([h_1BH[0], mean_BD, hw_BH], dim=1), cells_BNC)


class PooledMLP(nn.Module):
    """The non-sequential comparator: pooled op statistics + hardware state -> the same heads."""

    def __init__(self, cfg: PredictorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        F = cfg.n_op_features
        self.heads = _Heads(d_in=3 * F + 1 + cfg.n_hw_features, hidden=cfg.mlp_hidden, n_rho=len(cfg.rho_grid),
                            n_i=len(cfg.i_grid), dropout=cfg.dropout)

    def forward(self, ops_BLF: torch.Tensor, mask_BL: torch.Tensor, spans_BSL: torch.Tensor, hw_BH: torch.Tensor,
                cells_BNC: torch.Tensor, log_n_B: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        m = mask_BL.to(ops_BLF.dtype)[:, :, None]
        n = m.sum(1).clamp_min(1.0)
        mean = (ops_BLF * m).sum(1) / n
        std = (((ops_BLF - mean[:, None, :]) ** 2 * m).sum(1) / n).sqrt()
        mx = ops_BLF.masked_fill(m == 0, -1e4).amax(1)
        if log_n_B is None:
            log_n_B = torch.log10(n[:, 0]) / 3.0
        return self.heads(torch.cat([mean, std, mx, log_n_B[:, None], hw_BH], dim=1), cells_BNC)


def build_model(cfg: PredictorConfig) -> nn.Module:
    return TransformerLSTM(cfg) if cfg.arch == "transformer_lstm" else PooledMLP(cfg)


def joint_log_prob(rho_logits_BR: torch.Tensor, i_logits_BRK: torch.Tensor) -> torch.Tensor:
    """``(B, R, K)`` log p(rho*, I*)."""
    return torch.log_softmax(rho_logits_BR, dim=1)[:, :, None] + torch.log_softmax(i_logits_BRK, dim=2)


def decode(rho_logits_BR: torch.Tensor, i_logits_BRK: torch.Tensor, cfg: PredictorConfig) -> list[tuple[float, float]]:
    """The most probable (rho*, I*) cell of each batch entry."""
    lp = joint_log_prob(rho_logits_BR, i_logits_BRK)
    K = lp.shape[2]
    flat = lp.reshape(lp.shape[0], -1).argmax(1).tolist()
    return [(cfg.rho_grid[k // K], cfg.i_grid[k % K]) for k in flat]


# -------------------------------------------------------------------------------------------- checkpoints

def save_checkpoint(path: str | Path, model: nn.Module, cfg: PredictorConfig, meta: dict[str, Any] | None = None) -> Path:
    """Write ``<path>.pt`` (a plain state dict, loadable with ``weights_only=True``) and ``<path>.json``
    (the config and ``meta``: training data, reproduction command, fixed-rule thresholds...)."""
    path = Path(path).with_suffix("")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    torch.save(state, path.with_suffix(".pt"))
    doc = {"config": cfg.to_dict(), "meta": meta or {}}
    path.with_suffix(".json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return path.with_suffix(".pt")


def load_checkpoint(path: str | Path) -> tuple[nn.Module, PredictorConfig, dict[str, Any]]:
    """(model in eval mode, config, meta) from ``<path>.pt`` + ``<path>.json``."""
    path = Path(path).with_suffix("")
    pt, js = path.with_suffix(".pt"), path.with_suffix(".json")
    for p in (pt, js):
        if not p.exists():
            raise FileNotFoundError(f"predictor checkpoint file not found: {p}")
    try:
        doc = json.loads(js.read_text())
        cfg = PredictorConfig.from_dict(doc["config"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{js}: not a predictor checkpoint config ({type(e).__name__}: {e})") from e
    model = build_model(cfg)
    try:
        model.load_state_dict(torch.load(pt, map_location="cpu", weights_only=True))
    except Exception as e:  # unpickling / shape errors name neither the file nor the cause plainly
        raise ValueError(f"{pt}: not a {cfg.arch} state dict matching {js} ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from e
    model.eval()
    return model, cfg, doc.get("meta", {})


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())



# --------------------------------------------------------------------------------------------- inference

class _FastNet:
    """Single-case inference path of a loaded network: the same arithmetic as ``model(**collate(...))`` +
    :func:`decode` for one graph, with the per-call overhead removed (about 2x faster at batch 1).

    * the weights are taken out of the modules once; the encoder layer runs as plain ``F`` ops (faster
      than :class:`~torch.nn.TransformerEncoderLayer`'s fused path at this size), the LSTM as the module;
    * everything that depends on the graph and the power mode only (op features, pooled tokens, span
      matrix, cell features and their projection ``cell_proj(cells)``) is built once per graph and kept
      (:meth:`ThresholdPredictor.static`); a call then only adds the hardware state;
    * the decode is ``argmax`` of the joint logits: ``log_softmax(rho)[r] + log_softmax(I | r)[r, k] =
      joint[r, k] - logsumexp(joint)``, so the most probable cell is the largest joint logit, without the
      two softmaxes.
    """

    def __init__(self, model: nn.Module, cfg: PredictorConfig) -> None:
        self.cfg = cfg
        self.arch = cfg.arch
        hd = model.heads
        d = lambda t: t.detach()  # noqa: E731
        self.W1, self.b1 = d(hd.trunk[0].weight), d(hd.trunk[0].bias)
        self.W2, self.b2 = d(hd.trunk[3].weight), d(hd.trunk[3].bias)
        self.Wr, self.br = d(hd.rho_head.weight), d(hd.rho_head.bias)
        self.Wx, self.bx = d(hd.ctx_proj.weight), d(hd.ctx_proj.bias)
        self.WcT, self.bc = d(hd.cell_proj.weight).t().contiguous(), d(hd.cell_proj.bias)
        self.Wi1T, self.bi1 = d(hd.i_head[1].weight).t().contiguous(), d(hd.i_head[1].bias)
        self.wi2, self.bi2 = d(hd.i_head[3].weight)[0].contiguous(), d(hd.i_head[3].bias)
        self.R, self.K = len(cfg.rho_grid), len(cfg.i_grid)
        if self.arch == "transformer_lstm":
            self.model = model
            self.Wop, self.bop = d(model.op_proj.weight), d(model.op_proj.bias)
            self.Whw, self.bhw = d(model.hw_proj.weight), d(model.hw_proj.bias)
            self.layers = []
            for lay in model.encoder.layers:
                sa = lay.self_attn
                self.layers.append(dict(
                    n1=(d(lay.norm1.weight), d(lay.norm1.bias), lay.norm1.eps),
                    n2=(d(lay.norm2.weight), d(lay.norm2.bias), lay.norm2.eps),
                    Wi=d(sa.in_proj_weight), bi=d(sa.in_proj_bias), Wo=d(sa.out_proj.weight), bo=d(sa.out_proj.bias),
                    W1=d(lay.linear1.weight), b1=d(lay.linear1.bias), W2=d(lay.linear2.weight), b2=d(lay.linear2.bias),
                    heads=sa.num_heads))
            norm = model.norm
            self.nf = (d(norm.weight), d(norm.bias), norm.eps)
            self.lstm = model.lstm

    def static(self, ops_LF: np.ndarray) -> dict[str, Any]:
        """The per-graph tensors (no hardware state in them)."""
        cfg = self.cfg
        ops_LF = np.asarray(ops_LF, dtype=np.float32)
        seq = pool_tokens(ops_LF, cfg.max_tokens)
        cells = torch.from_numpy(cell_features(ops_LF, cfg))
        st: dict[str, Any] = {"ops": ops_LF, "x": torch.from_numpy(np.ascontiguousarray(seq, dtype=np.float32))[None]}
        with torch.inference_mode():
            st["cellp"] = torch.addmm(self.bc, cells, self.WcT)  # cell_proj(cells), (R*K, hidden)
            if self.arch == "transformer_lstm":
                st["spans"] = torch.from_numpy(span_matrix(len(seq), len(seq), cfg.lstm_steps))
            else:
                x = st["x"][0]
                mean = x.mean(0)
                std = ((x - mean) ** 2).mean(0).sqrt()
                log_n = torch.tensor([np.log10(max(float(len(ops_LF)), 1.0)) / 3.0], dtype=torch.float32)
                st["pooled"] = torch.cat([mean, std, x.amax(0), log_n])
        return st

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        F_ = nn.functional
        L, D = x.shape[1], x.shape[2]
        for p in self.layers:
            H = p["heads"]
            h = F_.layer_norm(x, (D,), *p["n1"])
            qkv = F_.linear(h, p["Wi"], p["bi"]).view(1, L, 3, H, D // H).permute(2, 0, 3, 1, 4)
            a = F_.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
            x = x + F_.linear(a.transpose(1, 2).reshape(1, L, D), p["Wo"], p["bo"])
            h = F_.layer_norm(x, (D,), *p["n2"])
            x = x + F_.linear(F_.gelu(F_.linear(h, p["W1"], p["b1"])), p["W2"], p["b2"])
        return F_.layer_norm(x, (D,), *self.nf)

    def context(self, st: dict[str, Any], hw: torch.Tensor) -> torch.Tensor:
        if self.arch == "pooled_mlp":
            return torch.cat([st["pooled"], hw])
        F_ = nn.functional
        # op_proj(x) + hw_proj(hw): the hardware term folds into the bias
        tok = F_.linear(st["x"], self.Wop, torch.addmv(self.bop + self.bhw, self.Whw, hw))
        enc = self._encode(tok)[0]                                      # (L, D)
        _, (h, _) = self.lstm(torch.mm(st["spans"], enc)[None])
        return torch.cat([h[0, 0], enc.mean(0), hw])

    def joint(self, st: dict[str, Any], hw: torch.Tensor) -> torch.Tensor:
        """``(R, K)`` joint logits (the model's ``joint_BRK`` for this one case)."""
        F_ = nn.functional
        z = self.context(st, hw)
        h = F_.gelu(torch.addmv(self.b2, self.W2, F_.gelu(torch.addmv(self.b1, self.W1, z))))
        pre = st["cellp"] + torch.addmv(self.bx, self.Wx, h)           # cell_proj(cells) + ctx_proj(h)
        s = torch.addmm(self.bi1, F_.gelu(pre), self.Wi1T)
        score = torch.addmv(self.bi2, F_.gelu(s), self.wi2)            # (R*K,)
        return score.view(self.R, self.K) + torch.addmv(self.br, self.Wr, h)[:, None]

    def decode(self, st: dict[str, Any], hw_H: np.ndarray) -> tuple[float, float]:
        with torch.inference_mode():
            k = int(self.joint(st, torch.from_numpy(np.asarray(hw_H, dtype=np.float32))).argmax())
        return self.cfg.rho_grid[k // self.K], self.cfg.i_grid[k % self.K]


class ThresholdPredictor:
    """A loaded network plus the feature pipeline: ``predict(graph, profile, mode, background)``.

    :meth:`predict` keeps what depends only on (graph, profile, power mode) (op features, cell features,
    their projection) for the last ``cache_size`` such triples, keyed on the objects themselves (an
    :class:`~sparoa_env.graph.OpGraph` is immutable), so repeated calls for one model only compute the
    hardware part; ``cache_size=0`` turns that off.
    """

    def __init__(self, model: nn.Module, cfg: PredictorConfig, meta: dict[str, Any] | None = None, *,
                 cache_size: int = 32) -> None:
        from .dataset import HW_FEATURE_COLUMNS, OP_FEATURE_COLUMNS

        if tuple(cfg.op_feature_columns) != OP_FEATURE_COLUMNS or tuple(cfg.hw_feature_columns) != HW_FEATURE_COLUMNS:
            raise ValueError("predictor checkpoint was trained on other feature columns than this version computes; "
                             "retrain it with `sparoa predictor train`")
        self.model = model.eval()
        self.cfg = cfg
        self.meta = meta or {}
        self.cache_size = cache_size
        self._cost_models: dict[int, Any] = {}
        self._fast = _FastNet(self.model, cfg)
        self._static: dict[tuple[int, int, str], tuple[Any, Any, dict[str, Any]]] = {}
        self._hw: dict[tuple, np.ndarray] = {}

    @classmethod
    def load(cls, path: str | Path, **kw: Any) -> "ThresholdPredictor":
        return cls(*load_checkpoint(path), **kw)

    def _cost_model(self, profile):
        from sparoa_env.costmodel import CostModel

        cm = self._cost_models.get(id(profile))
        if cm is None or cm.profile is not profile:
            cm = self._cost_models[id(profile)] = CostModel(profile)
        return cm

    def op_features(self, graph, profile, mode: str) -> np.ndarray:
        from .dataset import op_features

        return op_features(graph, self._cost_model(profile).op_costs(graph, mode).nominal_ms)

    def hw_features(self, graph, profile, mode: str, background: Any = None, energy_weight: float = 0.0) -> np.ndarray:
        from .dataset import hw_features

        bg = "none" if background is None else background
        key = None
        if isinstance(bg, str):  # presets are constants: keep their vector (profile by identity, as above)
            key = (id(profile), mode, bg, graph.batch, float(energy_weight))
            hit = self._hw.get(key)
            if hit is not None and hit[0] is profile:
                return hit[1]
        hw = hw_features(profile, mode, bg, graph.batch, energy_weight)
        if key is not None:
            if len(self._hw) >= 256:
                self._hw.clear()
            self._hw[key] = (profile, hw)
        return hw

    def features(self, graph, profile, mode: str, background: Any = None,
                 energy_weight: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        return self.op_features(graph, profile, mode), self.hw_features(graph, profile, mode, background, energy_weight)

    def static(self, graph, profile, mode: str) -> dict[str, Any]:
        """The per-(graph, profile, mode) tensors of the fast path (cached, see the class docstring)."""
        key = (id(graph), id(profile), mode)
        hit = self._static.get(key)
        if hit is not None and hit[0] is graph and hit[1] is profile:
            return hit[2]
        st = self._fast.static(self.op_features(graph, profile, mode))
        if self.cache_size > 0:
            while len(self._static) >= self.cache_size:
                self._static.pop(next(iter(self._static)))
            self._static[key] = (graph, profile, st)
        return st

    def predict_features(self, op_feats: list[np.ndarray], hw: list[np.ndarray]) -> list[tuple[float, float]]:
        """Batched prediction through the modules (``collate`` + ``model`` + :func:`decode`)."""
        with torch.inference_mode():
            return decode(*self.model(**collate(op_feats, hw, self.cfg)), self.cfg)

    def predict(self, graph, profile, mode: str, background: Any = None, *,
                energy_weight: float = 0.0) -> tuple[float, float]:
        st = self.static(graph, profile, mode)
        return self._fast.decode(st, self.hw_features(graph, profile, mode, background, energy_weight))
