"""Torch module -> :class:`~sparoa_env.graph.OpGraph`, via ``torch.export`` (ATen-level ops).

Pipeline
--------
1. :func:`export_program` puts the module in eval mode, exports it with ``torch.export.export`` and lowers
   it to core ATen with ``run_decompositions()``: op types read ``aten.convolution``, ``aten.addmm``,
   ``aten.bmm``, ``aten._softmax``... -- what is really dispatched to a device. (Fused attention is
   decomposed into its matmuls and softmax, which is what a CPU/GPU partition of the graph runs.)
2. :func:`group_nodes` folds the zero-cost nodes into the real ops around them (rules below) and returns
   one :class:`OpGroup` per schedulable operator. Every ``call_function`` node of
   ``ep.graph_module.graph`` belongs to exactly one group; the result is a pure function of the graph, so
   the same module and inputs always give the same group names (the fx names of the groups' main nodes).
3. :func:`extract_graph` runs the exported graph node by node with a ``torch.fx.Interpreter`` on the
   example inputs, each node under its own ``torch.utils.flop_counter.FlopCounterMode``, and records
   per node its FLOPs, output tensors and, for every tensor that crosses a group boundary, its zeros.
   Each group then becomes one :class:`~sparoa_env.graph.OpNode`.

Folding rule (zero-cost ops never become scheduling steps)
-----------------------------------------------------------
*Zero-cost* nodes are ATen view ops (``OpOverload.is_view``: view, permute, expand, t, transpose, slice,
select, squeeze, unsqueeze, as_strided, split, unbind, alias...), ``_unsafe_view``/``reshape``, ``clone``
(``.contiguous()``; a layout copy that is charged to the op that produced the tensor), ``detach``,
``lift_fresh_copy``, the ``_assert*`` / ``sym_*`` checks, ``operator.getitem`` and Python arithmetic on
symbolic sizes. A node is *live* when it depends, directly or not, on a user input.

* A *main* node is a live node that is not zero-cost: it opens a group of its own.
* A zero-cost node that reads the output of a group is folded into the **producer** (when it reads
  several groups: the one whose main node comes last). So ``getitem`` joins the batch-norm that made the
  tuple, and ``view``/``permute``/``clone`` join the matmul whose result they reshape.
* Every other node -- a zero-cost node that reads only graph inputs, parameters or constants (``t`` of a
  weight, ``view`` of the input), and any node that does not depend on a user input at all (attention
  masks built from ``arange``/``full``, relative-position-bias gathers from a parameter table: constant
  subgraphs) -- is folded into its **consumer**: of the groups that use it, the one whose main node comes
  first. Its FLOPs and elementwise work are charged to that group, so nothing is lost from the totals.
* A node left without a grouped consumer (it only feeds the graph output) joins the last group; a graph
  with no live non-zero-cost node at all promotes its first node to a group.

Groups are ordered by the position of their main node in the exported graph; the rules above guarantee
that every edge between groups goes forward in that order.

Fields of each OpNode
---------------------
* ``flops``: sum over the group's members of ``FlopCounterMode``'s count (2 FLOPs per MAC for matmul and
  convolution, 0 for elementwise ops), so the nodes sum to FlopCounterMode's total for the exported
  graph. :func:`reference_flops` measures the module's own forward for comparison.
* ``aux_flops``: elementwise work estimate, one operation per element of the larger of (activation
  inputs, outputs) for every member that is neither zero-cost nor counted by FlopCounterMode.
* ``bytes_in``: bytes of the activation tensors that enter the group (from other groups or user inputs);
  ``bytes_out``: bytes of the tensors that leave it (to other groups or the graph output);
  ``weight_bytes``: bytes of the parameters, buffers and constant tensors its members read. Tensors that
  share storage (``y`` and ``view(y)``) count once, at most the bytes of the underlying tensor.
* ``weight_sparsity``: fraction of exact zeros in the group's floating-point weight tensors of rank >= 2
  (conv kernels, matrices, embedding tables: the operands of its multiply-accumulates); 0 for a group
  whose weights are all vectors (biases, norm scales and shifts, running statistics) or integer index
  buffers, or that reads none. ``input_sparsity``: fraction of exact zeros in its activation inputs on the
  example input. ``sparsity`` (rho) and ``intensity`` (I) as DESIGN section 4 (see ``sparoa_env.graph``).
* ``out_shape`` / ``dtype``: of the main node's (first) output tensor. ``members``: the group's fx nodes.
* ``sparsity_pattern``: ``"dense"`` unless the module carries a ``_sparoa_sparsity_patterns`` mapping
  (parameter FQN -> pattern, set by :func:`sparoa_env.zoo.apply_variant`) naming one of its weights.

Edges carry the bytes of the tensors that flow from one group to another (same storage rule).

Fallbacks (never a silent zero)
-------------------------------
An op for which ``torch.utils.flop_counter`` has no formula and which is not a known MAC-free op
(elementwise, reduction, normalisation, pooling, data movement, tensor creation) -- e.g. a custom op --
cannot be analysed: by default it keeps FlopCounterMode's count (0, so the identity with FlopCounterMode
still holds), gets its elementwise work in ``aux_flops``, is listed in ``meta["fallbacks"]`` and raises an
:class:`UnanalysedOpWarning`; with ``strict=True`` it is an :class:`ExtractionError` instead. A MAC op
(``aten.mm``, ``aten.convolution``...) whose count comes back 0 on a non-empty output is always an error.
"""

from __future__ import annotations

import contextlib
import logging
import operator
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from sparoa_env.graph import Edge, OpGraph, OpNode

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch.export import ExportedProgram

__all__ = ["OpGroup", "ExtractionError", "UnanalysedOpWarning", "export_program", "group_nodes",
           "extract_graph", "reference_flops", "op_type_of", "is_zero_cost", "PATTERN_ATTR"]

#: Attribute of a root module: ``{parameter FQN: sparsity pattern}`` for weights a variant transformed.
PATTERN_ATTR = "_sparoa_sparsity_patterns"


class ExtractionError(ValueError):
    """The module, its inputs or one of its ops could not be turned into an OpGraph (message says why)."""


class UnanalysedOpWarning(UserWarning):
    """An op had no FLOP formula and is not a known MAC-free op; see ``meta['fallbacks']``."""


@dataclass(frozen=True)
class OpGroup:
    """One schedulable operator: a main fx node plus the zero-cost / constant nodes folded into it."""

    name: str                  # fx node name of the main op (== OpNode.name)
    op_type: str               # e.g. "aten.convolution"
    members: tuple[str, ...]   # fx node names in graph order, main included


# ---------------------------------------------------------------------------------------------------
# op classification

_ZERO_COST_OPS = frozenset({
    "aten._unsafe_view", "aten.reshape", "aten.view", "aten.clone", "aten.alias", "aten.detach",
    "aten.lift_fresh_copy", "aten.lift_fresh", "aten.contiguous", "aten._assert_tensor_metadata",
    "aten._assert_async", "aten._assert_scalar", "aten._functional_assert_async",
    "aten._functional_assert_scalar", "aten._functional_sym_constrain_range",
    "aten._functional_sym_constrain_range_for_size", "aten.sym_constrain_range",
    "aten.sym_constrain_range_for_size", "aten.sym_size", "aten.sym_numel", "aten.sym_stride",
    "aten.sym_storage_offset", "aten.dropout", "aten.feature_dropout", "aten.alpha_dropout",
    "aten.identity", "getitem",
})
#: Zero-cost ops whose output shares storage with their input (used for the byte-dedup rule).
_ALIASING_EXTRA = frozenset({"aten._unsafe_view", "aten.reshape", "aten.view", "aten.clone", "aten.alias",
                             "aten.detach", "aten.lift_fresh_copy", "aten.lift_fresh", "aten.contiguous",
                             "aten.dropout", "aten.feature_dropout", "aten.alpha_dropout", "aten.identity"})

#: Ops known to have no multiply-accumulates: a FLOP count of 0 is right for them.
_MAC_FREE_OPS = frozenset(f"aten.{n}" for n in """
    _softmax _log_softmax softmax log_softmax _safe_softmax native_layer_norm layer_norm native_group_norm
    group_norm _native_batch_norm_legit_no_training _native_batch_norm_legit native_batch_norm
    _native_batch_norm_legit_functional batch_norm rms_norm _fused_rms_norm instance_norm
    mean sum prod amax amin max min argmax argmin var var_mean std std_mean any all cumsum cumprod
    logsumexp norm linalg_vector_norm
    max_pool1d max_pool2d max_pool3d max_pool2d_with_indices max_pool3d_with_indices avg_pool1d avg_pool2d
    avg_pool3d adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d _adaptive_avg_pool2d
    _adaptive_avg_pool3d adaptive_max_pool1d adaptive_max_pool2d adaptive_max_pool3d
    upsample_nearest1d upsample_nearest2d upsample_nearest3d upsample_bilinear2d upsample_bicubic2d
    upsample_linear1d upsample_trilinear3d _upsample_nearest_exact1d _upsample_nearest_exact2d
    _upsample_nearest_exact3d _upsample_bilinear2d_aa _upsample_bicubic2d_aa grid_sampler_2d
    constant_pad_nd pad reflection_pad1d reflection_pad2d reflection_pad3d replication_pad1d
    replication_pad2d replication_pad3d cat concat stack hstack vstack index _unsafe_index index_select
    index_put index_put_ _unsafe_index_put gather scatter scatter_add scatter_reduce select_scatter
    slice_scatter diagonal_scatter as_strided_scatter embedding embedding_bag _embedding_bag where clone
    _to_copy copy copy_ to full full_like zeros zeros_like ones ones_like empty empty_like empty_strided
    empty_permuted new_zeros new_ones new_full new_empty new_empty_strided arange linspace scalar_tensor
    rand randn randint rand_like randn_like randint_like bernoulli native_dropout topk sort argsort
    repeat repeat_interleave tile flip roll masked_fill masked_scatter tril triu pixel_shuffle
    pixel_unshuffle nonzero col2im im2col fill zero resize_ _local_scalar_dense searchsorted bucketize
    one_hot expand_copy view_copy permute_copy squeeze_copy unsqueeze_copy t_copy transpose_copy
    slice_copy select_copy split_copy split_with_sizes_copy unbind_copy alias_copy as_strided_copy
    _to_dim_order_copy channel_shuffle native_channel_shuffle
""".split())

#: Ops with multiply-accumulates: FlopCounterMode must give them a non-zero count.
_MAC_OPS = frozenset(f"aten.{n}" for n in """
    mm addmm bmm baddbmm addbmm addmv mv dot vdot matmul linear _scaled_mm _int_mm convolution
    _convolution conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d
    scaled_dot_product_attention _scaled_dot_product_flash_attention_for_cpu einsum tensordot
""".split())


def op_type_of(node: Any) -> str:
    """``aten.convolution`` for ``aten.convolution.default``; ``getitem`` for ``operator.getitem``."""
    import torch

    target = node.target if hasattr(node, "target") else node
    if isinstance(target, torch._ops.OpOverload):
        return f"{target.namespace}.{target._opname}"
    if isinstance(target, torch._ops.OpOverloadPacket):
        return str(target)
    if isinstance(target, torch._ops.HigherOrderOperator):
        return f"higher_order.{target.name()}"
    if target is operator.getitem:
        return "getitem"
    mod = getattr(target, "__module__", None) or "python"
    return f"{mod}.{getattr(target, '__name__', repr(target))}"


def is_zero_cost(node: Any) -> bool:
    """Views, aliases, ``getitem``, assertions and symbolic-size arithmetic (see module docstring)."""
    import torch

    if node.op != "call_function":
        return False
    target = node.target
    if isinstance(target, torch._ops.OpOverload):
        return bool(target.is_view) or op_type_of(node) in _ZERO_COST_OPS
    if isinstance(target, torch._ops.HigherOrderOperator):
        return False
    if target is operator.getitem:
        return True
    # Python-level arithmetic / comparisons on symbolic sizes (operator.mul, math.*, torch.sym_*).
    mod = getattr(target, "__module__", "") or ""
    return mod in ("_operator", "operator", "math") or getattr(target, "__name__", "").startswith("sym_")


def _is_aliasing(node: Any) -> bool:
    """True when the node's output shares storage with its first tensor input."""
    import torch

    target = node.target
    if isinstance(target, torch._ops.OpOverload):
        return bool(target.is_view) or op_type_of(node) in _ALIASING_EXTRA
    if target is operator.getitem:  # a piece of a split/unbind view, not of a multi-output op
        src = node.args[0]
        return hasattr(src, "op") and src.op == "call_function" and _is_aliasing(src)
    return False


def _has_flop_formula(node: Any) -> bool:
    import torch

    target = node.target
    if isinstance(target, torch._ops.OpOverload):
        registry = _flop_registry()
        return target.overloadpacket in registry or target in registry
    return False


_REGISTRY_CACHE: dict[str, Any] = {}


def _flop_registry() -> Mapping[Any, Any]:
    if "r" not in _REGISTRY_CACHE:
        from torch.utils.flop_counter import FlopCounterMode

        _REGISTRY_CACHE["r"] = FlopCounterMode(display=False).flop_registry
    return _REGISTRY_CACHE["r"]


def _is_mac_free(node: Any) -> bool:
    import torch

    target = node.target
    if isinstance(target, torch._ops.OpOverload) and torch.Tag.pointwise in target.tags:
        return True
    return op_type_of(node) in _MAC_FREE_OPS


# ---------------------------------------------------------------------------------------------------
# export

def _check_inputs(module: Any, example_inputs: Any) -> tuple:
    import torch

    if not isinstance(module, torch.nn.Module):
        raise ExtractionError(f"expected a torch.nn.Module to extract, got {type(module).__name__}")
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    if isinstance(example_inputs, list):
        example_inputs = tuple(example_inputs)
    if not isinstance(example_inputs, tuple):
        raise ExtractionError("expected example_inputs to be a tuple of tensors (the module's positional "
                              f"arguments), got {type(example_inputs).__name__}")
    if not example_inputs:
        raise ExtractionError("example_inputs is empty: give the positional arguments of one forward call")
    return example_inputs


class _ReferenceSemantics:
    """Context: MHA fast path off and the math SDPA backend, so fused attention kernels (which
    FlopCounterMode does not count on CPU) are not taken; export and reference see the same matmuls."""

    def __enter__(self) -> "_ReferenceSemantics":
        import torch
        from torch.nn.attention import SDPBackend, sdpa_kernel

        self._fastpath = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)
        self._sdpa = sdpa_kernel(SDPBackend.MATH)
        self._sdpa.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        import torch

        self._sdpa.__exit__(*exc)
        torch.backends.mha.set_fastpath_enabled(self._fastpath)


@contextlib.contextmanager
def _logger_level(logger: logging.Logger, level: int):
    old = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(old)


def export_program(module: "torch.nn.Module", example_inputs: Sequence[Any]) -> "ExportedProgram":
    """Eval mode, ``torch.export.export``, then ``run_decompositions()`` to core ATen."""
    import torch

    example_inputs = _check_inputs(module, example_inputs)
    module.eval()
    # torch's fake-tensor logger prints a 20-line traceback (level ERROR) for an op that fails on the example
    # inputs before export raises; the raise below says it in one line, so that logger is silenced meanwhile
    fake_log = logging.getLogger("torch._subclasses.fake_tensor")
    with warnings.catch_warnings(), _logger_level(fake_log, logging.CRITICAL):
        warnings.simplefilter("ignore", FutureWarning)  # pytree deprecation chatter inside torch.export
        try:
            with _ReferenceSemantics():
                ep = torch.export.export(module, example_inputs)
                return ep.run_decompositions()
        except ExtractionError:
            raise
        except Exception as e:  # torch raises many types; the message is what the user needs
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ExtractionError(f"torch.export could not trace {type(module).__name__} with inputs "
                                  f"{_describe_inputs(example_inputs)}: {type(e).__name__}: {first}") from e


def reference_flops(module: "torch.nn.Module", example_inputs: Sequence[Any]) -> int:
    """FlopCounterMode's total for one eval forward of ``module`` itself (no export), with the MHA fast
    path off and the math SDPA backend: the figure the nodes' ``flops`` must sum to."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    example_inputs = _check_inputs(module, example_inputs)
    module.eval()
    with torch.no_grad(), _ReferenceSemantics(), FlopCounterMode(display=False) as counter:
        module(*example_inputs)
    return int(counter.get_total_flops())


def _describe_inputs(inputs: Iterable[Any]) -> str:
    import torch

    parts = []
    for x in inputs:
        parts.append(f"{str(x.dtype).removeprefix('torch.')}{list(x.shape)}" if isinstance(x, torch.Tensor)
                     else type(x).__name__)
    return "(" + ", ".join(parts) + ")"


# ---------------------------------------------------------------------------------------------------
# grouping

def _user_input_names(ep: "ExportedProgram") -> set[str]:
    from torch.export.graph_signature import InputKind

    return {s.arg.name for s in ep.graph_signature.input_specs
            if s.kind == InputKind.USER_INPUT and hasattr(s.arg, "name")}


def group_nodes(ep: "ExportedProgram") -> list[OpGroup]:
    """Partition the ``call_function`` nodes of ``ep.graph_module.graph`` into schedulable groups.

    Deterministic; groups come in topological order (by their main node); see the module docstring for
    the folding rule.
    """
    graph = ep.graph_module.graph
    nodes = [n for n in graph.nodes if n.op == "call_function"]
    if not nodes:
        raise ExtractionError("the exported graph has no operators (the module returns its input or a constant)")
    order = {n: i for i, n in enumerate(graph.nodes)}
    user_inputs = _user_input_names(ep)

    live: set[Any] = set()
    for n in graph.nodes:
        if n.op == "placeholder" and n.name in user_inputs:
            live.add(n)
        elif n.op == "call_function" and any(i in live for i in n.all_input_nodes):
            live.add(n)
    zero = {n: is_zero_cost(n) for n in nodes}

    promoted: set[Any] = set()
    while True:
        group_of = _assign(nodes, order, live, zero, promoted)
        if group_of is not None:
            break
        promoted.add(nodes[0])  # no real op depends on the input: the first op stands for the graph

    members: dict[Any, list[Any]] = {}
    for n in nodes:
        members.setdefault(group_of[n], []).append(n)
    mains = sorted(members, key=order.__getitem__)
    return [OpGroup(name=m.name, op_type=op_type_of(m), members=tuple(x.name for x in members[m]))
            for m in mains]


def _assign(nodes: list[Any], order: dict[Any, int], live: set[Any], zero: dict[Any, bool],
            promoted: set[Any]) -> dict[Any, Any] | None:
    """node -> main node of its group, or None when there is no main node at all."""
    group_of: dict[Any, Any] = {}
    pending: list[Any] = []
    for n in nodes:
        if n in promoted or (n in live and not zero[n]):
            group_of[n] = n
            continue
        if zero[n]:
            producers = [group_of[i] for i in n.all_input_nodes if i in group_of]
            if producers:
                group_of[n] = max(producers, key=order.__getitem__)
                continue
        pending.append(n)
    if not any(group_of[n] is n for n in group_of):
        return None
    last_main = max((m for m in group_of.values()), key=order.__getitem__)
    for n in reversed(pending):
        consumers = [group_of[u] for u in n.users if u.op == "call_function" and u in group_of]
        group_of[n] = min(consumers, key=order.__getitem__) if consumers else last_main
    return group_of


# ---------------------------------------------------------------------------------------------------
# measurement

@dataclass
class _Value:
    """What the interpreter saw for one fx node (tensor leaves of its output)."""

    shapes: list[tuple[int, ...]]
    dtypes: list[str]
    numel: int
    nbytes: int
    zeros: int | None = None  # only for values that cross a group boundary / weights


def _is_float(dtype: str) -> bool:
    return dtype.startswith(("float", "bfloat", "complex"))


def _leaves(value: Any) -> list[Any]:
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _leaves(v)]
    return []


def _describe(value: Any, count_zeros: bool) -> _Value:
    ts = _leaves(value)
    numel = sum(t.numel() for t in ts)
    nbytes = sum(t.numel() * t.element_size() for t in ts)
    zeros = sum(int((t == 0).sum()) for t in ts) if count_zeros else None
    return _Value([tuple(int(s) for s in t.shape) for t in ts], [str(t.dtype).removeprefix("torch.") for t in ts],
                  numel, nbytes, zeros)


def _lifted_args(ep: "ExportedProgram", example_inputs: tuple) -> list[Any]:
    """Flat arguments of ``ep.graph_module`` in signature order: params, buffers, constants, user inputs."""
    import torch
    from torch.export.graph_signature import InputKind

    user = iter(torch.utils._pytree.tree_leaves(example_inputs))
    args: list[Any] = []
    for spec in ep.graph_signature.input_specs:
        if spec.kind == InputKind.USER_INPUT:
            try:
                args.append(next(user))
            except StopIteration:
                raise ExtractionError("the exported program expects more user inputs than example_inputs has") from None
        elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
            if spec.target in ep.state_dict:
                args.append(ep.state_dict[spec.target])
            else:
                args.append(ep.constants[spec.target])
        elif spec.kind == InputKind.CONSTANT_TENSOR:
            args.append(ep.constants[spec.target])
        else:
            raise ExtractionError(f"unsupported exported input {spec.arg} of kind {spec.kind.name} "
                                  "(custom objects and effect tokens cannot be analysed)")
    return args


def _run_and_measure(ep: "ExportedProgram", args: list[Any], boundary: set[str]
                     ) -> tuple[dict[str, _Value], dict[str, int]]:
    """Run the graph node by node; per node its output description and FlopCounterMode count."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    values: dict[str, _Value] = {}
    flops: dict[str, int] = {}
    current: list[Any] = [None]

    class _Measure(torch.fx.Interpreter):
        def run_node(self, n: Any) -> Any:
            current[0] = n
            if n.op == "call_function":
                with FlopCounterMode(display=False) as counter:
                    out = super().run_node(n)
                flops[n.name] = int(counter.get_total_flops())
            else:
                out = super().run_node(n)
            if n.op != "output":
                values[n.name] = _describe(out, n.name in boundary)
            return out

    with warnings.catch_warnings(), torch.no_grad(), _ReferenceSemantics():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            _Measure(ep.graph_module).run(*args)
        except Exception as e:
            n = current[0]
            at = f" at node {n.name} ({op_type_of(n)})" if n is not None and n.op == "call_function" else ""
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise ExtractionError(f"running the exported graph on the example inputs failed{at}: "
                                  f"{type(e).__name__}: {first}") from e
    return values, flops


# ---------------------------------------------------------------------------------------------------
# the graph

def extract_graph(module: "torch.nn.Module", example_inputs: Sequence[Any], *, name: str | None = None,
                  meta: Mapping[str, Any] | None = None, strict: bool = False) -> OpGraph:
    """Export ``module`` on ``example_inputs`` and describe every schedulable ATen op (module docstring).

    ``meta`` entries are added to the graph's meta (the zoo records its spec and seed there);
    ``strict=True`` turns the unanalysable-op fallback into an :class:`ExtractionError`.
    """
    import torch
    from torch.export.graph_signature import InputKind

    example_inputs = _check_inputs(module, example_inputs)
    ep = export_program(module, example_inputs)
    groups = group_nodes(ep)
    graph = ep.graph_module.graph
    by_name = {n.name: n for n in graph.nodes}
    group_of = {m: g.name for g in groups for m in g.members}

    user_inputs = _user_input_names(ep)
    weight_target: dict[str, str] = {}
    for s in ep.graph_signature.input_specs:
        if s.kind in (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR):
            weight_target[s.arg.name] = s.target
    for n in graph.nodes:
        if n.op == "get_attr":
            weight_target[n.name] = str(n.target)

    # Values whose zeros we need: everything that crosses a group boundary, user inputs and weights.
    boundary: set[str] = set(user_inputs) | set(weight_target)
    for n in graph.nodes:
        if n.op == "call_function":
            g = group_of[n.name]
            for u in n.users:
                if u.op == "output" or group_of.get(u.name) != g:
                    boundary.add(n.name)

    values, node_flops = _run_and_measure(ep, _lifted_args(ep, example_inputs), boundary)

    base = _storage_bases(graph)
    patterns: Mapping[str, str] = getattr(module, PATTERN_ATTR, None) or {}
    fallbacks: list[dict[str, str]] = []
    index = {g.name: i for i, g in enumerate(groups)}
    edge_values: dict[tuple[str, str], list[str]] = {}
    op_nodes: list[OpNode] = []

    for g in groups:
        mset = set(g.members)
        weights: list[str] = []
        act_in: list[str] = []
        outs: list[str] = []
        flops = 0
        aux = 0
        for mname in g.members:
            m = by_name[mname]
            f = node_flops.get(mname, 0)
            flops += f
            for i in m.all_input_nodes:
                if i.name in weight_target:
                    if i.name not in weights:
                        weights.append(i.name)
                elif (i.op == "placeholder" and i.name in user_inputs) or (
                        i.op == "call_function" and i.name not in mset):
                    if i.name not in act_in:
                        act_in.append(i.name)
                    if i.op == "call_function":
                        edge_values.setdefault((group_of[i.name], g.name), [])
                        if i.name not in edge_values[(group_of[i.name], g.name)]:
                            edge_values[(group_of[i.name], g.name)].append(i.name)
            if any(u.op == "output" or (u.op == "call_function" and u.name not in mset) for u in m.users):
                outs.append(mname)
            if is_zero_cost(m):
                continue
            out_v = values[mname]
            if f == 0:
                act_numel = sum(values[i.name].numel for i in m.all_input_nodes
                                if i.name not in weight_target and i.name in values)
                work = max(act_numel, out_v.numel)
                aux += work
                if _has_flop_formula(m) or _is_mac_free(m):
                    if op_type_of(m) in _MAC_OPS and out_v.numel > 0 and _has_flop_formula(m):
                        raise ExtractionError(f"op {mname} ({op_type_of(m)}) has multiply-accumulates but "
                                              "FlopCounterMode counted 0 FLOPs for it")
                    continue
                reason = (f"no FLOP formula in torch.utils.flop_counter and not a known MAC-free op; "
                          f"flops = FlopCounterMode's count (0), aux_flops += one op per element ({work})")
                if strict or op_type_of(m) in _MAC_OPS:
                    raise ExtractionError(f"cannot analyse op {mname} ({op_type_of(m)}) of group {g.name}: {reason}")
                fallbacks.append({"node": mname, "group": g.name, "op_type": op_type_of(m), "reason": reason})
                warnings.warn(f"extract: op {mname} ({op_type_of(m)}): {reason}", UnanalysedOpWarning, stacklevel=2)

        wvals = [values[w] for w in weights]
        mats = [v for v in wvals if any(len(s) >= 2 for s in v.shapes) and all(_is_float(d) for d in v.dtypes)]
        w_numel = sum(v.numel for v in mats)
        weight_sparsity = sum(v.zeros or 0 for v in mats) / w_numel if w_numel else 0.0
        a_numel = sum(values[a].numel for a in act_in)
        input_sparsity = sum(values[a].zeros or 0 for a in act_in) / a_numel if a_numel else 0.0
        bytes_in = _dedup_bytes(act_in, values, base)
        bytes_out = _dedup_bytes(outs, values, base)
        weight_bytes = float(sum(v.nbytes for v in wvals))
        main = values[g.name]
        pattern = "dense"
        for w in weights:
            if weight_target[w] in patterns:
                pattern = patterns[weight_target[w]]
                break
        op_nodes.append(OpNode(
            name=g.name, op_type=g.op_type, flops=float(flops), bytes_in=bytes_in, bytes_out=bytes_out,
            weight_bytes=weight_bytes, weight_sparsity=weight_sparsity, input_sparsity=input_sparsity,
            sparsity=OpNode.rho(weight_sparsity, input_sparsity),
            intensity=OpNode.arithmetic_intensity(float(flops), bytes_in, bytes_out, weight_bytes),
            out_shape=main.shapes[0] if main.shapes else (), aux_flops=float(aux), sparsity_pattern=pattern,
            dtype=main.dtypes[0] if main.dtypes else "none", members=g.members))

    edges = [Edge(src, dst, _dedup_bytes(vals, values, base))
             for (src, dst), vals in sorted(edge_values.items(), key=lambda kv: (index[kv[0][0]], index[kv[0][1]]))]
    for e in edges:
        if index[e.src] >= index[e.dst]:  # guaranteed by the folding rule; a bug if it ever fires
            raise ExtractionError(f"internal error: edge {e.src} -> {e.dst} goes against the group order")

    tensors = [x for x in example_inputs if isinstance(x, torch.Tensor)]
    batch = int(tensors[0].shape[0]) if tensors and tensors[0].dim() > 0 and tensors[0].shape[0] > 0 else 1
    info: dict[str, Any] = {
        "source": f"extracted with torch.export from module {type(module).__qualname__}",
        "torch_version": torch.__version__,
        "input_shapes": [list(x.shape) for x in tensors],
        "input_dtypes": [str(x.dtype).removeprefix("torch.") for x in tensors],
        "flop_counter_total": int(sum(node_flops.values())),
        "folding": "zero-cost and constant ops folded into producer/consumer ops (sparoa_env.extract)",
        "fallbacks": fallbacks,
    }
    info.update(meta or {})
    return OpGraph(model=name or type(module).__name__, batch=batch, nodes=tuple(op_nodes), edges=tuple(edges),
                   meta=info)


def _storage_bases(graph: Any) -> dict[str, str]:
    """fx node -> the node whose tensor storage it shares (itself unless it is an aliasing op)."""
    base: dict[str, str] = {}
    for n in graph.nodes:
        if n.op == "call_function" and _is_aliasing(n):
            src = n.all_input_nodes[0] if n.all_input_nodes else None
            if src is not None and n.target is operator.getitem:
                src = src.all_input_nodes[0] if src.all_input_nodes else src
            base[n.name] = base.get(src.name, src.name) if src is not None else n.name
        else:
            base[n.name] = n.name
    return base


def _dedup_bytes(names: Iterable[str], values: Mapping[str, _Value], base: Mapping[str, str]) -> float:
    """Bytes of tensors, counting views of one storage at most once (capped at the base tensor's bytes)."""
    per_base: dict[str, int] = {}
    for n in names:
        per_base[base[n]] = per_base.get(base[n], 0) + values[n].nbytes
    total = 0
    for b, nbytes in per_base.items():
        cap = values[b].nbytes if b in values else nbytes
        total += min(nbytes, cap) if cap > 0 else nbytes
    return float(total)

