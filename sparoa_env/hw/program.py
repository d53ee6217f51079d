"""The exported program of a model, cut into op groups and compiled into straight-line Python per segment.

Shared by :class:`~sparoa_env.hw.engine.HybridEngine` (segments = runs of consecutive groups on one
lane) and :class:`~sparoa_env.hw.backend.HwBackend` (a segment per group).

* :class:`Program` exports the module with :func:`sparoa_env.extract.export_program` (eval mode, core ATen)
  and groups the nodes with :func:`sparoa_env.extract.group_nodes`, so op names are exactly those of
  :func:`sparoa_env.extract.extract_graph`. One reference pass on the example inputs evaluates the nodes
  that do not depend on a user input once (constant folding: transposed weights, masks built from
  ``arange``), and picks for every op its fastest equivalent Python entry point (below).
* :meth:`Program.compile` turns a list of fx nodes into a plain Python function ``segment(a0, a1, ...)``
  that calls the ATen kernels one after another with parameters bound as globals: no interpreter loop,
  no ``nn.Module.__call__``, no per-node dictionary traffic; locals are dropped after their last use so
  that peak memory matches eager execution. ``CompiledSegment.source`` shows the code.

Fast entry points: ``torch.ops.aten.convolution.default(...)`` goes through the boxed dispatcher and
parses its arguments against the schema (about 4-7 us per call here), while ``torch.convolution(...)``
uses the generated argument parser (about 1 us). For every node the reference pass calls both on the same
arguments and keeps the binding only if the results are identical (values, dtype, shape, strides);
otherwise the OpOverload is kept. Set ``fast_bindings=False`` to always use the OpOverloads.
"""

from __future__ import annotations

import math
import operator
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

__all__ = ["Program", "CompiledSegment", "ProgramError"]


class ProgramError(ValueError):
    """The module cannot be run by the engine (unsupported exported signature, bad inputs)."""


@dataclass
class CompiledSegment:
    """A compiled list of fx nodes for one device."""

    fn: Callable[..., tuple]
    source: str
    device: str
    inputs: tuple[str, ...]     # fx names of the values the function takes, in argument order
    outputs: tuple[str, ...]    # fx names of the values it returns, in order
    n_nodes: int


def _tensor_leaves(v: Any) -> list:
    import torch

    if isinstance(v, torch.Tensor):
        return [v]
    if isinstance(v, (list, tuple)):
        return [t for x in v for t in _tensor_leaves(x)]
    return []


def _identical(a: Any, b: Any) -> bool:
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        if a.dtype != b.dtype or a.shape != b.shape or a.device != b.device or a.layout != b.layout:
            return False
        if a.layout == torch.strided and a.stride() != b.stride():
            return False
        try:
            return bool(torch.equal(a, b))
        except Exception:  # noqa: BLE001 - exotic dtypes: treat as different, keep the OpOverload
            return False
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_identical(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _binding_candidates(target: Any) -> list[Callable]:
    """Python-binding equivalents of an aten OpOverload (function first, then Tensor method)."""
    import torch

    if not isinstance(target, torch._ops.OpOverload) or target.namespace != "aten":
        return []
    base = target._schema.name.split("::", 1)[1]
    out = []
    f = getattr(torch._C._VariableFunctions, base, None)
    if f is not None:
        out.append(f)
    m = getattr(torch._C.TensorBase, base, None)
    if m is not None and callable(m):
        out.append(m)
    return out


class Program:
    """An exported, grouped model ready to be compiled per segment and device."""

    def __init__(self, module: Any, example_inputs: Sequence[Any], *, fast_bindings: bool = True) -> None:
        import torch
        from torch.export.graph_signature import InputKind, OutputKind

        from ..extract import _check_inputs, export_program, group_nodes

        self.example_inputs = _check_inputs(module, example_inputs)
        self.ep = ep = export_program(module, self.example_inputs)
        self.groups = group_nodes(ep)
        self.graph = graph = ep.graph_module.graph
        self.nodes_by_name = {n.name: n for n in graph.nodes}
        self.order = {n: i for i, n in enumerate(graph.nodes)}
        self.group_names = tuple(g.name for g in self.groups)
        self.group_of = {m: g.name for g in self.groups for m in g.members}
        self.group_members = {g.name: [self.nodes_by_name[m] for m in g.members] for g in self.groups}

        # signature: lifted constants vs user inputs
        self.consts: dict[str, Any] = {}           # placeholder name -> tensor (home device)
        self.user_inputs: list[str] = []            # placeholder names in call order
        for spec in ep.graph_signature.input_specs:
            name = getattr(spec.arg, "name", None)
            if spec.kind == InputKind.USER_INPUT:
                self.user_inputs.append(name)
            elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
                self.consts[name] = ep.state_dict[spec.target] if spec.target in ep.state_dict else ep.constants[spec.target]
            elif spec.kind == InputKind.CONSTANT_TENSOR:
                self.consts[name] = ep.constants[spec.target]
            else:
                raise ProgramError(f"the exported program has an input of kind {spec.kind.name} ({name}); the engine "
                                   "runs only parameters, buffers, constants and tensor inputs")
        for spec in ep.graph_signature.output_specs:
            if spec.kind != OutputKind.USER_OUTPUT:
                what = ("an input in place (x.add_(...) on an argument of forward): work on a copy"
                        if spec.kind == OutputKind.USER_INPUT_MUTATION else
                        "a buffer in place: export the module in eval mode, without in-place buffer updates")
                raise ProgramError(f"the exported program mutates state ({spec.kind.name} -> {spec.target}); the "
                                   f"engine runs pure programs only, and this model mutates {what}")
        for n in graph.nodes:
            if n.op == "get_attr":
                self.consts[n.name] = _getattr_chain(ep.graph_module, n.target)
        out_node = next(n for n in graph.nodes if n.op == "output")
        self.output_args = list(out_node.args[0])   # fx nodes or Python constants, flat
        self.out_spec = ep.call_spec.out_spec
        self.in_spec = ep.call_spec.in_spec
        n_user = len(self.user_inputs)
        self._flat_tensors = self.in_spec == torch.utils._pytree.tree_flatten(((torch.zeros(()),) * n_user, {}))[1]
        # shape and dtype of each example input: the program is exported for exactly these (static shapes)
        self._in_meta = [(tuple(t.shape), t.dtype) if isinstance(t, torch.Tensor) else None
                         for t in torch.utils._pytree.tree_leaves(tuple(self.example_inputs))]
        self.home_device = next((t.device for t in _tensor_leaves(list(self.example_inputs))), torch.device("cpu"))

        # liveness: a node is constant when it does not depend on a user input (and is not random)
        user = set(self.user_inputs)
        self.const_nodes: set[str] = set(self.consts)
        for n in graph.nodes:
            if n.op != "call_function":
                continue
            tags = getattr(n.target, "tags", ())
            if torch.Tag.nondeterministic_seeded in tags:
                continue
            if all(i.name in self.const_nodes for i in n.all_input_nodes) and not any(i.name in user for i in n.all_input_nodes):
                self.const_nodes.add(n.name)
        self._fast: dict[str, Callable] = {}
        self.const_values: dict[str, Any] = {}     # folded values on the home device
        self.reference_outputs = self._reference_pass(fast_bindings)
        self._const_on: dict[str, dict[str, Any]] = {}  # device -> name -> value

    # ------------------------------------------------------------------ reference pass
    def _reference_pass(self, fast_bindings: bool) -> list[Any]:
        """Run every node once on the example inputs: fold constants, choose fast bindings, keep outputs."""
        import torch

        env: dict[str, Any] = dict(self.consts)
        flat = torch.utils._pytree.tree_leaves(self.example_inputs)
        if len(flat) != len(self.user_inputs):
            raise ProgramError(f"the exported program takes {len(self.user_inputs)} input tensor(s), got {len(flat)}")
        env.update(zip(self.user_inputs, flat))
        last_use: dict[str, int] = {}
        for i, n in enumerate(self.graph.nodes):
            for a in n.all_input_nodes:
                last_use[a.name] = i
        keep = set(self.consts) | {a.name for a in self.output_args if hasattr(a, "name")}

        def load(a: Any) -> Any:
            return torch.fx.node.map_arg(a, lambda x: env[x.name])

        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            for i, n in enumerate(self.graph.nodes):
                if n.op != "call_function":
                    continue
                args, kwargs = load(n.args), load(n.kwargs)
                out = n.target(*args, **kwargs)
                env[n.name] = out
                if n.name in self.const_nodes:
                    self.const_values[n.name] = out
                elif fast_bindings:
                    for f in _binding_candidates(n.target):
                        try:
                            alt = f(*args, **kwargs)
                        except Exception:  # noqa: BLE001 - not an equivalent entry point: try the next
                            continue
                        if _identical(out, alt):
                            self._fast[n.name] = f
                            break
                for a in n.all_input_nodes:
                    if last_use.get(a.name) == i and a.name not in keep and a.name not in self.const_nodes:
                        env.pop(a.name, None)
        return [env[a.name] if hasattr(a, "name") else a for a in self.output_args]

    # ------------------------------------------------------------------ structure queries
    def live_members(self, group: str) -> list[Any]:
        """The group's fx nodes that run at inference time (constant-folded ones excluded), graph order."""
        return [n for n in self.group_members[group] if n.name not in self.const_nodes]

    def segment_io(self, nodes: Sequence[Any]) -> tuple[list[str], list[str]]:
        """(inputs, outputs) of a set of fx nodes: values read from outside / needed outside."""
        inside = {n.name for n in nodes}
        ins: list[str] = []
        seen: set[str] = set()
        for n in nodes:
            for a in n.all_input_nodes:
                if a.name not in inside and a.name not in self.const_nodes and a.name not in seen:
                    seen.add(a.name)
                    ins.append(a.name)
        outs = []
        for n in nodes:
            if any(u.name not in inside for u in n.users):  # another segment or the output node
                outs.append(n.name)
        return ins, outs

    def const_on(self, name: str, device: str) -> Any:
        import torch

        cache = self._const_on.setdefault(device, {})
        if name not in cache:
            v = self.consts[name] if name in self.consts else self.const_values[name]
            if device != str(self.home_device):
                v = torch.utils._pytree.tree_map(lambda t: t.to(device) if isinstance(t, torch.Tensor) else t, v)
            cache[name] = v
        return cache[name]

    # ------------------------------------------------------------------ codegen
    def compile(self, nodes: Sequence[Any], device: str, *, label: str = "segment",
                inputs: Sequence[str] | None = None, outputs: Sequence[str] | None = None) -> CompiledSegment:
        """Straight-line Python for ``nodes`` (graph order) on ``device``."""
        import torch

        nodes = sorted((n for n in nodes if n.name not in self.const_nodes), key=self.order.__getitem__)
        ins, outs = self.segment_io(nodes)
        if inputs is not None:
            ins = list(inputs)
        if outputs is not None:
            outs = list(outputs)
        dev = torch.device(device)
        g: dict[str, Any] = {}
        names: dict[str, str] = {}
        for k, name in enumerate(ins):
            names[name] = f"a{k}"
        const_names: dict[str, str] = {}

        def add_global(obj: Any, hint: str = "c") -> str:
            key = f"{hint}{len(g)}"
            g[key] = obj
            return key

        def fmt(a: Any) -> str:
            if isinstance(a, torch.fx.Node):
                if a.name in names:
                    return names[a.name]
                if a.name in self.const_nodes:
                    if a.name not in const_names:
                        const_names[a.name] = add_global(self.const_on(a.name, device), "w")
                    return const_names[a.name]
                raise ProgramError(f"{label}: value {a.name!r} is used before it is computed")
            if isinstance(a, list):
                return "[" + ", ".join(fmt(x) for x in a) + "]"
            if isinstance(a, tuple):
                return "(" + "".join(fmt(x) + ", " for x in a) + ")"
            if a is None or isinstance(a, (bool, int, str)):
                return repr(a)
            if isinstance(a, float) and math.isfinite(a):
                return repr(a)
            if isinstance(a, torch.device):
                return add_global(dev if dev.type == "cuda" else a)
            return add_global(a)

        # last use of every local, to drop it as eager execution would
        positions = {n.name: i for i, n in enumerate(nodes)}
        last: dict[str, int] = {}
        for i, n in enumerate(nodes):
            for a in n.all_input_nodes:
                if a.name in names or a.name in positions:
                    last[a.name] = i
        out_set = set(outs)
        drop_after: dict[int, list[str]] = {}
        for name, i in last.items():
            if name not in out_set:
                drop_after.setdefault(i, []).append(name)

        lines = []
        for i, n in enumerate(nodes):
            local = f"v{i}"
            if n.op != "call_function":
                raise ProgramError(f"{label}: cannot compile fx node {n.name} ({n.op})")
            if n.target is operator.getitem and not n.kwargs:
                rhs = f"{fmt(n.args[0])}[{fmt(n.args[1])}]"
            else:
                fn = self._fast.get(n.name, n.target)
                fname = add_global(fn, "f")
                parts = [fmt(a) for a in n.args] + [f"{k}={fmt(v)}" for k, v in n.kwargs.items()]
                rhs = f"{fname}({', '.join(parts)})"
            names[n.name] = local
            lines.append(f"    {local} = {rhs}  # {n.name}")
            for name in drop_after.get(i, ()):
                if names.get(name) and name not in out_set:
                    lines.append(f"    del {names[name]}")
        missing = [o for o in outs if o not in names]
        if missing:
            raise ProgramError(f"{label}: outputs {missing} are not computed by its nodes")
        ret = "(" + "".join(names[o] + ", " for o in outs) + ")"
        src = f"def {label.replace(' ', '_').replace('-', '_')}({', '.join(names[x] for x in ins)}):\n"
        src += "\n".join(lines) + ("\n" if lines else "") + f"    return {ret}\n"
        code = compile(src, f"<sparoa {label} on {device}>", "exec")
        exec(code, g)  # noqa: S102 - the source is generated above from the exported graph
        fn = g[label.replace(" ", "_").replace("-", "_")]
        return CompiledSegment(fn=fn, source=src, device=device, inputs=tuple(ins), outputs=tuple(outs), n_nodes=len(nodes))

    def flatten_inputs(self, inputs: Sequence[Any]) -> list[Any]:
        import torch

        n = len(self.user_inputs)
        if self._flat_tensors and len(inputs) == n and all(type(t) is torch.Tensor for t in inputs):
            flat = list(inputs)  # the common case without the pytree walk (~9 us)
        else:
            flat, spec = torch.utils._pytree.tree_flatten((tuple(inputs), {}))
            if spec != self.in_spec:
                flat = torch.utils._pytree.tree_leaves(tuple(inputs))
                if len(flat) != len(self.user_inputs):
                    raise ProgramError(f"expected inputs shaped like the example inputs ({len(self.user_inputs)} "
                                       f"tensor(s)), got {len(flat)}")
        for k, (v, m) in enumerate(zip(flat, self._in_meta)):
            if m is not None and isinstance(v, torch.Tensor) and (v.dtype != m[1] or v.shape != m[0]):
                raise ProgramError(f"input {k}: expected {_meta_text(*m)} like the example inputs, got "
                                   f"{_meta_text(tuple(v.shape), v.dtype)} (the program is exported for the example "
                                   "inputs' shapes and dtypes; build an engine with example inputs of the new shape)")
        return flat

    def unflatten_outputs(self, flat: Sequence[Any]) -> Any:
        import torch

        return torch.utils._pytree.tree_unflatten(list(flat), self.out_spec)


def _meta_text(shape: tuple, dtype: Any) -> str:
    return f"{str(dtype).replace('torch.', '')}{list(shape)}"


def _getattr_chain(obj: Any, target: str) -> Any:
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj
