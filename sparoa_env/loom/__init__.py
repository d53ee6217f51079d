"""SparseLoom: many DNN tasks at once on one SoC, each with its own SLO, served from a zoo of sparse and
stitched variants (DESIGN section 1, item 4). See ``docs/loom.md``.

Importing this package registers ``SparseLoom-Orin-v0`` and ``SparseLoom-CoreUltra-v0`` and needs neither
torch nor scikit-learn: the environment reads the shipped tables under ``sparoa_env/data/loom``. Training,
stitching in torch (``tasks``, ``variants``, ``stitch``, ``build``) and the estimator (scikit-learn) import
their dependencies when used.
"""

from __future__ import annotations

from .env import LOOM_IDS, SparseLoomEnv, register_loom_envs

__all__ = ["SparseLoomEnv", "LOOM_IDS", "register_loom_envs"]
