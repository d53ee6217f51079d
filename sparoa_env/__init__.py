"""sparoa-env: learn where each DNN operator runs on an edge SoC (CPU / GPU / NPU) and which sparse
variant to run, with a SimPy model of the SoC calibrated from traces and a real torch backend.

``import sparoa_env`` registers the Gymnasium ids (``SparOA-Orin-v0``, ``SparOA-OrinNano-v0``, ...) and
imports neither torch nor matplotlib.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .graph import OpGraph, OpNode  # noqa: E402
from .envs import register_envs  # noqa: E402

__all__ = ["OpGraph", "OpNode", "register_envs", "__version__"]
