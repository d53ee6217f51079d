"""Small architectures the extractor has never been tuned on (used by tests/test_extract.py).

Each public function returns ``(module, example_inputs)`` and takes a ``batch`` keyword, so it also works
as a model spec: ``sparoa graph tests/models_unseen.py:residual_cnn --batch 4``. Weights come from a fixed
seed; inputs from a seeded generator.
"""

from __future__ import annotations

import torch
from torch import nn

SEED = 0


def _seeded(build):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        return build().eval()


def _images(batch: int, channels: int = 3, size: int = 32) -> tuple[torch.Tensor]:
    return (torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(SEED + 1)),)


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.down(x))


class ResidualCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1), nn.ReLU())
        self.blocks = nn.Sequential(_BasicBlock(16, 16, 1), _BasicBlock(16, 32, 2), _BasicBlock(32, 32, 1))
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


def residual_cnn(batch: int = 2):
    return _seeded(ResidualCNN), _images(batch)


class InceptionLike(nn.Module):
    """Four parallel branches concatenated (1x1, 3x3, 5x5 via two 3x3, pool + 1x1), twice."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 24, 3, 2, 1)
        self.b1 = nn.Conv2d(24, 8, 1)
        self.b3 = nn.Sequential(nn.Conv2d(24, 12, 1), nn.ReLU(), nn.Conv2d(12, 16, 3, padding=1))
        self.b5 = nn.Sequential(nn.Conv2d(24, 4, 1), nn.ReLU(), nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(),
                                nn.Conv2d(8, 8, 3, padding=1))
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(24, 8, 1))
        self.fc = nn.Linear(40, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        y = torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], dim=1)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(torch.relu(y), 1), 1))


def branching_cnn(batch: int = 2):
    return _seeded(InceptionLike), _images(batch)


class TinyTransformer(nn.Module):
    """Token embedding + 2 ``nn.TransformerEncoderLayer`` (GELU, norm first) + classifier on token 0."""

    def __init__(self, vocab: int = 100, d: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(1, 16, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, 4, 128, dropout=0.1, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.cls = nn.Linear(d, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.cls(self.encoder(self.embed(ids) + self.pos)[:, 0])


def transformer_encoder(batch: int = 2):
    ids = torch.randint(0, 100, (batch, 16), generator=torch.Generator().manual_seed(SEED + 1))
    return _seeded(TinyTransformer), (ids,)


class TwoTowerMLP(nn.Module):
    """Flattened input split into two towers of different depth, concatenated, with a residual head."""

    def __init__(self) -> None:
        super().__init__()
        self.user = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU())
        self.item = nn.Sequential(nn.Linear(32, 48), nn.Tanh(), nn.Linear(48, 48), nn.Sigmoid(), nn.Linear(48, 32))
        self.head = nn.Linear(64, 64)
        self.out = nn.Linear(64, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)                      # a view of the graph input
        u, i = flat.split(32, dim=1)             # views feeding two towers
        z = torch.cat([self.user(u), self.item(i)], dim=1)
        return self.out(torch.relu(self.head(z)) + z)


def parallel_mlp(batch: int = 4):
    x = torch.randn(batch, 8, 8, generator=torch.Generator().manual_seed(SEED + 1))
    return _seeded(TwoTowerMLP), (x,)


class DepthwiseSeparable(nn.Module):
    """MobileNet-v1 style: depthwise 3x3 (groups = channels) + pointwise 1x1, ReLU6, with a hardswish."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish()]
        for cin, cout, stride in ((16, 32, 1), (32, 64, 2), (64, 64, 1)):
            layers += [nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU6(),
                       nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6()]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def depthwise_cnn(batch: int = 2):
    return _seeded(DepthwiseSeparable), _images(batch)


class SqueezeExcite(nn.Module):
    def __init__(self, c: int, r: int = 4) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(c, c // r, 1)
        self.expand = nn.Conv2d(c // r, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(torch.relu(self.reduce(s))))


class SENet(nn.Module):
    """Conv blocks with squeeze-excite gating and a residual connection around each."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, 2, 1)
        self.convs = nn.ModuleList(nn.Conv2d(32, 32, 3, 1, 1) for _ in range(2))
        self.ses = nn.ModuleList(SqueezeExcite(32) for _ in range(2))
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        for conv, se in zip(self.convs, self.ses):
            x = x + se(torch.relu(conv(x)))
        return self.fc(x.mean((2, 3)))


def squeeze_excite(batch: int = 2):
    return _seeded(SENet), _images(batch)


class MaskedAttention(nn.Module):
    """Hand-written attention with a causal mask built from ``arange`` (a constant subgraph) and a
    ``scaled_dot_product_attention`` call (decomposed by export into matmuls)."""

    def __init__(self, d: int = 32, seq: int = 12) -> None:
        super().__init__()
        self.seq = seq
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, 2, d // 2).permute(2, 0, 3, 1, 4).unbind(0)
        idx = torch.arange(self.seq)
        mask = idx[None, :] <= idx[:, None]
        manual = torch.softmax((q @ k.transpose(-1, -2)).masked_fill(~mask, float("-inf")) / (d // 2) ** 0.5, -1) @ v
        fused = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj((manual + fused).transpose(1, 2).reshape(b, s, d))


def masked_attention(batch: int = 2):
    x = torch.randn(batch, 12, 32, generator=torch.Generator().manual_seed(SEED + 1))
    return _seeded(MaskedAttention), (x,)


#: name -> builder, for parametrised tests
UNSEEN = {
    "residual_cnn": residual_cnn,
    "branching_cnn": branching_cnn,
    "transformer_encoder": transformer_encoder,
    "parallel_mlp": parallel_mlp,
    "depthwise_cnn": depthwise_cnn,
    "squeeze_excite": squeeze_excite,
    "masked_attention": masked_attention,
}


# ---- deliberately bad specs, for the CLI's error messages ----------------------------------------------

def returns_a_string():
    return "not a module", (torch.zeros(1),)


def returns_one_thing():
    return nn.Linear(2, 2)


def raises_inside(batch: int = 1):
    """Bad: the builder itself fails (the CLI must say so with its message, not print a traceback)."""
    raise RuntimeError("no weights for this batch")


NOT_A_FUNCTION = 3


def wrong_input_width():
    """Bad: the example input does not fit the first layer (export fails inside torch)."""
    return nn.Linear(4, 4), (torch.zeros(1, 5),)
