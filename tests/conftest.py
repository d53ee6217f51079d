import os
import sys
from pathlib import Path

# tests import their helpers (synthetic graphs, fakes, unseen models) as top-level modules
sys.path.insert(0, str(Path(__file__).parent))

# Tianshou's replay buffer JIT-compiles with numba on first use (about a minute on 2 cores); tests use
# tiny buffers, so run it interpreted. Set before any test module imports tianshou.
os.environ.setdefault("NUMBA_DISABLE_JIT", "1")
