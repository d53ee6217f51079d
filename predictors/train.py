"""Train a threshold predictor (Transformer-LSTM or the pooled-MLP comparator) on the Parquet dataset.

Targets come from each case's objective landscape over the grid: the regret of every cell,
``r = objective / best objective - 1``, and a soft label ``q ∝ exp(-r / tau)`` that spreads the mass over
every near-optimal cell (many cells give the same placement). The loss is the cross-entropy of the
model's joint ``p(rho*, I*)`` with ``q`` plus ``regret_weight`` times the expected regret under ``p``,
so the model is pushed towards cells that are cheap when it is wrong, not only towards the argmax.

Also fits the **fixed rule**: the single grid cell with the lowest mean regret over the training cases
(a one-size-fits-all threshold pair, the simplest comparator), stored in the checkpoint's meta.

The reproduction command is stored in the checkpoint JSON (``meta.command``).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .dataset import DEFAULT_DATASET, I_GRID, OP_FEATURE_COLUMNS, RHO_GRID, read_dataset

__all__ = ["TrainConfig", "Samples", "load_samples", "train", "fit_fixed_rule", "CHECKPOINT_DIR", "CHECKPOINT_NAMES",
           "checkpoint_stem", "check_outputs"]

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "sparoa_env" / "data" / "predictor"
#: arch -> file stem in CHECKPOINT_DIR
CHECKPOINT_NAMES = {"transformer_lstm": "threshold_predictor", "pooled_mlp": "pooled_mlp"}


@dataclass(frozen=True)
class TrainConfig:
    arch: str = "transformer_lstm"
    data: str = str(DEFAULT_DATASET)
    out: str = ""                      # checkpoint path stem; default CHECKPOINT_DIR / CHECKPOINT_NAMES[arch]
    epochs: int = 60
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    tau: float = 0.01                  # soft-label temperature, in regret units (0.01 = 1 %)
    regret_weight: float = 1.0
    seed: int = 0
    threads: int = 1                   # 1 is faster than 2 for this model size (thread overhead)
    val_models: tuple[str, ...] = ()   # base models of the train split kept out for validation
    max_minutes: float = 9.0           # stop early (and say so) rather than overrun the budget

    def __post_init__(self) -> None:
        if self.arch not in CHECKPOINT_NAMES:
            raise ValueError(f"arch must be one of {', '.join(CHECKPOINT_NAMES)}, got {self.arch!r}")
        for name in ("epochs", "batch_size", "threads"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        for name in ("lr", "tau", "max_minutes"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v > 0):
                raise ValueError(f"{name} must be a positive number, got {v!r}")
        if isinstance(self.val_models, str):
            raise ValueError(f"val_models must be a sequence of base model names, got the string {self.val_models!r}")


def checkpoint_stem(cfg: TrainConfig) -> Path:
    """The path stem (``.pt`` + ``.json``) that :func:`train` writes for ``cfg``."""
    return Path(cfg.out).with_suffix("") if cfg.out else CHECKPOINT_DIR / CHECKPOINT_NAMES[cfg.arch]


def check_outputs(stem: str | Path, force: bool = False) -> None:
    """Raise :class:`FileExistsError` when ``<stem>.pt`` or ``<stem>.json`` exists and ``force`` is false
    (the shipped checkpoints included: regenerating them takes ``--force`` too)."""
    stem = Path(stem).with_suffix("")
    existing = [p for p in (stem.with_suffix(".pt"), stem.with_suffix(".json")) if p.exists()]
    if not existing or force:
        return
    names = " and ".join(str(p) for p in existing)
    if stem.resolve().parent == CHECKPOINT_DIR.resolve() and stem.name in CHECKPOINT_NAMES.values():
        raise FileExistsError(f"refusing to overwrite the shipped checkpoint {names}: pass --force to regenerate it, "
                              "or --out STEM to write a new checkpoint elsewhere")
    raise FileExistsError(f"checkpoint {names} already exist{'s' if len(existing) == 1 else ''} "
                          "(--out): pass --force to overwrite, or choose another --out")


@dataclass
class Samples:
    """Per-case arrays of a dataset split."""

    specs: list[str]
    op_feats: list[np.ndarray]         # (n_ops, F) each
    hw: np.ndarray                     # (N, H)
    regret: np.ndarray                 # (N, R, K) objective / best - 1
    rows: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.specs)


def _objective_grid(row: dict[str, Any]) -> np.ndarray:
    R, K = len(RHO_GRID), len(I_GRID)
    lat = np.asarray(row["latency_grid"], dtype=np.float64).reshape(R, K)
    en = np.asarray(row["energy_grid"], dtype=np.float64).reshape(R, K)
    return lat + float(row["energy_weight"]) * en


def load_samples(df, mask=None) -> Samples:
    rows = df[mask].to_dict("records") if mask is not None else df.to_dict("records")
    F = len(OP_FEATURE_COLUMNS)
    ops, hw, reg = [], [], []
    for r in rows:
        ops.append(np.asarray(r["op_features"], dtype=np.float32).reshape(-1, F))
        hw.append(np.asarray(r["hw_features"], dtype=np.float32))
        obj = _objective_grid(r)
        reg.append(obj / obj.min() - 1.0)
    R, K = len(RHO_GRID), len(I_GRID)
    return Samples([r["spec"] for r in rows], ops, np.stack(hw) if hw else np.zeros((0, 0), np.float32),
                   np.stack(reg) if reg else np.zeros((0, R, K)), rows)


def fit_fixed_rule(regret: np.ndarray) -> tuple[float, float, float]:
    """(rho*, I*, mean regret) of the single cell with the lowest mean regret over ``regret`` (N, R, K)."""
    mean = regret.mean(axis=0)
    a, b = np.unravel_index(int(np.argmin(mean)), mean.shape)
    return float(RHO_GRID[a]), float(I_GRID[b]), float(mean[a, b])


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def grid_regret(decoded: Sequence[tuple[float, float]], regret: np.ndarray) -> np.ndarray:
    """Regret of on-grid predictions read from the landscapes (no simulation)."""
    a = [int(np.argmin(np.abs(RHO_GRID - r))) for r, _ in decoded]
    b = [int(np.argmin(np.abs(I_GRID - i))) for _, i in decoded]
    return regret[np.arange(len(decoded)), a, b]


def train(cfg: TrainConfig, log: Callable[[str], None] | None = print, command: str = "",
          force: bool = False) -> dict[str, Any]:
    """Train one model and save it; returns a summary (paths, timings, train / validation regret).

    Refuses (:class:`FileExistsError`, before training) to replace an existing checkpoint, the shipped
    ones included, unless ``force``."""
    out = checkpoint_stem(cfg)
    check_outputs(out, force)
    import torch

    from .model import PredictorConfig, build_model, count_parameters, decode, joint_log_prob, save_checkpoint
    from .model import collate as _collate

    t_start = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    data = Path(cfg.data)
    df = read_dataset(data)
    train_bases = sorted(set(df.loc[df["split"] == "train", "base_model"]))
    unknown = [m for m in cfg.val_models if m not in train_bases]
    if unknown:
        held = sorted(set(unknown) & set(df.loc[df["split"] == "heldout", "base_model"]))
        raise ValueError(f"--val-models: {', '.join(map(repr, unknown))} not among the training base models of {data}"
                         + (f" ({', '.join(held)} held out)" if held else "")
                         + f"; valid: {', '.join(train_bases) or '(none)'}")
    val_mask = df["base_model"].isin(cfg.val_models)
    tr = load_samples(df, (df["split"] == "train") & ~val_mask)
    va = load_samples(df, (df["split"] == "train") & val_mask) if cfg.val_models else None
    if len(tr) == 0:
        raise ValueError(f"{data}: no training rows (split == 'train' and not in val_models)")
    pcfg = PredictorConfig(arch=cfg.arch)
    model = build_model(pcfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = (len(tr) + cfg.batch_size - 1) // cfg.batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch,
                                                pct_start=0.15)
    R, K = len(RHO_GRID), len(I_GRID)
    reg_all = torch.from_numpy(tr.regret.astype(np.float32))
    q_all = torch.softmax(-reg_all.reshape(len(tr), -1) / cfg.tau, dim=1)

    from .model import cell_features

    cells_cache: dict[int, list[np.ndarray]] = {}

    def batches(s: Samples, order: np.ndarray):
        cells = cells_cache.get(id(s))
        if cells is None:  # computed once per sample; batches are re-collated each epoch (new order)
            cells = cells_cache[id(s)] = [cell_features(f, pcfg) for f in s.op_feats]
        for k in range(0, len(order), cfg.batch_size):
            idx = order[k:k + cfg.batch_size]
            yield idx, _collate([s.op_feats[i] for i in idx], [s.hw[i] for i in idx], pcfg, [cells[i] for i in idx])

    history = []
    stopped_early = False
    for epoch in range(cfg.epochs):
        model.train()
        order = rng.permutation(len(tr))
        tot = 0.0
        for idx, b in batches(tr, order):
            rho_l, i_l = model(**b)
            lp = joint_log_prob(rho_l, i_l).reshape(len(idx), -1)
            q = q_all[idx]
            ce = -(q * lp).sum(1).mean()
            exp_regret = (lp.exp() * reg_all[idx].reshape(len(idx), -1)).sum(1).mean()
            loss = ce + cfg.regret_weight * exp_regret
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
        history.append(tot / len(tr))
        if log and (epoch % 10 == 0 or epoch == cfg.epochs - 1):
            log(f"epoch {epoch + 1}/{cfg.epochs} loss {history[-1]:.4f} ({time.perf_counter() - t_start:.0f}s)")
        if (time.perf_counter() - t_start) / 60 > cfg.max_minutes:
            stopped_early = True
            if log:
                log(f"stopping after epoch {epoch + 1}: {cfg.max_minutes} min budget reached")
            break
    train_s = time.perf_counter() - t_start

    def regret_of(s: Samples) -> float:
        model.eval()
        out = []
        with torch.inference_mode():
            for idx, b in batches(s, np.arange(len(s))):
                out += decode(*model(**b), pcfg)
        return float(grid_regret(out, s.regret).mean())

    summary: dict[str, Any] = {
        "arch": cfg.arch, "train_cases": len(tr), "train_models": sorted(set(tr.specs)),
        "epochs_run": len(history), "final_loss": history[-1], "train_s": round(train_s, 1),
        "stopped_early": stopped_early, "train_regret_grid": regret_of(tr), "parameters": count_parameters(model),
    }
    if va is not None and len(va):
        summary["val_models"] = list(cfg.val_models)
        summary["val_regret_grid"] = regret_of(va)
        rho_f, i_f, _ = fit_fixed_rule(tr.regret)
        summary["val_regret_fixed_grid"] = float(grid_regret([(rho_f, i_f)] * len(va), va.regret).mean())
    rho_f, i_f, fixed_regret = fit_fixed_rule(tr.regret)
    check_outputs(out, force)  # again: the file may have appeared while training
    meta = {
        "train_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        "dataset": {"path": _rel(data), "sha256": _file_sha256(data), "rows": int(len(df)),
                    "heldout_models": sorted(set(df.loc[df["split"] == "heldout", "base_model"])),
                    "heldout_specs": sorted(set(df.loc[df["split"] == "heldout", "spec"]))},
        "fixed_rule": {"rho_star": rho_f, "i_star": i_f, "train_mean_regret": fixed_regret},
        "command": command,
        "summary": summary,
        "torch_version": torch.__version__,
    }
    summary["checkpoint"] = str(save_checkpoint(out, model, pcfg, meta))
    if log:
        log(json.dumps({k: v for k, v in summary.items() if k != "train_models"}, indent=1))
    return summary


def _rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(Path(__file__).resolve().parent.parent))
    except ValueError:
        return str(p)
