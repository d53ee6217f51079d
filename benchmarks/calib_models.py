"""Small calibration models: the small-op regime (sub-millisecond passes, 1e3-1e7 FLOP ops) that the zoo
does not cover, traced by ``benchmarks/fidelity.py`` next to the zoo's calibration half.

They are deliberately *different* architectures from the held-out unseen models of
``tests/models_unseen.py`` (which must stay out of every calibration trace): a plain VGG-style stack, a
separable net at 48x48 with 5x5 depthwise windows, a GELU MLP with layer norms, and a post-norm
attention block on float tokens. Each function takes ``batch`` and returns ``(module, example_inputs)``
(a ``file.py:function`` model spec). Weights and inputs come from fixed seeds.
"""

from __future__ import annotations

import torch
from torch import nn

SEED = 7


def _seeded(build):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        return build().eval()


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(SEED + 1)


class PlainCNN(nn.Module):
    """3x3 conv + BN + ReLU stages with max-pooling (VGG style) on 40x40 images."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for cin, cout in ((3, 12), (12, 24), (24, 24), (24, 48)):
            layers += [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
            if cout != 24 or cin == 24:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(48, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


def plain_cnn(batch: int = 1):
    return _seeded(PlainCNN), (torch.randn(batch, 3, 40, 40, generator=_gen()),)


class SeparableNet(nn.Module):
    """Depthwise 5x5 / 3x3 + pointwise 1x1 blocks with SiLU, a strided 1x1 shortcut, on 48x48 images."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 24, 3, 2, 1), nn.SiLU())
        self.dw1 = nn.Conv2d(24, 24, 5, 1, 2, groups=24)
        self.pw1 = nn.Conv2d(24, 40, 1)
        self.dw2 = nn.Conv2d(40, 40, 3, 2, 1, groups=40)
        self.pw2 = nn.Conv2d(40, 56, 1)
        self.short = nn.Conv2d(24, 56, 1, 2)
        self.head = nn.Linear(56, 9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = nn.functional.silu(self.pw1(nn.functional.silu(self.dw1(x))))
        y = self.pw2(nn.functional.silu(self.dw2(y)))
        z = torch.relu(y + self.short(x))
        return self.head(z.mean((2, 3)))


def separable_net(batch: int = 1):
    return _seeded(SeparableNet), (torch.randn(batch, 3, 48, 48, generator=_gen()),)


class GeluMLP(nn.Module):
    """Three GELU layers with layer norms and a residual, on 96 features."""

    def __init__(self) -> None:
        super().__init__()
        self.l1 = nn.Linear(96, 384)
        self.l2 = nn.Linear(384, 96)
        self.n1 = nn.LayerNorm(96)
        self.l3 = nn.Linear(96, 192)
        self.out = nn.Linear(192, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.n1(x + self.l2(nn.functional.gelu(self.l1(x))))
        return self.out(nn.functional.gelu(self.l3(x)))


def gelu_mlp(batch: int = 1):
    return _seeded(GeluMLP), (torch.randn(batch, 96, generator=_gen()),)


class TokenAttention(nn.Module):
    """One post-norm encoder layer (ReLU feed-forward) on 24 float tokens of width 48, mean-pooled."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(20, 48)
        layer = nn.TransformerEncoderLayer(48, 4, 96, dropout=0.0, activation="relu", batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.out = nn.Linear(48, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.encoder(self.inp(x)).mean(1))


def token_attention(batch: int = 1):
    return _seeded(TokenAttention), (torch.randn(batch, 24, 20, generator=_gen()),)


