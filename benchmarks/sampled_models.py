"""Sampled architecture suite: many seeded random small/medium networks for cost-model calibration.

In the spirit of nn-Meter, which predicts the latency of unseen models by sampling kernel configurations
widely instead of tracing a handful of hand-picked networks, this file exposes 40 random networks as
``file.py:function`` model specs (each function takes ``batch`` and returns ``(module, example_inputs)``,
like ``benchmarks/calib_models.py``):

* ``cnn_00`` .. ``cnn_23``: input ``3 x R x R`` with R in {16, 24, 32, 48, 64, 96}; a stem conv (k 3/5/7,
  stride 1/2); then 3-8 blocks, each drawn from: plain conv (k 1/3/5/7, stride 1/2, 8-256 channels),
  depthwise-separable (depthwise k 3/5/7 + pointwise), inverted residual (expand ratio 1-6, optional
  squeeze-excite with a sigmoid or hardsigmoid gate, residual add when shapes match), residual basic block
  (two 3x3 + add, 1x1 projection shortcut when shapes differ), pooling (MaxPool2d / AvgPool2d, kernel 2 or
  3), branch-and-concat (2-4 branches of 1x1 / 3x3 / 1x1->3x3 / pool(+1x1), then ``torch.cat``) and
  grouped conv (groups 2/4/8 where the channels divide). BatchNorm is on or off per model; activations
  are drawn (per model, sometimes per block) from ReLU, ReLU6, Hardswish, SiLU, GELU, Sigmoid,
  Hardsigmoid, LeakyReLU and Tanh. Head: global mean or AdaptiveAvgPool2d + flatten, optionally a hidden
  Linear, then a Linear to 10-1000 classes.
* ``transformer_00`` .. ``transformer_09``: T in 4..197 tokens, width in {32, 64, 96, 128, 192, 256, 384}
  with 1-8 heads dividing it, 1-3 layers, MLP ratio 1-4, GELU or ReLU, pre- or post-norm LayerNorm;
  input either token ids through ``nn.Embedding`` or float patches through ``nn.Linear`` (plus a learned
  position embedding); attention written by hand (matmul / softmax), through ``nn.MultiheadAttention``
  or as ``nn.TransformerEncoderLayer``; mean- or first-token pooling and a Linear head.
* ``mlp_00`` .. ``mlp_05``: 2-6 Linear layers of widths 16..2048 with the activations above and optional
  LayerNorm / BatchNorm1d.

Every architecture is drawn by its own ``random.Random(seed)`` (seed from the family and index), so it is
the same on every run and machine; weights come from ``torch.manual_seed`` of that seed and inputs from a
seeded ``torch.Generator`` (no downloads). While sampling, the batch-1 multiply-accumulate FLOPs
(2 per MAC, convs / linears / attention matmuls) and the activation volume are computed from the shapes,
and a draw is rejected and redrawn when it falls outside ~0.5-300 MFLOP (or would be too heavy on
elementwise work), which keeps each batch-1 forward around 0.1-30 ms on one CPU thread.

The sampling space is defined here independently of ``tests/models_unseen.py``: those held-out models
must stay out of every calibration trace, and no architecture of theirs was copied or used as a template.
``ALL`` lists every spec of this file.
"""

from __future__ import annotations

import math
import random
from typing import Any, Callable

import torch
from torch import nn

_FILE = "benchmarks/sampled_models.py"
N_CNN, N_TRANSFORMER, N_MLP = 24, 10, 6
_SEED_BASE = {"cnn": 11_000, "transformer": 22_000, "mlp": 33_000}

MIN_FLOPS, MAX_FLOPS = 0.5e6, 300e6   # batch-1 FLOPs (2 per MAC)
MAX_ACT_ELEMS = 6e6                    # batch-1 sum of intermediate activation elements (elementwise load)

RESOLUTIONS = (16, 24, 32, 48, 64, 96)
ACT_NAMES = ("relu", "relu6", "hardswish", "silu", "gelu", "sigmoid", "hardsigmoid", "leakyrelu", "tanh")
_ACTS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "relu6": nn.ReLU6, "hardswish": nn.Hardswish, "silu": nn.SiLU, "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid, "hardsigmoid": nn.Hardsigmoid, "leakyrelu": lambda: nn.LeakyReLU(0.1),
    "tanh": nn.Tanh,
}
CNN_BLOCKS = ("conv", "dwsep", "invres", "basic", "pool", "branch", "grouped")


def _act(name: str) -> nn.Module:
    return _ACTS[name]()


def _seeded(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build().eval()


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed + 1)


def _out(h: int, k: int, s: int, p: int) -> int:
    return (h + 2 * p - k) // s + 1


def _channels(rng: random.Random, lo: int = 8, hi: int = 256) -> int:
    """Mostly multiples of 8 (grouped convs divide), sometimes any multiple of 4, rarely any integer."""
    u = rng.random()
    if u < 0.65:
        return rng.randrange(max(8, (lo + 7) // 8 * 8), hi + 1, 8)
    if u < 0.9:
        return rng.randrange(max(4, (lo + 3) // 4 * 4), hi + 1, 4)
    return rng.randint(lo, hi)


# ---------------------------------------------------------------------------------------------------
# CNN sampling: a plain-data architecture plus its batch-1 cost, then module construction


class _Cost:
    def __init__(self) -> None:
        self.flops = 0.0
        self.acts = 0.0

    def conv(self, cin: int, cout: int, k: int, groups: int, h: int) -> None:
        self.flops += 2.0 * (cin // groups) * cout * k * k * h * h
        self.acts += cout * h * h


def _sample_conv_like(rng: random.Random, c: int, h: int, cost: _Cost, act: str, kind: str) -> tuple[dict, int, int]:
    stride = 2 if (h >= 4 and rng.random() < 0.35) else 1
    if kind == "conv":
        k = rng.choice((1, 3, 3, 5, 7))
        cout = _channels(rng)
        ho = _out(h, k, stride, k // 2)
        cost.conv(c, cout, k, 1, ho)
        return dict(type="conv", cin=c, cout=cout, k=k, stride=stride, act=act), cout, ho
    if kind == "grouped":
        gs = [g for g in (2, 4, 8) if c % g == 0]
        if not gs:
            return _sample_conv_like(rng, c, h, cost, act, "conv")
        g = rng.choice(gs)
        k = rng.choice((1, 3, 3, 5))
        cout = max(g, _channels(rng) // g * g)
        ho = _out(h, k, stride, k // 2)
        cost.conv(c, cout, k, g, ho)
        return dict(type="grouped", cin=c, cout=cout, k=k, stride=stride, groups=g, act=act), cout, ho
    if kind == "dwsep":
        k = rng.choice((3, 5, 7))
        cout = _channels(rng)
        ho = _out(h, k, stride, k // 2)
        cost.conv(c, c, k, c, ho)
        cost.conv(c, cout, 1, 1, ho)
        return dict(type="dwsep", cin=c, cout=cout, k=k, stride=stride, act=act), cout, ho
    raise AssertionError(kind)


def _sample_block(rng: random.Random, c: int, h: int, cost: _Cost, act: str) -> tuple[dict, int, int]:
    kinds = list(CNN_BLOCKS)
    if h < 4:
        kinds.remove("pool")
    kind = rng.choice(kinds)
    if kind in ("conv", "grouped", "dwsep"):
        return _sample_conv_like(rng, c, h, cost, act, kind)
    if kind == "pool":
        op = rng.choice(("max", "avg"))
        k = rng.choice((2, 3))
        if k == 2:
            s, p = 2, 0
        else:
            s, p = rng.choice((1, 2)), 1
        ho = _out(h, k, s, p)
        cost.acts += c * ho * ho
        return dict(type="pool", op=op, k=k, stride=s, pad=p), c, ho
    if kind == "invres":
        e = rng.randint(1, 6)
        hidden = c * e
        k = rng.choice((3, 5, 7))
        stride = 2 if (h >= 4 and rng.random() < 0.35) else 1
        cout = c if rng.random() < 0.5 else _channels(rng)
        ho = _out(h, k, stride, k // 2)
        if e != 1:
            cost.conv(c, hidden, 1, 1, h)
        cost.conv(hidden, hidden, k, hidden, ho)
        se = None
        if rng.random() < 0.5:
            se_c = max(4, hidden // rng.choice((4, 8, 16)))
            se = dict(c=se_c, gate=rng.choice(("sigmoid", "hardsigmoid")))
            cost.flops += 4.0 * hidden * se_c
            cost.acts += hidden * ho * ho
        cost.conv(hidden, cout, 1, 1, ho)
        return dict(type="invres", cin=c, cout=cout, hidden=hidden, k=k, stride=stride, se=se, act=act,
                    residual=(stride == 1 and cout == c)), cout, ho
    if kind == "basic":
        stride = 2 if (h >= 4 and rng.random() < 0.35) else 1
        cout = c if rng.random() < 0.5 else _channels(rng)
        ho = _out(h, 3, stride, 1)
        cost.conv(c, cout, 3, 1, ho)
        cost.conv(cout, cout, 3, 1, ho)
        proj = not (stride == 1 and cout == c)
        if proj:
            cost.conv(c, cout, 1, 1, ho)
        cost.acts += cout * ho * ho
        return dict(type="basic", cin=c, cout=cout, stride=stride, proj=proj, act=act), cout, ho
    if kind == "branch":
        branches = []
        total = 0
        for _ in range(rng.randint(2, 4)):
            b = rng.choice(("1x1", "3x3", "1x1-3x3", "pool", "pool-1x1"))
            if b == "pool":
                branches.append(dict(kind=b, op=rng.choice(("max", "avg")), cout=c))
                cost.acts += c * h * h
                total += c
                continue
            bc = _channels(rng, 8, 128)
            if b == "1x1":
                cost.conv(c, bc, 1, 1, h)
                branches.append(dict(kind=b, cout=bc))
            elif b == "3x3":
                cost.conv(c, bc, 3, 1, h)
                branches.append(dict(kind=b, cout=bc))
            elif b == "1x1-3x3":
                mid = _channels(rng, 8, 96)
                cost.conv(c, mid, 1, 1, h)
                cost.conv(mid, bc, 3, 1, h)
                branches.append(dict(kind=b, mid=mid, cout=bc))
            else:
                cost.acts += c * h * h
                cost.conv(c, bc, 1, 1, h)
                branches.append(dict(kind=b, op=rng.choice(("max", "avg")), cout=bc))
            total += bc
        cost.acts += total * h * h
        return dict(type="branch", cin=c, cout=total, branches=branches, act=act), total, h
    raise AssertionError(kind)


def _sample_cnn(rng: random.Random) -> dict:
    while True:
        cost = _Cost()
        r = rng.choice(RESOLUTIONS)
        bn = rng.random() < 0.6
        act = rng.choice(ACT_NAMES)
        mixed = rng.random() < 0.3            # per-block activations
        k = rng.choice((3, 3, 5, 7))
        stem_stride = rng.choice((1, 2)) if r >= 32 else 1
        c = stem_c = _channels(rng, 8, 64)
        h = _out(r, k, stem_stride, k // 2)
        cost.conv(3, c, k, 1, h)
        blocks = []
        for _ in range(rng.randint(3, 8)):
            b, c, h = _sample_block(rng, c, h, cost, rng.choice(ACT_NAMES) if mixed else act)
            blocks.append(b)
        head_pool = rng.choice(("mean", "adaptive"))
        hidden = _channels(rng, 32, 512) if rng.random() < 0.3 else None
        classes = rng.randint(10, 1000)
        cost.flops += 2.0 * c * (hidden or classes) + (2.0 * hidden * classes if hidden else 0.0)
        if MIN_FLOPS <= cost.flops <= MAX_FLOPS and cost.acts <= MAX_ACT_ELEMS:
            return dict(res=r, bn=bn, act=act, stem=dict(k=k, stride=stem_stride), stem_c=stem_c, blocks=blocks, head_pool=head_pool, hidden=hidden,
                        classes=classes, c_final=c, mflops=cost.flops / 1e6, macts=cost.acts / 1e6)


def _conv_bn_act(cin: int, cout: int, k: int, stride: int, groups: int, bn: bool, act: str | None) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    if act is not None:
        layers.append(_act(act))
    return nn.Sequential(*layers)


class _SqueezeExcite(nn.Module):
    def __init__(self, c: int, se_c: int, gate: str) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(c, se_c, 1)
        self.expand = nn.Conv2d(se_c, c, 1)
        self.gate = _act(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.expand(torch.relu(self.reduce(s))))


class _InvertedResidual(nn.Module):
    def __init__(self, b: dict, bn: bool) -> None:
        super().__init__()
        cin, hidden = b["cin"], b["hidden"]
        self.expand = _conv_bn_act(cin, hidden, 1, 1, 1, bn, b["act"]) if hidden != cin else nn.Identity()
        self.dw = _conv_bn_act(hidden, hidden, b["k"], b["stride"], hidden, bn, b["act"])
        self.se = _SqueezeExcite(hidden, b["se"]["c"], b["se"]["gate"]) if b["se"] else nn.Identity()
        self.project = _conv_bn_act(hidden, b["cout"], 1, 1, 1, bn, None)
        self.residual = b["residual"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.dw(self.expand(x))))
        return x + y if self.residual else y


class _BasicBlock(nn.Module):
    def __init__(self, b: dict, bn: bool) -> None:
        super().__init__()
        self.conv1 = _conv_bn_act(b["cin"], b["cout"], 3, b["stride"], 1, bn, b["act"])
        self.conv2 = _conv_bn_act(b["cout"], b["cout"], 3, 1, 1, bn, None)
        self.short = _conv_bn_act(b["cin"], b["cout"], 1, b["stride"], 1, bn, None) if b["proj"] else nn.Identity()
        self.act = _act(b["act"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.short(x))


class _BranchConcat(nn.Module):
    def __init__(self, b: dict, bn: bool) -> None:
        super().__init__()
        cin, act = b["cin"], b["act"]
        branches: list[nn.Module] = []
        for br in b["branches"]:
            kind = br["kind"]
            if kind == "1x1":
                branches.append(_conv_bn_act(cin, br["cout"], 1, 1, 1, bn, act))
            elif kind == "3x3":
                branches.append(_conv_bn_act(cin, br["cout"], 3, 1, 1, bn, act))
            elif kind == "1x1-3x3":
                branches.append(nn.Sequential(_conv_bn_act(cin, br["mid"], 1, 1, 1, bn, act),
                                              _conv_bn_act(br["mid"], br["cout"], 3, 1, 1, bn, act)))
            else:
                pool = nn.MaxPool2d(3, 1, 1) if br["op"] == "max" else nn.AvgPool2d(3, 1, 1)
                if kind == "pool":
                    branches.append(pool)
                else:
                    branches.append(nn.Sequential(pool, _conv_bn_act(cin, br["cout"], 1, 1, 1, bn, act)))
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([br(x) for br in self.branches], dim=1)


class SampledCNN(nn.Module):
    def __init__(self, arch: dict) -> None:
        super().__init__()
        bn = arch["bn"]
        self.stem = _conv_bn_act(3, arch["stem_c"], arch["stem"]["k"], arch["stem"]["stride"], 1, bn, arch["act"])
        blocks: list[nn.Module] = []
        for b in arch["blocks"]:
            t = b["type"]
            if t == "conv":
                blocks.append(_conv_bn_act(b["cin"], b["cout"], b["k"], b["stride"], 1, bn, b["act"]))
            elif t == "grouped":
                blocks.append(_conv_bn_act(b["cin"], b["cout"], b["k"], b["stride"], b["groups"], bn, b["act"]))
            elif t == "dwsep":
                blocks.append(nn.Sequential(_conv_bn_act(b["cin"], b["cin"], b["k"], b["stride"], b["cin"], bn, b["act"]),
                                            _conv_bn_act(b["cin"], b["cout"], 1, 1, 1, bn, b["act"])))
            elif t == "pool":
                cls = nn.MaxPool2d if b["op"] == "max" else nn.AvgPool2d
                blocks.append(cls(b["k"], b["stride"], b["pad"]))
            elif t == "invres":
                blocks.append(_InvertedResidual(b, bn))
            elif t == "basic":
                blocks.append(_BasicBlock(b, bn))
            elif t == "branch":
                blocks.append(_BranchConcat(b, bn))
            else:  # pragma: no cover
                raise AssertionError(t)
        self.blocks = nn.Sequential(*blocks)
        self.adaptive = nn.AdaptiveAvgPool2d(1) if arch["head_pool"] == "adaptive" else None
        c, hidden = arch["c_final"], arch["hidden"]
        self.fc_hidden = nn.Sequential(nn.Linear(c, hidden), _act(arch["act"])) if hidden else nn.Identity()
        self.fc = nn.Linear(hidden or c, arch["classes"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        x = torch.flatten(self.adaptive(x), 1) if self.adaptive is not None else x.mean((2, 3))
        return self.fc(self.fc_hidden(x))


# ---------------------------------------------------------------------------------------------------
# transformers

DIMS = (32, 64, 96, 128, 192, 256, 384)


def _sample_transformer(rng: random.Random) -> dict:
    while True:
        t = rng.randint(4, 197)
        d = rng.choice(DIMS)
        heads = rng.choice([h for h in range(1, 9) if d % h == 0])
        layers = rng.randint(1, 3)
        ratio = rng.choice((1, 1.5, 2, 2.5, 3, 4))
        ffn = int(d * ratio)
        a = dict(tokens=t, dim=d, heads=heads, layers=layers, ffn=ffn, act=rng.choice(("gelu", "relu")),
                 norm_first=rng.random() < 0.5, input=rng.choice(("embedding", "patches")),
                 attn=rng.choice(("manual", "mha", "encoder")), pool=rng.choice(("mean", "first")),
                 classes=rng.randint(10, 1000))
        if a["input"] == "embedding":
            a["vocab"] = rng.randint(64, 8192)
            in_flops = 0.0
        else:
            a["patch_dim"] = rng.choice((12, 27, 48, 64, 75, 147, 192, 256, 588, 768))
            in_flops = 2.0 * t * a["patch_dim"] * d
        per_layer = 2.0 * t * d * 3 * d + 4.0 * t * t * d + 2.0 * t * d * d + 4.0 * t * d * ffn
        flops = in_flops + layers * per_layer + 2.0 * d * a["classes"]
        acts = layers * (t * (8 * d + 2 * ffn) + 3 * heads * t * t)
        if MIN_FLOPS <= flops <= MAX_FLOPS and acts <= MAX_ACT_ELEMS:
            a["mflops"], a["macts"] = flops / 1e6, acts / 1e6
            return a


class _ManualAttention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, (d // heads) ** -0.5
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * self.scale, dim=-1)
        y = torch.matmul(attn, v).transpose(1, 2).reshape(b, t, d)
        return self.proj(y)


class _MHAWrapper(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(d, heads, dropout=0.0, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mha(x, x, x, need_weights=False)[0]


class _Layer(nn.Module):
    """Hand-written encoder layer around a manual or nn.MultiheadAttention attention."""

    def __init__(self, a: dict) -> None:
        super().__init__()
        d = a["dim"]
        self.attn = _ManualAttention(d, a["heads"]) if a["attn"] == "manual" else _MHAWrapper(d, a["heads"])
        self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, a["ffn"]), nn.GELU() if a["act"] == "gelu" else nn.ReLU(),
                                 nn.Linear(a["ffn"], d))
        self.norm_first = a["norm_first"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm_first:
            x = x + self.attn(self.n1(x))
            return x + self.mlp(self.n2(x))
        x = self.n1(x + self.attn(x))
        return self.n2(x + self.mlp(x))


class SampledTransformer(nn.Module):
    def __init__(self, a: dict) -> None:
        super().__init__()
        d = a["dim"]
        if a["input"] == "embedding":
            self.inp: nn.Module = nn.Embedding(a["vocab"], d)
        else:
            self.inp = nn.Linear(a["patch_dim"], d)
        self.pos = nn.Parameter(torch.randn(1, a["tokens"], d) * 0.02)
        if a["attn"] == "encoder":
            self.layers = nn.ModuleList(
                nn.TransformerEncoderLayer(d, a["heads"], a["ffn"], dropout=0.0, activation=a["act"],
                                           batch_first=True, norm_first=a["norm_first"])
                for _ in range(a["layers"]))
        else:
            self.layers = nn.ModuleList(_Layer(a) for _ in range(a["layers"]))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, a["classes"])
        self.pool = a["pool"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inp(x) + self.pos
        for layer in self.layers:
            x = layer(x)
        x = self.norm(x)
        x = x.mean(1) if self.pool == "mean" else x[:, 0]
        return self.head(x)


# ---------------------------------------------------------------------------------------------------
# MLPs


def _sample_mlp(rng: random.Random) -> dict:
    while True:
        n = rng.randint(2, 6)
        widths = [rng.choice((16, 32, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048))
                  if rng.random() < 0.7 else rng.randint(16, 2048) for _ in range(n + 1)]
        flops = sum(2.0 * widths[i] * widths[i + 1] for i in range(n))
        if MIN_FLOPS <= flops <= MAX_FLOPS:
            return dict(widths=widths, act=rng.choice(ACT_NAMES), norm=rng.choice(("none", "layer", "batch")),
                        mflops=flops / 1e6, macts=sum(widths) / 1e6)


class SampledMLP(nn.Module):
    def __init__(self, a: dict) -> None:
        super().__init__()
        w = a["widths"]
        layers: list[nn.Module] = []
        for i in range(len(w) - 1):
            layers.append(nn.Linear(w[i], w[i + 1]))
            if i < len(w) - 2:
                if a["norm"] == "layer":
                    layers.append(nn.LayerNorm(w[i + 1]))
                elif a["norm"] == "batch":
                    layers.append(nn.BatchNorm1d(w[i + 1]))
                layers.append(_act(a["act"]))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# ---------------------------------------------------------------------------------------------------
# specs

_SAMPLERS = {"cnn": _sample_cnn, "transformer": _sample_transformer, "mlp": _sample_mlp}


def seed_of(family: str, index: int) -> int:
    return _SEED_BASE[family] + index


def architecture(family: str, index: int) -> dict[str, Any]:
    """The plain-data architecture of ``{family}_{index:02d}`` (deterministic; includes the batch-1 MFLOP)."""
    return _SAMPLERS[family](random.Random(seed_of(family, index)))


def build(family: str, index: int, batch: int = 1) -> tuple[nn.Module, tuple]:
    arch = architecture(family, index)
    seed = seed_of(family, index)
    g = _gen(seed)
    if family == "cnn":
        module = _seeded(seed, lambda: SampledCNN(arch))
        return module, (torch.randn(batch, 3, arch["res"], arch["res"], generator=g),)
    if family == "transformer":
        module = _seeded(seed, lambda: SampledTransformer(arch))
        if arch["input"] == "embedding":
            x = torch.randint(0, arch["vocab"], (batch, arch["tokens"]), generator=g)
        else:
            x = torch.randn(batch, arch["tokens"], arch["patch_dim"], generator=g)
        return module, (x,)
    module = _seeded(seed, lambda: SampledMLP(arch))
    return module, (torch.randn(batch, arch["widths"][0], generator=g),)


def _make(family: str, index: int) -> Callable[..., tuple[nn.Module, tuple]]:
    def fn(batch: int = 1) -> tuple[nn.Module, tuple]:
        return build(family, index, batch)

    fn.__name__ = fn.__qualname__ = f"{family}_{index:02d}"
    fn.__doc__ = f"Sampled {family} #{index} (seed {seed_of(family, index)}); returns (module, example_inputs)."
    return fn


ALL: list[str] = []
for _family, _count in (("cnn", N_CNN), ("transformer", N_TRANSFORMER), ("mlp", N_MLP)):
    for _i in range(_count):
        globals()[f"{_family}_{_i:02d}"] = _make(_family, _i)
        ALL.append(f"{_FILE}:{_family}_{_i:02d}")
del _family, _count, _i
