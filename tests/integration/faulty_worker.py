"""`detector worker` with faults, for the tests only (production never imports this file).

On the input side the engine raises on a record whose eventName is `DetectorTestRaise`, and
the process kills itself (SIGKILL, as the OOM killer or the kubelet would) on one whose
eventName is `DetectorTestKill`; on the state side the stateful rules do the same with a
record whose eventID is `detector-test-raise` or `detector-test-kill`.

    python tests/integration/faulty_worker.py worker --rules ... (as `detector worker`)
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence

from detector.alerts import Alert
from detector.cli import main
from detector.engine import Engine, Rule
from detector.engine.stateful import Stateful
from detector.events import Record

RAISE, KILL = "DetectorTestRaise", "DetectorTestKill"  # eventName, input side
RAISE_STATE, KILL_STATE = "detector-test-raise", "detector-test-kill"  # eventID, state side


def fail(marker: str, raising: str, killing: str) -> None:
    if marker == raising:
        raise RuntimeError("a fault injected by the test")
    if marker == killing:
        os.kill(os.getpid(), signal.SIGKILL)


def install() -> None:
    matching, observe = Engine.matching, Stateful.observe

    def faulty_matching(self: Engine, record: Record) -> list[Rule]:
        fail(record.event_name, RAISE, KILL)
        return matching(self, record)

    def faulty_observe(self: Stateful, record: Record, matched: Sequence[Rule]) -> list[Alert]:
        fail(record.event_id or "", RAISE_STATE, KILL_STATE)
        return observe(self, record, matched)

    Engine.matching = faulty_matching  # type: ignore[method-assign]
    Stateful.observe = faulty_observe  # type: ignore[method-assign]


if __name__ == "__main__":
    install()
    sys.exit(main(sys.argv[1:]))
