"""The benchmark harness (the repository's `bench` package) is importable here: its marker
builders are specified in-process. pytest puts only `tests` on the path (pyproject), where
`bench` would be this test directory."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = str(Path(__file__).resolve().parents[2])
if REPO not in sys.path:
    sys.path.insert(0, REPO)
