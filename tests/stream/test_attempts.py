"""Attempts at a message survive the death of the worker process that made them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from detector.settings import SettingsError as ConfigError
from detector.stream.attempts import CARRIED, SLOT_BYTES, Attempts, Key

MESSAGE = ("cloudtrail-events", 3, 1042)
OTHER = ("detector-repartition-g", 0, 7)


def run_dying_on(directory: Path, key: Key) -> None:
    """A run of the worker that dies while it processes `key`."""
    attempts = Attempts.open(directory, agents=1)
    attempts.slot().begin(key)
    attempts.close()


def test_a_message_being_processed_when_the_process_died_counts_as_an_attempt(
    tmp_path: Path,
) -> None:
    run_dying_on(tmp_path, MESSAGE)
    restarted = Attempts.open(tmp_path, agents=2)
    assert restarted.slot().deaths(MESSAGE) == 1
    restarted.close()
    run_dying_on(tmp_path, MESSAGE)  # attempted again, and dying again
    assert Attempts.open(tmp_path, agents=2).slot().deaths(MESSAGE) == 2


def test_a_message_done_before_the_process_died_is_not_blamed(tmp_path: Path) -> None:
    first = Attempts.open(tmp_path, agents=1)
    slot = first.slot()
    slot.begin(MESSAGE)
    slot.end()  # a kill while idle, or a stop on a failed send, comes after this
    first.close()
    assert Attempts.open(tmp_path, agents=1).deaths == {}


def test_a_message_processed_on_a_later_attempt_is_forgotten(tmp_path: Path) -> None:
    run_dying_on(tmp_path, MESSAGE)
    second = Attempts.open(tmp_path, agents=1)
    slot = second.slot()
    slot.begin(MESSAGE)
    slot.end()  # it went through this time: the death was not its doing
    assert second.deaths == {}
    second.close()
    assert Attempts.open(tmp_path, agents=1).deaths == {}


def test_deaths_are_carried_until_their_message_comes_again(tmp_path: Path) -> None:
    run_dying_on(tmp_path, MESSAGE)
    run_dying_on(tmp_path, OTHER)  # the process dies on another one before MESSAGE comes again
    assert Attempts.open(tmp_path, agents=1).deaths == {MESSAGE: 1, OTHER: 1}


def test_only_the_most_recent_deaths_are_carried(tmp_path: Path) -> None:
    for offset in range(CARRIED + 5):
        run_dying_on(tmp_path, ("in", 0, offset))
    deaths = Attempts.open(tmp_path, agents=1).deaths
    assert sorted(deaths) == [("in", 0, offset) for offset in range(5, CARRIED + 5)]


def test_workers_sharing_a_data_dir_keep_their_own_files_and_a_dead_ones_is_taken_over(
    tmp_path: Path,
) -> None:
    one = Attempts.open(tmp_path, agents=1)
    two = Attempts.open(tmp_path, agents=1)
    assert (one.path.name, two.path.name) == ("attempts-0", "attempts-1")
    two.slot().begin(MESSAGE)
    one.slot().begin(OTHER)
    two.close()  # the second worker dies
    restarted = Attempts.open(tmp_path, agents=1)
    assert restarted.path == two.path
    assert restarted.deaths == {MESSAGE: 1}


def test_slots_not_marked_in_progress_and_a_cut_off_one_count_nothing(tmp_path: Path) -> None:
    (tmp_path / "attempts-0").write_bytes(os.urandom(SLOT_BYTES * 3).replace(b"*", b"-")
                                          + b"*" + b"\xff" * 10)
    assert Attempts.open(tmp_path, agents=1).deaths == {}


def test_a_data_dir_that_cannot_hold_the_file_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="--data-dir: cannot keep the attempts file"):
        Attempts.open(blocker, agents=1)


def test_a_sigkilled_process_leaves_its_message_noted(tmp_path: Path) -> None:
    """The page cache keeps what the killed process wrote to the mapped file."""
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from detector.stream.attempts import Attempts\n"
        "attempts = Attempts.open(Path(sys.argv[1]), agents=2)\n"
        "attempts.slot()\n"
        "attempts.slot().begin(('cloudtrail-events', 3, 1042))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    killed = subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=False,
                            timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert Attempts.open(tmp_path, agents=2).deaths == {MESSAGE: 1}
