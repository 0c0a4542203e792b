"""Reading rule and list files, which people write and anyone with access to the rules folder
can change: a file is bounded in bytes, nesting and alias expansion before anything walks it,
so one file cannot exhaust the loader's memory or stack ("billion laughs", `[[[[…]]]]`).

Parsing is libyaml's (PyYAML's C loader, ten times the pure-Python one: loading dominates
`detector rules test`); libyaml itself refuses nesting past 1,000 levels while scanning, and
the limits below are checked on the composed nodes before any data is built from them.
A value whose tag cannot build it (`!!int abc`, `!!timestamp 2020-13-45`) or an integer too
large to print is a YAMLError at its line, like a syntax error, never a Python exception.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64  # nested mappings and lists in one document, aliases expanded
MAX_NODES = 1_000_000  # values of one document, an alias counting as often as it is used
MAX_INTEGER = 2**64  # larger integers are refused: Python cannot even print 4,300 digits
_PIECE = 64 * 1024  # bytes read at a time


class LimitError(yaml.MarkedYAMLError):
    """A YAML file beyond one of the limits above; `problem` says which."""


def read_text(path: Path) -> str:
    """The file's text; never more than MAX_FILE_BYTES are read (a FIFO or /dev/zero too).

    Read in pieces: one read of MAX_FILE_BYTES would allocate that much for every file."""
    pieces: list[bytes] = []
    size = 0
    with path.open("rb") as file:
        while size <= MAX_FILE_BYTES and (piece := file.read(_PIECE)):
            pieces.append(piece)
            size += len(piece)
    if size > MAX_FILE_BYTES:
        raise LimitError(problem=f"the file is larger than {MAX_FILE_BYTES // 2**20} MiB, "
                                 "the limit for rule and list files")
    return b"".join(pieces).decode("utf-8")


_INT_TAG = "tag:yaml.org,2002:int"
_INTEGER_CHARACTERS = 100  # 64 bits in any notation YAML has (binary, with `_` separators)
_TOO_LARGE = ValueError("integers beyond 64 bits are refused; quote the value to use it as text")


class _Loader(yaml.CSafeLoader):
    """libyaml's safe loader whose values fail as YAMLErrors at their own node."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        if node.tag == _INT_TAG and len(node.value) > _INTEGER_CHARACTERS:
            raise _unreadable(node, _TOO_LARGE)  # before int() spends time on it
        try:
            data = super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as error:  # PyYAML's constructors raise anything on odd values
            raise _unreadable(node, error) from None
        if type(data) is int and not -MAX_INTEGER <= data <= MAX_INTEGER:
            raise _unreadable(node, _TOO_LARGE)
        return data


def _unreadable(node: yaml.Node, error: Exception) -> yaml.constructor.ConstructorError:
    value = node.value if isinstance(node, yaml.ScalarNode) else ""
    shown = f" {value[:40]!r}" if isinstance(value, str) else ""
    return yaml.constructor.ConstructorError(
        None, None, f"cannot read the {node.tag.rsplit(':', 1)[-1]} value{shown}: {error}",
        node.start_mark)


def documents(text: str) -> Iterator[tuple[yaml.Node, Any]]:
    """Each document of `text` as (node, data): the node keeps the lines for error messages.
    Raises yaml.YAMLError (LimitError for the limits) at the first document that fails."""
    loader = _Loader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            _measure(node, 1, {}, set())
            try:
                data = loader.construct_document(node)
            except yaml.YAMLError:
                raise
            except Exception as error:  # as above, from a mapping built after its values
                raise _unreadable(node, error) from None
            yield node, data
    finally:
        loader.dispose()


def _measure(node: yaml.Node, level: int, known: dict[int, tuple[int, int]],
             open_: set[int]) -> tuple[int, int]:
    """(values, height) of a node once aliases are expanded. A node that several aliases
    use is counted once per use but walked once: this is linear in the composed document."""
    if level > MAX_DEPTH:
        raise LimitError(problem=f"nested deeper than {MAX_DEPTH} levels",
                         problem_mark=node.start_mark)
    seen = known.get(id(node))
    if seen is None:
        if id(node) in open_:
            raise LimitError(problem="an alias refers to a node that contains it",
                             problem_mark=node.start_mark)
        seen = _walk(node, level, known, open_)
        known[id(node)] = seen
    if level + seen[1] > MAX_DEPTH:
        raise LimitError(problem=f"nested deeper than {MAX_DEPTH} levels once its aliases "
                                 "are expanded", problem_mark=node.start_mark)
    return seen


def _walk(node: yaml.Node, level: int, known: dict[int, tuple[int, int]],
          open_: set[int]) -> tuple[int, int]:
    if not isinstance(node, yaml.SequenceNode | yaml.MappingNode):
        return 1, 0
    open_.add(id(node))
    children = (node.value if isinstance(node, yaml.SequenceNode)
                else [item for pair in node.value for item in pair])
    size, height = 1, 0
    for child in children:
        if type(child) is yaml.ScalarNode and level < MAX_DEPTH:  # most values: no call
            size += 1
            height = height or 1
        else:
            child_size, child_height = _measure(child, level + 1, known, open_)
            size += child_size
            height = max(height, child_height + 1)
        if size > MAX_NODES:
            raise LimitError(problem=f"more than {MAX_NODES:,} values once its aliases are "
                                     "expanded", problem_mark=node.start_mark)
    open_.discard(id(node))
    return size, height
