"""SparseLoom's tasks: small models trained on real data that scikit-learn ships, and the large zoo models.

Two kinds of task serve requests side by side on one SoC:

* **Small tasks with real accuracy.** Each is a small torch model cut into ``N_BLOCKS`` aligned blocks
  (one MAC layer per block), trained here on a dataset that scikit-learn installs with itself (no
  download) and evaluated on a held-out split that training never sees:

  ===============  ============================  =====================================  =========
  task             data (sklearn loader)         model (blocks)                         test split
  ===============  ============================  =====================================  =========
  ``digits-cnn``   ``load_digits``: 1797 8x8     conv16 | conv32+pool | conv64+pool |   30 %
                   grey images, 10 classes       linear 256->10
  ``cancer-mlp``   ``load_breast_cancer``: 569   linear 30->64 | 64->64 | 64->32 |      30 %
                   tumours, 30 features, 2 cls   32->2
  ``wine-mlp``     ``load_wine``: 178 wines, 13  linear 13->32 | 32->32 | 32->16 |      30 %
                   chemical features, 3 cls      16->3
  ===============  ============================  =====================================  =========

  Splits are stratified with ``random_state=0``; tabular features are standardised with the training
  split's mean and standard deviation (stored with the weights). Training: Adam, fixed epochs, one
  thread, ``torch.manual_seed(seed)``: the same command gives the same weights on the same torch build.

* **Large zoo models with latency only** (``resnet50``, ``bert_base``, ``vit_small`` from
  :mod:`sparoa_env.zoo`): random weights, so no accuracy exists for them and none is reported; their
  variants and stitched variants carry simulated latency and memory only, and their requests have a
  latency SLO but no accuracy SLO.

torch and scikit-learn are imported inside the functions that need them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["SmallTask", "SMALL_TASKS", "LARGE_TASKS", "N_BLOCKS", "DATA_DIR", "MODEL_DIR", "load_split",
           "build_model", "train_task", "load_trained", "evaluate_accuracy", "REQUEST_BATCH"]

N_BLOCKS = 4
DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "loom"
MODEL_DIR = DATA_DIR / "models"
#: samples per request of a small task (a request is a batch, e.g. the frames of one sensor window)
REQUEST_BATCH = 64


@dataclass(frozen=True)
class SmallTask:
    name: str
    loader: str              # sklearn.datasets function name
    kind: str                # "cnn" | "mlp"
    widths: tuple[int, ...]  # mlp: hidden widths; cnn: conv channels
    n_classes: int
    epochs: int
    lr: float
    test_size: float = 0.3


SMALL_TASKS: dict[str, SmallTask] = {
    "digits-cnn": SmallTask("digits-cnn", "load_digits", "cnn", (16, 32, 64), 10, epochs=30, lr=3e-3),
    "cancer-mlp": SmallTask("cancer-mlp", "load_breast_cancer", "mlp", (64, 64, 32), 2, epochs=60, lr=2e-3),
    "wine-mlp": SmallTask("wine-mlp", "load_wine", "mlp", (32, 32, 16), 3, epochs=80, lr=3e-3),
}

#: large zoo models: latency and memory only (random weights)
LARGE_TASKS: tuple[str, ...] = ("resnet50", "bert_base", "vit_small")


def _task(name: str) -> SmallTask:
    try:
        return SMALL_TASKS[name]
    except KeyError:
        raise ValueError(f"unknown small task {name!r}; valid: {', '.join(SMALL_TASKS)}") from None


def load_split(name: str) -> dict[str, Any]:
    """Train / test arrays of task ``name`` (float32 features, int64 labels), standardised for tabular data."""
    import numpy as np
    import sklearn.datasets
    from sklearn.model_selection import train_test_split

    t = _task(name)
    ds = getattr(sklearn.datasets, t.loader)()
    x = ds.data.astype(np.float32)
    y = ds.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=t.test_size, random_state=0, stratify=y)
    if t.kind == "cnn":
        x_tr = (x_tr / 16.0).reshape(-1, 1, 8, 8)
        x_te = (x_te / 16.0).reshape(-1, 1, 8, 8)
        mean = std = None
    else:
        mean = x_tr.mean(axis=0)
        std = x_tr.std(axis=0) + 1e-6
        x_tr = (x_tr - mean) / std
        x_te = (x_te - mean) / std
    return {"x_train": x_tr.astype(np.float32), "y_train": y_tr, "x_test": x_te.astype(np.float32), "y_test": y_te,
            "mean": mean, "std": std, "source": f"sklearn.datasets.{t.loader} (shipped with scikit-learn)"}


def build_model(name: str) -> "torch.nn.Sequential":
    """The untrained model of task ``name``: an ``nn.Sequential`` of ``N_BLOCKS`` blocks, one MAC layer each."""
    from torch import nn

    t = _task(name)
    if t.kind == "cnn":
        c1, c2, c3 = t.widths
        blocks = [
            nn.Sequential(nn.Conv2d(1, c1, 3, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
            nn.Sequential(nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()),
            nn.Sequential(nn.Linear(c3 * 4, t.n_classes)),
        ]
    else:
        n_in = {"load_breast_cancer": 30, "load_wine": 13}[t.loader]
        h1, h2, h3 = t.widths
        blocks = [
            nn.Sequential(nn.Linear(n_in, h1), nn.ReLU()),
            nn.Sequential(nn.Linear(h1, h2), nn.ReLU()),
            nn.Sequential(nn.Linear(h2, h3), nn.ReLU()),
            nn.Sequential(nn.Linear(h3, t.n_classes)),
        ]
    assert len(blocks) == N_BLOCKS
    return nn.Sequential(*blocks)


def train_task(name: str, *, seed: int = 0) -> "torch.nn.Sequential":
    """Train task ``name``'s model on its training split (deterministic for a given torch build)."""
    import torch

    t = _task(name)
    split = load_split(name)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(name)
            x = torch.from_numpy(split["x_train"])
            y = torch.from_numpy(split["y_train"])
            opt = torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=1e-4)
            gen = torch.Generator().manual_seed(seed)
            for _ in range(t.epochs):
                perm = torch.randperm(len(x), generator=gen)
                for i in range(0, len(x), 32):
                    idx = perm[i:i + 32]
                    opt.zero_grad()
                    loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
                    loss.backward()
                    opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def model_path(name: str) -> Path:
    return MODEL_DIR / f"{name}.pt"


def save_trained(name: str, model: "torch.nn.Module") -> Path:
    import torch

    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    p = model_path(name)
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, p)
    return p


def load_trained(name: str) -> "torch.nn.Sequential":
    """The shipped trained weights of task ``name`` (``sparoa loom build`` writes them)."""
    import torch

    p = model_path(name)
    if not p.is_file():
        raise FileNotFoundError(f"no trained weights for task {name!r} at {p}; run `sparoa loom build`")
    model = build_model(name)
    model.load_state_dict(torch.load(p, weights_only=True))
    return model.eval()


def evaluate_accuracy(model: Any, x_test: Any, y_test: Any) -> tuple[int, int]:
    """(correct, total) of ``model`` (any callable tensor -> logits) on the held-out split."""
    import torch

    with torch.no_grad():
        logits = model(torch.from_numpy(x_test))
    pred = logits.argmax(dim=1).numpy()
    return int((pred == y_test).sum()), int(len(y_test))
