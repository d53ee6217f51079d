"""What a ``MODEL`` argument may name, and how it becomes an OpGraph or a torch module.

Three forms, everywhere a model is asked for (``sparoa graph MODEL``, ``gym.make(..., model=MODEL)``,
the hardware backend, the hybrid engine):

* a zoo spec, ``resnet50`` or ``mobilenet_v3_small@unstructured-0.7`` (see :mod:`sparoa_env.zoo`): its
  graph ships as JSON in ``sparoa_env/data/graphs``, so :func:`load_graph` needs no torch;
* a path ending in ``.json``: an OpGraph file (:meth:`OpGraph.load`);
* ``path/to/file.py:function``: ``function`` returns ``(module, example_inputs)``; it may take a
  ``batch`` keyword argument. Extraction needs torch.

This module imports neither torch nor the extraction code until a graph has to be extracted.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparoa_env import zoo
from sparoa_env.graph import OpGraph

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["ModelSpec", "parse_model_spec", "load_graph", "load_module", "shipped_graph_path", "torch_available",
           "EXPECTED_FORMS"]

EXPECTED_FORMS = ("a zoo name such as 'mobilenet_v3_small' or 'resnet50@unstructured-0.9', "
                  "a path to an OpGraph JSON file, or 'path/to/file.py:function' where the function "
                  "returns (module, example_inputs)")
_FILE_SPEC = re.compile(r"^(?P<path>.+\.py):(?P<func>[A-Za-z_][A-Za-z0-9_]*)$")


@dataclass(frozen=True)
class ModelSpec:
    kind: str                  # "zoo" | "json" | "file"
    text: str                  # canonical text (zoo specs are canonicalised: 'x@unstructured-0.70' -> '...-0.7')
    path: Path | None = None   # json / file
    function: str | None = None


def parse_model_spec(model: str) -> ModelSpec:
    """Classify ``model``; ValueError (listing what is expected) when it is none of the three forms."""
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"expected a model: {EXPECTED_FORMS}; got {model!r}")
    model = model.strip()
    m = _FILE_SPEC.match(model)
    if m:
        return ModelSpec("file", model, Path(m.group("path")), m.group("func"))
    if model.endswith(".py") or model.endswith(".py:"):
        raise ValueError(f"model {model!r} names a Python file but no function: expected 'path/to/file.py:function' "
                         "where the function returns (module, example_inputs)")
    if model.lower().endswith(".json") or "/" in model or "\\" in model:
        return ModelSpec("json", model, Path(model))
    try:
        return ModelSpec("zoo", zoo.canonical_spec(model))
    except ValueError as e:
        raise ValueError(f"{e}. A MODEL may also be a path to an OpGraph .json file or "
                         "'path/to/file.py:function'") from None


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def shipped_graph_path(spec: str) -> Path:
    """Where the shipped OpGraph JSON of zoo spec ``spec`` lives (it may not exist for unshipped variants)."""
    return zoo.GRAPH_DIR / zoo.graph_filename(spec)


def load_graph(model: str, batch: int | None = None) -> OpGraph:
    """The OpGraph of ``model`` (zoo spec, ``.json`` path or ``file.py:function``) at ``batch``.

    Zoo specs load the shipped JSON without torch; at another batch size they are re-extracted when torch
    is importable, otherwise the shipped graph is scaled (:meth:`OpGraph.with_batch_scaled`).
    """
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    spec = parse_model_spec(model)
    if spec.kind == "json":
        assert spec.path is not None
        if not spec.path.is_file():
            raise FileNotFoundError(f"OpGraph file not found: {spec.path} (expected {EXPECTED_FORMS})")
        g = OpGraph.load(spec.path)
        return g if batch is None else g.with_batch_scaled(batch)
    if spec.kind == "file":
        module, inputs = load_module(model, batch)
        from sparoa_env.extract import extract_graph

        assert spec.path is not None
        return extract_graph(module, inputs, name=f"{spec.path.name}:{spec.function}",
                             meta={"source": f"extracted with torch.export from {model}"})
    return _load_zoo_graph(spec.text, batch)


def _load_zoo_graph(spec: str, batch: int | None) -> OpGraph:
    path = shipped_graph_path(spec)
    if path.is_file():
        g = _load_shipped(path, path.stat().st_mtime_ns)
        if batch is None or batch == g.batch:
            return g
        if torch_available():
            return _extract_zoo_cached(spec, batch)
        return g.with_batch_scaled(batch)
    if not torch_available():
        raise ValueError(f"no shipped graph for {spec!r} and torch is not installed to extract it; shipped: "
                         f"{', '.join(zoo.SHIPPED)} (install torch: pip install 'sparoa-env[torch]')")
    return _extract_zoo_cached(spec, 1 if batch is None else batch)


@functools.lru_cache(maxsize=64)
def _load_shipped(path: Path, mtime_ns: int) -> OpGraph:
    # keyed on the file's mtime too, so a regenerated file is re-read; OpGraph is frozen: sharing is safe
    return OpGraph.load(path)


@functools.lru_cache(maxsize=16)
def _extract_zoo_cached(spec: str, batch: int) -> OpGraph:
    return zoo.extract_zoo_graph(spec, batch)


def load_module(model: str, batch: int | None = None) -> tuple["torch.nn.Module", tuple]:
    """``(module, example_inputs)`` for a zoo spec or a ``file.py:function`` spec (torch needed)."""
    spec = parse_model_spec(model)
    if spec.kind == "json":
        raise ValueError(f"{model!r} is an OpGraph JSON file, which holds no torch module: give a zoo name or "
                         "'path/to/file.py:function' to get a module")
    if spec.kind == "zoo":
        return zoo.build(spec.text, 1 if batch is None else batch)
    assert spec.path is not None and spec.function is not None
    return _call_model_function(spec.path, spec.function, batch)


def _call_model_function(path: Path, function: str, batch: int | None) -> tuple[Any, tuple]:
    if not torch_available():
        raise ValueError(f"building {path}:{function} needs torch, which is not installed "
                         "(pip install 'sparoa-env[torch]')")
    import torch

    where = f"{path}:{function}"
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path} (expected 'path/to/file.py:function' where the "
                                "function returns (module, example_inputs))")
    mod_name = f"_sparoa_user_model_{abs(hash(str(path.resolve())))}"
    loader_spec = importlib.util.spec_from_file_location(mod_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise ValueError(f"cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[mod_name] = module  # dataclasses and pickling inside the file look themselves up here
    try:
        loader_spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(mod_name, None)
        raise ValueError(f"importing {path} failed: {type(e).__name__}: {e}") from e
    fn = getattr(module, function, None)
    if fn is None or not callable(fn):
        names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                       and getattr(v, "__module__", None) == mod_name)
        what = (f"{path} has no function {function!r}" if fn is None else
                f"{path}: {function!r} is not a function (it is of type {type(fn).__name__})")
        raise ValueError(f"{what}; functions defined there: {', '.join(names) or 'none'}")
    takes_batch = _accepts(fn, "batch")
    try:
        result = fn(batch=batch) if (takes_batch and batch is not None) else fn()
    except Exception as e:  # the user's function failed: say so, with its own message
        raise ValueError(f"calling {where}{f'(batch={batch})' if takes_batch and batch is not None else '()'} "
                         f"failed: {type(e).__name__}: {e}") from e
    if not (isinstance(result, tuple) and len(result) == 2):
        raise ValueError(f"{where} must return (module, example_inputs): a torch.nn.Module and a tuple of "
                         f"input tensors; it returned {_short(result)}")
    net, inputs = result
    if not isinstance(net, torch.nn.Module):
        raise ValueError(f"{where} must return (module, example_inputs) with a torch.nn.Module first; "
                         f"got {type(net).__name__}")
    if isinstance(inputs, torch.Tensor):
        inputs = (inputs,)
    elif isinstance(inputs, list):
        inputs = tuple(inputs)
    if not isinstance(inputs, tuple) or not inputs:
        raise ValueError(f"{where} must return (module, example_inputs) with a non-empty tuple of inputs "
                         f"second; got {_short(inputs)}")
    if batch is not None and not takes_batch:
        first = next((x for x in inputs if isinstance(x, torch.Tensor) and x.dim() > 0), None)
        if first is None or int(first.shape[0]) != batch:
            raise ValueError(f"{where} takes no 'batch' argument and its inputs have batch "
                             f"{None if first is None else int(first.shape[0])}, not {batch}: add a 'batch' "
                             "keyword argument to the function")
    return net, inputs


def _accepts(fn: Any, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values())


def _short(x: Any) -> str:
    text = repr(x)
    return f"{type(x).__name__} {text[:80]}{'...' if len(text) > 80 else ''}"
