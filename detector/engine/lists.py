"""Lists: YAML files of named values (principals, CIDR ranges, regions) that rules reference
as `%name%` with the `expand` modifier, so operators edit lists without touching rules.

An entry is a network when it is written like one (an address, a `/` and digits), else a
Sigma string. Entries that cannot be what the operator meant are refused with their line
instead of silently never matching: an invalid network (`203.0.113.0/33`), an empty or null
entry, a nested list or mapping, space around the value, control or invisible format
characters (a tab, a zero-width space, a right-to-left override).
"""

from __future__ import annotations

import ipaddress
import unicodedata
from pathlib import Path

import yaml

from detector.engine.rule import LoadError, Location
from detector.engine.yamlfiles import LimitError, documents, read_text

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_IPV4_CHARACTERS = frozenset("0123456789.")
_IPV6_CHARACTERS = frozenset("0123456789abcdefABCDEF.:")
_LENGTH_CHARACTERS = frozenset("0123456789/+- ")  # a sign or space is a typo, not a path
_INVISIBLE = frozenset(("Cc", "Cf", "Cs"))  # control, format, lone surrogate
_NULL_TAG = "tag:yaml.org,2002:null"


def network(entry: str) -> Network | None:
    """The network an entry in CIDR notation names, None for any other entry.

    Raises ValueError for an entry written as a network (an address, `/`, digits) that is
    not a valid one: `203.0.113.0/33`, `10.0.0.0/8/8`, `300.1.1.1/24`, `10.0.0.0/-1`."""
    address, slash, length = entry.partition("/")
    if not (slash and address and set(length) <= _LENGTH_CHARACTERS
            and set(address) <= (_IPV6_CHARACTERS if ":" in address else _IPV4_CHARACTERS)):
        return None
    return ipaddress.ip_network(entry, strict=False)


def entry_problem(entry: str) -> str | None:
    """Why a list entry cannot be meant as written, or None."""
    if entry == "":
        return "an empty entry matches only empty values; remove it"
    if entry != entry.strip():
        return f"{entry!r} has space around it, so it never matches a trimmed value"
    hidden = sorted({f"U+{ord(char):04X}" for char in entry
                     if unicodedata.category(char) in _INVISIBLE})
    if hidden:
        return f"{entry!r} holds control or invisible characters ({', '.join(hidden)})"
    try:
        network(entry)
    except ValueError as error:
        return f"{entry!r} is written as a network but is not a valid one: {error}"
    return None


def load_lists(files: list[Path]) -> tuple[dict[str, tuple[str, ...]], list[LoadError]]:
    """Each file maps list names to lists of scalar values; a name may be defined once."""
    lists: dict[str, tuple[str, ...]] = {}
    where: dict[str, Location] = {}
    errors: list[LoadError] = []
    for path in files:
        try:
            nodes = [node for node, _data in documents(read_text(path))]
        except LimitError as error:
            errors.append(_file_error(path, error, f"list file refused: {error.problem}"))
            continue
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            errors.append(_file_error(path, error, f"cannot read list file: {error}"))
            continue
        if not nodes:
            continue
        node = nodes[0]
        if len(nodes) > 1 or not isinstance(node, yaml.MappingNode):
            errors.append(LoadError(Location(str(path), node.start_mark.line + 1), "(list file)",
                                    "a list file maps list names to lists of values, e.g. "
                                    "`stream_admins: [arn:aws:iam::111122223333:role/Admin]`"))
            continue
        for key_node, value_node in node.value:
            name = str(key_node.value)
            location = Location(str(path), key_node.start_mark.line + 1)
            if name in lists:
                errors.append(LoadError(location, f"list {name}",
                                        f"list already defined at {where[name]}; "
                                        "give each list one home"))
                continue
            values = _values(path, name, value_node, errors)
            if values is None:
                errors.append(LoadError(location, f"list {name}",
                                        "values must be a YAML list of strings"))
            else:
                lists[name] = values
                where[name] = location
    return lists, errors


def _file_error(path: Path, error: Exception, message: str) -> LoadError:
    line = getattr(getattr(error, "problem_mark", None), "line", -1) + 1
    return LoadError(Location(str(path), max(line, 1)), "(list file)", message)


def _values(path: Path, name: str, node: yaml.Node, errors: list[LoadError]
            ) -> tuple[str, ...] | None:
    """The good entries of a list (each bad one is an error at its line), None if `node` is
    not a list at all."""
    if isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG:
        return ()
    if not isinstance(node, yaml.SequenceNode):
        return None
    values: list[str] = []
    for position, item in enumerate(node.value, 1):
        if not isinstance(item, yaml.ScalarNode):
            problem: str | None = "a nested list or mapping; each entry is one value"
        elif item.tag == _NULL_TAG:
            problem = "empty (null); remove it or quote the value"
        else:
            problem = entry_problem(str(item.value))
        if problem is None:
            values.append(str(item.value))
        else:
            errors.append(LoadError(Location(str(path), item.start_mark.line + 1),
                                    f"list {name}", f"entry #{position} is refused: {problem}"))
    return tuple(values)
