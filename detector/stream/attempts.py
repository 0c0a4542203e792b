"""Attempts at a message across deaths of the worker, so that a message that kills the worker
cannot kill every worker that takes its partition, forever.

An exception is caught where it is raised (the record or the message goes to the dead-letter
topic, reason `internal_error`); a death is not: an out-of-memory kill, a stall that fails the
liveness probe, a SIGKILL. So before an agent processes a message it notes the message (topic,
partition, offset) and the attempt in its slot of a small file in the data directory, marked
in progress, and clears the mark when it is done. A worker that starts reads the file back:
a slot still marked names a message whose processing the process did not survive. When that
message comes again (its offset was not committed) it is attempted again, `max_attempts` times
in all; then it goes to the dead-letter topic unprocessed (`attempts_exhausted`) and its offset
moves on.

The file is memory-mapped and nothing is fsynced (a message costs a few stores to memory,
about 0.5 µs): the page cache outlives the process (a container restarted in its pod
keeps the `emptyDir`), not the machine (a pod on another node starts with an empty directory
anyway). Only a death while a message is processed counts: a worker killed while idle, or one
that stops on a failed send (exit 75: the broker's state, not the message's) blames no message.
Each worker counts the deaths it saw itself, so with N workers taking the partition in turns a
message is tried at most `max_attempts` times by each of them.

Workers sharing a data directory each hold a file of their own (`attempts-<n>`, locked); one
that starts takes the first free file, that of a worker that died among them.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import struct
from pathlib import Path

from detector.settings import SettingsError as ConfigError

log = logging.getLogger(__name__)
Key = tuple[str, int, int]  # topic, partition, offset
SLOT_BYTES = 512  # a mark byte, the attempt, partition, offset, topic length and the topic
_FIELDS = struct.Struct("<IIqH")  # attempt, partition, offset, length of the topic name
CARRIED = 16  # deaths of earlier runs kept until their message comes again
MAX_FILES = 64  # workers sharing one data directory, at most
MAX_FILE_BYTES = 1024 * 1024  # read of a file, at most (it holds a few kB)
FILE_PREFIX = "attempts-"
IN_PROGRESS, DONE = b"*", b" "


class Attempts:
    """The deaths of the earlier processes of this worker, and this process's slots."""

    def __init__(self, fd: int, path: Path, deaths: dict[Key, int], agents: int) -> None:
        self.fd = fd
        self.path = path
        self.deaths = deaths  # message -> attempts at it the worker did not survive
        self._slots = 0
        self._agents = agents
        size = (CARRIED + agents) * SLOT_BYTES
        os.ftruncate(fd, 0)  # the slots of the last run are read: start afresh
        os.ftruncate(fd, size)
        self.map = mmap.mmap(fd, size)
        self._write_carried()

    @classmethod
    def open(cls, directory: Path, agents: int) -> Attempts:
        """The first file under `directory` no other worker holds (created when missing),
        with a slot for each of `agents`."""
        try:
            directory.mkdir(exist_ok=True)
            for number in range(MAX_FILES):
                path = directory / f"{FILE_PREFIX}{number}"
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                deaths = _read(os.pread(fd, MAX_FILE_BYTES, 0))
                if deaths:
                    log.warning("the last run of this worker died while processing %s",
                                ", ".join(f"{topic}[{partition}]@{offset} (attempt {count})"
                                          for (topic, partition, offset), count
                                          in deaths.items()))
                return cls(fd, path, deaths, agents)
        except OSError as error:
            raise ConfigError(f"DETECTOR_DATA_DIR / --data-dir: cannot keep the attempts file "
                              f"in {directory}: {error.strerror or error}") from None
        raise ConfigError(f"DETECTOR_DATA_DIR / --data-dir: {MAX_FILES} workers already use "
                          f"{directory}; give this one a data directory of its own")

    def close(self) -> None:
        """Let the file go (to another worker starting on this data directory)."""
        self.map.close()
        os.close(self.fd)

    def slot(self) -> Slot:
        """The slot of one agent (which processes one message at a time)."""
        if self._slots == self._agents:
            raise ValueError(f"all {self._agents} slots are taken")
        self._slots += 1
        return Slot(self, (CARRIED + self._slots - 1) * SLOT_BYTES)

    def forget(self, key: Key) -> None:
        """`key` was processed after all: an earlier death was not its doing."""
        if self.deaths.pop(key, None) is not None:
            self._write_carried()

    def _write_carried(self) -> None:
        """The deaths still to count, where the next process reads them if this one dies
        before their messages come again."""
        self.deaths = dict(list(self.deaths.items())[-CARRIED:])
        carried = list(self.deaths.items())
        for index in range(CARRIED):
            position = index * SLOT_BYTES
            self.map[position:position + 1] = DONE
            if index < len(carried):
                key, count = carried[index]
                _write(self.map, position, key, count, _topic(key[0]))


class Slot:
    """Where one agent notes the message it is processing."""

    def __init__(self, attempts: Attempts, position: int) -> None:
        self.attempts = attempts
        self.map = attempts.map
        self.position = position
        self.key: Key | None = None
        self._topic_name, self._topic = "", b""

    def deaths(self, key: Key) -> int:
        """How many attempts at `key` the worker did not survive."""
        return self.attempts.deaths.get(key, 0)

    def begin(self, key: Key) -> None:
        """`key` is being processed from now until `end` (await nothing in between: the
        slot marked in progress says which message the process was busy with)."""
        if key[0] != self._topic_name:
            self._topic_name, self._topic = key[0], _topic(key[0])
        _write(self.map, self.position, key, self.deaths(key) + 1, self._topic)
        self.key = key

    def end(self) -> None:
        self.map[self.position:self.position + 1] = DONE
        if self.key is not None and self.key in self.attempts.deaths:
            self.attempts.forget(self.key)
        self.key = None


def _topic(name: str) -> bytes:
    return name.encode()[:SLOT_BYTES - 1 - _FIELDS.size]


def _write(target: mmap.mmap, position: int, key: Key, attempt: int, topic: bytes) -> None:
    """Fill a slot, then mark it in progress: a process killed before the mark (a single
    byte, never written in part) leaves it unmarked, so a half-written slot is never read."""
    target[position:position + 1] = DONE
    _FIELDS.pack_into(target, position + 1, attempt, key[1], key[2], len(topic))
    start = position + 1 + _FIELDS.size
    target[start:start + len(topic)] = topic
    target[position:position + 1] = IN_PROGRESS


def _read(data: bytes) -> dict[Key, int]:
    """The messages of the slots marked in progress, with their attempt (the latest wins)."""
    deaths: dict[Key, int] = {}
    for position in range(0, len(data) - SLOT_BYTES + 1, SLOT_BYTES):
        if data[position:position + 1] != IN_PROGRESS:
            continue
        attempt, partition, offset, length = _FIELDS.unpack_from(data, position + 1)
        start = position + 1 + _FIELDS.size
        topic = data[start:start + length].decode(errors="replace")
        key = (topic, partition, offset)
        deaths[key] = max(deaths.pop(key, 0), attempt)
    return deaths
