"""Plan: where each operator of a model runs, plus the batch size (DESIGN section 4).

A plan is what the agents produce, what :class:`sparoa_env.hw.engine.HybridEngine` executes and what
evaluation replays. It maps every op name of an :class:`~sparoa_env.graph.OpGraph` (the names
:func:`sparoa_env.extract.extract_graph` gives, which are the fx node names of each op group's main op) to
a processor name of the SoC profile (``"cpu"``, ``"gpu"``, ...). No torch here.

JSON form::

    {"schema_version": 1, "model": "mobilenet_v3_small", "batch": 1,
     "placement": {"convolution": "gpu", "relu": "gpu", ...}, "meta": {...}}

:meth:`Plan.validate` checks a plan against a graph and the processor names; a plan that misses ops,
names ops the graph does not have, or names unknown processors gets a :class:`PlanError` naming them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .graph import OpGraph

__all__ = ["Plan", "PlanError", "PLAN_SCHEMA_VERSION"]

PLAN_SCHEMA_VERSION = 1
_KEYS = {"schema_version", "model", "batch", "placement", "meta"}


class PlanError(ValueError):
    """A plan does not fit a graph or a set of processors, or a plan file is malformed."""


def _names(items: Iterable[str], limit: int = 8) -> str:
    xs = list(items)
    shown = ", ".join(repr(x) for x in xs[:limit])
    return shown + (f" (and {len(xs) - limit} more)" if len(xs) > limit else "")


@dataclass(frozen=True)
class Plan:
    """``placement``: op name -> processor name; ``batch``: the batch size the plan was made for."""

    placement: Mapping[str, str]
    batch: int = 1
    model: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.placement, Mapping):
            raise PlanError(f"plan placement must be a mapping of op name -> processor name, got {type(self.placement).__name__}")
        bad = [(k, v) for k, v in self.placement.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise PlanError(f"plan placement must map op names (str) to processor names (str); bad entries: {bad[:5]}")
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise PlanError(f"plan batch must be a positive integer, got {self.batch!r}")
        object.__setattr__(self, "placement", dict(self.placement))
        object.__setattr__(self, "meta", dict(self.meta))

    # ------------------------------------------------------------------ queries
    def __len__(self) -> int:
        return len(self.placement)

    def __getitem__(self, op: str) -> str:
        try:
            return self.placement[op]
        except KeyError:
            raise PlanError(f"plan has no processor for op {op!r}") from None

    def processors_used(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.placement.values())))

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.placement.values():
            out[p] = out.get(p, 0) + 1
        return out

    def lanes(self, graph: OpGraph, processors: Sequence[str]) -> np.ndarray:
        """Lane index per node of ``graph`` (in graph order); validates first."""
        self.validate(graph, processors)
        idx = {p: k for k, p in enumerate(processors)}
        return np.array([idx[self.placement[n.name]] for n in graph.nodes], dtype=np.int64)

    # ------------------------------------------------------------------ validation
    def validate(self, graph: OpGraph | Iterable[str], processors: Sequence[str] | None = None) -> None:
        """Raise :class:`PlanError` unless the plan places exactly the ops of ``graph`` (an OpGraph or an
        iterable of op names) on processors from ``processors`` (when given)."""
        if isinstance(graph, OpGraph):
            names, label = [n.name for n in graph.nodes], f"graph {graph.model!r}"
        else:
            names, label = list(graph), "the graph"
        have = set(names)
        missing = [n for n in names if n not in self.placement]
        unknown_ops = [n for n in self.placement if n not in have]
        problems = []
        if missing:
            problems.append(f"it misses {len(missing)} of the {len(names)} op(s) of {label}: {_names(missing)}; "
                            f"every op needs a processor")
        if unknown_ops:
            problems.append(f"it names {len(unknown_ops)} op(s) that {label} does not have: {_names(unknown_ops)} "
                            f"(was the plan made for another model or batch size?)")
        if processors is not None:
            valid = set(processors)
            bad: dict[str, list[str]] = {}
            for op, p in self.placement.items():
                if p not in valid:
                    bad.setdefault(p, []).append(op)
            if bad:
                desc = "; ".join(f"{p!r} (ops {_names(ops, 4)})" for p, ops in sorted(bad.items()))
                problems.append(f"it names unknown processor(s) {desc}; valid processors: {', '.join(processors)}")
        if problems:
            what = f"plan for {self.model!r}" if self.model else "plan"
            raise PlanError(f"{what} does not fit: " + "; ".join(problems))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def uniform(cls, graph: OpGraph, processor: str, **kw: Any) -> "Plan":
        """Every op on one processor."""
        return cls({n.name: processor for n in graph.nodes}, batch=kw.pop("batch", graph.batch),
                   model=kw.pop("model", graph.model), **kw)

    @classmethod
    def from_lanes(cls, graph: OpGraph, processors: Sequence[str], lanes: Sequence[int], **kw: Any) -> "Plan":
        """From a lane index per node (graph order)."""
        if len(lanes) != len(graph.nodes):
            raise PlanError(f"from_lanes(): got {len(lanes)} lane(s) for the {len(graph.nodes)} op(s) of graph {graph.model!r}")
        bad = [int(k) for k in lanes if not 0 <= int(k) < len(processors)]
        if bad:
            raise PlanError(f"from_lanes(): lane(s) {sorted(set(bad))} out of range for processors {list(processors)}")
        return cls({n.name: processors[int(k)] for n, k in zip(graph.nodes, lanes)}, batch=kw.pop("batch", graph.batch),
                   model=kw.pop("model", graph.model), **kw)

    @classmethod
    def random(cls, graph: OpGraph, processors: Sequence[str], rng: np.random.Generator, **kw: Any) -> "Plan":
        """Each op on a processor drawn uniformly from ``processors`` with ``rng``."""
        lanes = rng.integers(0, len(processors), size=len(graph.nodes))
        return cls.from_lanes(graph, processors, lanes, **kw)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": PLAN_SCHEMA_VERSION, "model": self.model, "batch": self.batch,
                "placement": dict(self.placement), "meta": dict(self.meta)}

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def from_dict(cls, d: Any, source: str = "<plan>") -> "Plan":
        if not isinstance(d, Mapping):
            raise PlanError(f"{source}: a plan is a JSON object with 'placement' (op -> processor), got {type(d).__name__}")
        unknown = set(d) - _KEYS
        if unknown:
            raise PlanError(f"{source}: unknown field(s) {sorted(unknown)}; valid fields: {', '.join(sorted(_KEYS))}")
        if "placement" not in d:
            raise PlanError(f"{source}: missing field 'placement' (an object mapping op names to processor names)")
        v = d.get("schema_version", PLAN_SCHEMA_VERSION)
        if v != PLAN_SCHEMA_VERSION:
            raise PlanError(f"{source}: schema_version {v!r} is not supported (this version reads {PLAN_SCHEMA_VERSION})")
        if not isinstance(d["placement"], Mapping):
            raise PlanError(f"{source}: field 'placement' must be an object mapping op names to processor names")
        meta = d.get("meta") or {}
        if not isinstance(meta, Mapping):
            raise PlanError(f"{source}: field 'meta' must be an object, got {type(meta).__name__}")
        try:
            return cls(placement=d["placement"], batch=d.get("batch", 1), model=str(d.get("model", "")), meta=meta)
        except PlanError as e:
            raise PlanError(f"{source}: {e}") from None

    @classmethod
    def from_json(cls, text: str, source: str = "<plan>") -> "Plan":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise PlanError(f"{source}: not valid JSON ({e})") from None
        return cls.from_dict(d, source)

    @classmethod
    def load(cls, path: str | Path) -> "Plan":
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"plan file not found: {p}")
        return cls.from_json(p.read_text(), source=str(p))

    @classmethod
    def coerce(cls, plan: "Plan | Mapping[str, str] | str | Path") -> "Plan":
        """A Plan from a Plan, a plain op -> processor mapping, or a path to a plan JSON file."""
        if isinstance(plan, Plan):
            return plan
        if isinstance(plan, (str, Path)):
            return cls.load(plan)
        if isinstance(plan, Mapping):
            if "placement" in plan and isinstance(plan.get("placement"), Mapping):
                return cls.from_dict(plan)
            return cls(placement=plan)
        raise PlanError(f"a plan must be a Plan, a mapping op -> processor or a JSON path, got {type(plan).__name__}")
