"""Gymnasium environments. Importing this module registers the ids (idempotently)."""

from __future__ import annotations

import gymnasium as gym

from .sparoa import SparOAEnv

__all__ = ["SparOAEnv", "register_envs", "require_sparoa_id", "SPAROA_IDS", "SPAROA_HW_IDS"]

#: id -> registration kwargs (variants of one class differ only by kwargs, as CompilerGym does)
SPAROA_IDS: dict[str, dict] = {
    "SparOA-Orin-v0": {"profile": "orin-agx"},
    "SparOA-OrinNano-v0": {"profile": "orin-nano"},
    # CPU + iGPU + NPU: the action's [-1, 1] is cut into three bins (see SparOAEnv's Action Space)
    "SparOA-CoreUltra-v0": {"profile": "intel-core-ultra"},
    # this machine: the profile calibrated from its own traces (two lanes = two CPU core groups)
    "SparOA-Host-v0": {"profile": "host"},
}

#: ids whose backend runs real torch ops: measured, so the same seed does not replay exactly
SPAROA_HW_IDS: dict[str, dict] = {
    "SparOA-Host-hw-v0": {"profile": "host", "backend": "hw"},
}


def register_envs() -> None:
    for ids, nondeterministic in ((SPAROA_IDS, False), (SPAROA_HW_IDS, True)):
        for env_id, kwargs in ids.items():
            if env_id not in gym.registry:
                gym.register(id=env_id, entry_point="sparoa_env.envs.sparoa:SparOAEnv", kwargs=kwargs,
                             nondeterministic=nondeterministic)


def require_sparoa_id(env_id: str, what: str = "--env") -> str:
    """``env_id`` when it names a registered SparOAEnv (ours or one a user registered with its entry point);
    a ValueError naming ``what`` and the valid ids otherwise (the agents and CLIs work on SparOAEnv only)."""
    spec = gym.registry.get(env_id)
    ep = getattr(spec, "entry_point", None) if spec is not None else None
    if ep is SparOAEnv or ep == "sparoa_env.envs.sparoa:SparOAEnv":
        return env_id
    valid = ", ".join(list(SPAROA_IDS) + list(SPAROA_HW_IDS))
    why = "is not a registered id" if spec is None else "is not a SparOA scheduling environment"
    hint = (" (SparseLoom ids are used by 'sparoa loom')" if env_id.startswith("SparseLoom") else "")
    raise ValueError(f"{what} {env_id!r} {why}{hint}; SparOA ids: {valid}")


register_envs()

from ..loom import register_loom_envs  # noqa: E402  (SparseLoom ids; torch-free)

register_loom_envs()
