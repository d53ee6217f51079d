import sys
from pathlib import Path

# tests import their helpers (synthetic graphs, fakes, unseen models) as top-level modules
sys.path.insert(0, str(Path(__file__).parent))
