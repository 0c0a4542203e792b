"""Lists: YAML files of named values (principals, CIDR ranges, regions) that rules reference
as `%name%` with the `expand` modifier, so operators edit lists without touching rules."""

from __future__ import annotations

from pathlib import Path

import yaml

from detector.engine.rule import LoadError, Location


def load_lists(files: list[Path]) -> tuple[dict[str, tuple[str, ...]], list[LoadError]]:
    """Each file maps list names to lists of scalar values; a name may be defined once."""
    lists: dict[str, tuple[str, ...]] = {}
    where: dict[str, Location] = {}
    errors: list[LoadError] = []
    for path in files:
        try:
            node = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            line = getattr(getattr(error, "problem_mark", None), "line", -1) + 1
            errors.append(LoadError(Location(str(path), max(line, 1)), "(list file)",
                                    f"cannot read list file: {error}"))
            continue
        if node is None:
            continue
        if not isinstance(node, yaml.MappingNode):
            errors.append(LoadError(Location(str(path), node.start_mark.line + 1), "(list file)",
                                    "a list file maps list names to lists of values, e.g. "
                                    "`stream_admins: [arn:aws:iam::111122223333:role/Admin]`"))
            continue
        for key_node, value_node in node.value:
            name = str(key_node.value)
            location = Location(str(path), key_node.start_mark.line + 1)
            values = _values(value_node)
            if values is None:
                errors.append(LoadError(location, f"list {name}",
                                        "values must be a YAML list of strings"))
            elif name in lists:
                errors.append(LoadError(location, f"list {name}",
                                        f"list already defined at {where[name]}; "
                                        "give each list one home"))
            else:
                lists[name] = values
                where[name] = location
    return lists, errors


def _values(node: yaml.Node) -> tuple[str, ...] | None:
    if isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null"):
        return ()
    if not isinstance(node, yaml.SequenceNode):
        return None
    values: list[str] = []
    for item in node.value:
        if not isinstance(item, yaml.ScalarNode) or item.value == "":
            return None
        values.append(str(item.value))
    return tuple(values)
