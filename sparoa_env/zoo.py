"""Named reference models and their sparse variants, built offline with fixed seeds.

Every model is built from code with random weights (``torch.manual_seed(seed)`` inside a forked RNG, so
the caller's random state is untouched); nothing is downloaded. torch, transformers and geffnet are
imported only when a model is built: ``import sparoa_env.zoo`` is cheap and torch-free.

=====================  =============================================================  ==================
name                   built from                                                     example input
=====================  =============================================================  ==================
mobilenet_v3_small     ``geffnet.mobilenetv3_small_100`` (exportable activations)     image 3x224x224
mobilenet_v3_large     ``geffnet.mobilenetv3_large_100``                              image 3x224x224
mobilenet_v2           ``geffnet.mobilenetv2_100``                                    image 3x224x224
efficientnet_b0        ``geffnet.efficientnet_b0``                                    image 3x224x224
resnet18               transformers ``ResNetForImageClassification`` basic [2,2,2,2]   image 3x224x224
resnet50               transformers ``ResNetForImageClassification`` bottleneck [3,4,6,3]  image 3x224x224
vit_tiny               transformers ``ViTForImageClassification`` 192 wide, 12 layers, 3 heads, patch 16
vit_small              transformers ``ViTForImageClassification`` 384 wide, 12 layers, 6 heads, patch 16
swin_tiny              transformers ``SwinForImageClassification`` (Swin-T: 96, [2,2,6,2], window 7)
bert_tiny              transformers ``BertModel``: 4 layers, hidden 256, 4 heads, FFN 1024   128 token ids
bert_base              transformers ``BertModel``: 12 layers, hidden 768, 12 heads, FFN 3072 128 token ids
=====================  =============================================================  ==================

Image models have 1000 classes and return logits; the BERT encoders (no pooler) return the last hidden
state. Transformers models use eager attention (matmul + softmax, which runs on any device). Example
inputs are drawn from ``torch.Generator().manual_seed(seed + 1)``: a standard-normal image batch, or
uniform token ids in ``[0, vocab)``.

Sparse variants (``name@variant``) are real transforms of the weights of every ``nn.Conv1d/2d/3d`` and
``nn.Linear`` (embeddings and norms are left alone), one layer at a time:

* ``unstructured-P``: magnitude pruning: the ``round(P * numel)`` smallest-magnitude weights of each
  layer set to zero (exactly, ties broken by position).
* ``2:4``: semi-structured: in every group of 4 consecutive weights along the input-channel axis, the 2
  smallest magnitudes set to zero. Layers whose input channels per group are not a multiple of 4 (the RGB
  stem, depthwise convolutions) stay dense.
* ``structured-P``: channel pruning: the ``round(P * out_channels)`` output channels (filters / rows)
  with the smallest L1 norm set to zero, with their bias. Shapes are kept (a deployed engine may drop the
  channels); zeroed filters followed by a norm layer still emit its shift, as the pruned model would.

The transformed weights are recorded on the root module (``_sparoa_sparsity_patterns``: parameter FQN
-> pattern) and :func:`sparoa_env.extract.extract_graph` turns that into ``OpNode.sparsity_pattern``.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from sparoa_env.graph import OpGraph

__all__ = ["MODELS", "SHIPPED_VARIANTS", "SHIPPED", "DEFAULT_SEED", "ZooEntry", "ENTRIES", "parse_spec",
           "parse_variant", "canonical_spec", "build", "build_module", "example_inputs", "apply_variant",
           "extract_zoo_graph", "graph_filename", "GRAPH_DIR"]

DEFAULT_SEED = 0
GRAPH_DIR = Path(__file__).parent / "data" / "graphs"
SEQ_LEN = 128
IMAGE_SHAPE = (3, 224, 224)


@dataclass(frozen=True)
class ZooEntry:
    name: str
    source: str        # what builds it, for meta and docs
    input_kind: str    # "image" or "tokens"
    family: str        # "cnn" or "transformer"


def _geffnet(fn: str) -> Callable[[], Any]:
    def build() -> Any:
        try:
            with warnings.catch_warnings():  # geffnet's import-time torch.jit.script decorators are deprecated
                warnings.simplefilter("ignore", DeprecationWarning)
                import geffnet
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ImportError("the MobileNet/EfficientNet zoo models need geffnet: "
                              "pip install --no-deps geffnet==1.0.2") from e
        # Exportable layers: plain-Python activations instead of TorchScript ones that torch.export cannot trace.
        from geffnet.config import set_layer_config

        with set_layer_config(exportable=True, no_jit=True):
            return getattr(geffnet, fn)(pretrained=False)
    return build


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as e:  # pragma: no cover
        raise ImportError("the ResNet/ViT/Swin/BERT zoo models need transformers: "
                          "pip install 'sparoa-env[torch]'") from e
    return transformers


def _hf_resnet(layer_type: str, depths: list[int], hidden: list[int]) -> Callable[[], Any]:
    def build() -> Any:
        tf = _transformers()
        cfg = tf.ResNetConfig(layer_type=layer_type, depths=depths, hidden_sizes=hidden, embedding_size=64,
                              num_labels=1000)
        return _FirstOutput(tf.ResNetForImageClassification(cfg))
    return build


def _hf_vit(hidden: int, heads: int) -> Callable[[], Any]:
    def build() -> Any:
        tf = _transformers()
        cfg = tf.ViTConfig(hidden_size=hidden, num_hidden_layers=12, num_attention_heads=heads,
                           intermediate_size=4 * hidden, image_size=224, patch_size=16, num_labels=1000,
                           attn_implementation="eager")
        return _FirstOutput(tf.ViTForImageClassification(cfg))
    return build


def _hf_swin_tiny() -> Any:
    tf = _transformers()
    cfg = tf.SwinConfig(image_size=224, patch_size=4, embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
                        window_size=7, num_labels=1000, attn_implementation="eager")
    return _FirstOutput(tf.SwinForImageClassification(cfg))


def _hf_bert(layers: int, hidden: int, heads: int) -> Callable[[], Any]:
    def build() -> Any:
        tf = _transformers()
        cfg = tf.BertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                            intermediate_size=4 * hidden, max_position_embeddings=512, attn_implementation="eager")
        return _FirstOutput(tf.BertModel(cfg, add_pooling_layer=False))
    return build


_BUILDERS: dict[str, tuple[ZooEntry, Callable[[], Any]]] = {}


def _add(name: str, source: str, input_kind: str, family: str, builder: Callable[[], Any]) -> None:
    _BUILDERS[name] = (ZooEntry(name, source, input_kind, family), builder)


_add("mobilenet_v3_small", "geffnet.mobilenetv3_small_100", "image", "cnn", _geffnet("mobilenetv3_small_100"))
_add("mobilenet_v3_large", "geffnet.mobilenetv3_large_100", "image", "cnn", _geffnet("mobilenetv3_large_100"))
_add("mobilenet_v2", "geffnet.mobilenetv2_100", "image", "cnn", _geffnet("mobilenetv2_100"))
_add("efficientnet_b0", "geffnet.efficientnet_b0", "image", "cnn", _geffnet("efficientnet_b0"))
_add("resnet18", "transformers ResNetForImageClassification(basic, depths [2,2,2,2])", "image", "cnn",
     _hf_resnet("basic", [2, 2, 2, 2], [64, 128, 256, 512]))
_add("resnet50", "transformers ResNetForImageClassification(bottleneck, depths [3,4,6,3])", "image", "cnn",
     _hf_resnet("bottleneck", [3, 4, 6, 3], [256, 512, 1024, 2048]))
_add("vit_tiny", "transformers ViTForImageClassification(hidden 192, 12 layers, 3 heads, patch 16)", "image",
     "transformer", _hf_vit(192, 3))
_add("vit_small", "transformers ViTForImageClassification(hidden 384, 12 layers, 6 heads, patch 16)", "image",
     "transformer", _hf_vit(384, 6))
_add("swin_tiny", "transformers SwinForImageClassification(embed 96, depths [2,2,6,2], window 7)", "image",
     "transformer", _hf_swin_tiny)
_add("bert_tiny", "transformers BertModel(4 layers, hidden 256, 4 heads, FFN 1024), seq 128", "tokens",
     "transformer", _hf_bert(4, 256, 4))
_add("bert_base", "transformers BertModel(12 layers, hidden 768, 12 heads, FFN 3072), seq 128", "tokens",
     "transformer", _hf_bert(12, 768, 12))

#: Zoo model names (dense).
MODELS: tuple[str, ...] = tuple(_BUILDERS)
ENTRIES: dict[str, ZooEntry] = {n: e for n, (e, _) in _BUILDERS.items()}
#: Sparse variants whose graphs ship with the package (besides every dense model).
SHIPPED_VARIANTS: tuple[str, ...] = (
    "mobilenet_v3_small@unstructured-0.7", "mobilenet_v3_small@unstructured-0.9", "mobilenet_v3_small@2:4",
    "resnet50@unstructured-0.9", "resnet18@structured-0.5", "bert_tiny@unstructured-0.8",
)
SHIPPED: tuple[str, ...] = MODELS + SHIPPED_VARIANTS
VARIANT_FORMS = ("unstructured-P", "2:4", "structured-P")  # P a fraction in (0, 1)

_VARIANT_RE = re.compile(r"^(unstructured|structured)-(\d*\.?\d+)$")


def parse_variant(variant: str) -> tuple[str, float]:
    """``"unstructured-0.7"`` -> ``("unstructured", 0.7)``; ``"2:4"`` -> ``("2:4", 0.5)``."""
    v = variant.strip()
    if v == "2:4":
        return "2:4", 0.5
    m = _VARIANT_RE.match(v)
    if not m:
        raise ValueError(f"unknown sparse variant {variant!r}: expected one of {', '.join(VARIANT_FORMS)} "
                         "with P a fraction in (0, 1), e.g. 'unstructured-0.7'")
    level = float(m.group(2))
    if not 0.0 < level < 1.0:
        raise ValueError(f"sparse variant {variant!r}: the level must be a fraction in (0, 1), got {level}")
    return m.group(1), level


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``"resnet50@unstructured-0.9"`` -> ``("resnet50", "unstructured-0.9")``; validates both halves."""
    name, sep, variant = spec.partition("@")
    if name not in _BUILDERS:
        import difflib

        close = difflib.get_close_matches(name, MODELS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown zoo model {name!r}{hint}; expected one of: {', '.join(MODELS)} "
                         f"(optionally with @variant: {', '.join(VARIANT_FORMS)})")
    if not sep:
        return name, None
    kind, level = parse_variant(variant)
    return name, _canonical_variant(kind, level)


def _canonical_variant(kind: str, level: float) -> str:
    return "2:4" if kind == "2:4" else f"{kind}-{level:g}"


def canonical_spec(spec: str) -> str:
    name, variant = parse_spec(spec)
    return name if variant is None else f"{name}@{variant}"


def graph_filename(spec: str) -> str:
    """File name of a shipped graph: ``resnet50__unstructured-0.9.json``, ``mobilenet_v3_small__2_4.json``."""
    return canonical_spec(spec).replace("@", "__").replace(":", "_") + ".json"


# ---------------------------------------------------------------------------------------------------
# building

def build_module(name: str, *, seed: int = DEFAULT_SEED) -> "torch.nn.Module":
    """The dense model ``name`` in eval mode, weights drawn after ``torch.manual_seed(seed)``."""
    import torch

    if name not in _BUILDERS:
        parse_spec(name)  # raises with the list of names
    _, builder = _BUILDERS[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = builder()
    return module.eval()


def example_inputs(name: str, batch: int = 1, *, seed: int = DEFAULT_SEED) -> tuple["torch.Tensor", ...]:
    """The standard input of zoo model ``name`` (variants share their base model's input)."""
    import torch

    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    base, _ = parse_spec(name)
    entry = ENTRIES[base]
    gen = torch.Generator().manual_seed(seed + 1)
    if entry.input_kind == "image":
        return (torch.randn((batch, *IMAGE_SHAPE), generator=gen),)
    vocab = 30522  # BertConfig default
    return (torch.randint(0, vocab, (batch, SEQ_LEN), generator=gen),)


def build(name: str, batch: int = 1, *, seed: int = DEFAULT_SEED) -> tuple["torch.nn.Module", tuple]:
    """``(module, example_inputs)`` for a zoo spec, ``@variant`` applied to the weights."""
    base, variant = parse_spec(name)
    inputs = example_inputs(base, batch, seed=seed)
    module = build_module(base, seed=seed)
    if variant is not None:
        apply_variant(module, variant)
    return module, inputs


def apply_variant(module: "torch.nn.Module", variant: str) -> "torch.nn.Module":
    """Prune ``module``'s Conv/Linear weights in place (see module docstring) and return it."""
    import torch
    from torch import nn

    from sparoa_env.extract import PATTERN_ATTR

    kind, level = parse_variant(variant)
    patterns = dict(getattr(module, PATTERN_ATTR, None) or {})
    with torch.no_grad():
        for mod_name, mod in module.named_modules():
            if not isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
                continue
            fqn = f"{mod_name}.weight" if mod_name else "weight"
            if kind == "unstructured":
                _magnitude_prune_(mod.weight, level)
            elif kind == "2:4":
                if not _semi_structured_(mod.weight):
                    continue
            else:
                _channel_prune_(mod.weight, getattr(mod, "bias", None), level)
            patterns[fqn] = kind
    object.__setattr__(module, PATTERN_ATTR, patterns)
    object.__setattr__(module, "_sparoa_variant", _canonical_variant(kind, level))
    return module


def _magnitude_prune_(w: "torch.Tensor", level: float) -> None:
    import torch

    k = round(level * w.numel())
    if k == 0:
        return
    order = torch.argsort(w.detach().abs().flatten(), stable=True)
    w.view(-1)[order[:k]] = 0


def _semi_structured_(w: "torch.Tensor") -> bool:
    """2:4 along the input-channel axis (dim 1); False (untouched) when it is not a multiple of 4."""
    import torch

    if w.dim() < 2 or w.shape[1] % 4:
        return False
    moved = w.detach().movedim(1, -1)
    groups = moved.reshape(-1, 4).clone()
    order = torch.argsort(groups.abs(), dim=1, descending=True, stable=True)
    groups.scatter_(1, order[:, 2:], 0.0)
    w.copy_(groups.reshape(moved.shape).movedim(-1, 1))
    return True


def _channel_prune_(w: "torch.Tensor", bias: "torch.Tensor | None", level: float) -> None:
    import torch

    k = round(level * w.shape[0])
    if k == 0:
        return
    norms = w.detach().abs().flatten(1).sum(1)
    rows = torch.argsort(norms, stable=True)[:k]
    w[rows] = 0
    if bias is not None:
        bias[rows] = 0


def extract_zoo_graph(spec: str, batch: int = 1, *, seed: int = DEFAULT_SEED) -> "OpGraph":
    """Build zoo spec ``spec`` and extract its OpGraph, with the spec, seed and builder in ``meta``."""
    from sparoa_env.extract import extract_graph

    canonical = canonical_spec(spec)
    base, variant = parse_spec(canonical)
    module, inputs = build(canonical, batch, seed=seed)
    meta = {
        "source": f"extracted with torch.export from zoo:{canonical}, seed {seed}",
        "zoo": {"spec": canonical, "model": base, "variant": variant, "seed": seed,
                "builder": ENTRIES[base].source},
    }
    from importlib.metadata import version

    pkg = "geffnet" if ENTRIES[base].source.startswith("geffnet") else "transformers"
    meta[f"{pkg}_version"] = version(pkg)
    return extract_graph(module, inputs, name=canonical, meta=meta)


def _first_output_class() -> Any:
    """``FirstOutput``: wraps a transformers model so that forward returns one tensor (logits / last hidden
    state). Created on first use to keep torch out of import time; registered as ``sparoa_env.zoo.FirstOutput``
    so that zoo modules pickle."""
    cls = globals().get("FirstOutput")
    if cls is None:
        from torch import nn

        class FirstOutput(nn.Module):
            def __init__(self, model: nn.Module) -> None:
                super().__init__()
                self.model = model

            def forward(self, *args: Any) -> Any:
                return self.model(*args)[0]

        FirstOutput.__module__ = __name__
        FirstOutput.__qualname__ = "FirstOutput"
        globals()["FirstOutput"] = cls = FirstOutput
    return cls


def _FirstOutput(model: Any) -> Any:
    return _first_output_class()(model)


def __getattr__(name: str) -> Any:
    if name == "FirstOutput":
        return _first_output_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
