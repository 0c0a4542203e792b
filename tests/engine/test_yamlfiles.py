"""Rule and list files are bounded before anything walks them: size, nesting, alias expansion,
whatever holds the deepest value (a list, an object or a plain value)."""

from __future__ import annotations

from pathlib import Path

import pytest

from detector.engine.yamlfiles import MAX_DEPTH, MAX_FILE_BYTES, LimitError, documents, read_text

INNERMOST = {"x": 1, "[]": 1, "{a: x}": 2}  # a value and the levels it takes


def nested(levels: int, innermost: str) -> str:
    """`levels` lists, one inside the other, around `innermost`."""
    return "[" * levels + innermost + "]" * levels


@pytest.mark.parametrize("innermost", INNERMOST)
def test_the_deepest_value_may_sit_at_the_depth_limit(innermost: str) -> None:
    levels = MAX_DEPTH - INNERMOST[innermost]
    [(_, data)] = list(documents(nested(levels, innermost)))
    for _ in range(levels):
        assert isinstance(data, list)
        (data,) = data
    assert data in ("x", {"a": "x"}, [])


@pytest.mark.parametrize("innermost", INNERMOST)
def test_a_value_one_level_deeper_is_refused(innermost: str) -> None:
    levels = MAX_DEPTH - INNERMOST[innermost] + 1
    with pytest.raises(LimitError, match=f"nested deeper than {MAX_DEPTH} levels"):
        list(documents(nested(levels, innermost)))


def test_a_file_at_the_size_limit_is_read_and_one_byte_more_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    path.write_bytes(b"#" * (MAX_FILE_BYTES - 1) + b"\n")
    assert len(read_text(path)) == MAX_FILE_BYTES
    path.write_bytes(b"#" * MAX_FILE_BYTES + b"\n")
    with pytest.raises(LimitError, match="larger than 4 MiB"):
        read_text(path)


def test_a_file_that_never_ends_is_read_only_to_the_limit() -> None:
    with pytest.raises(LimitError, match="larger than 4 MiB"):
        read_text(Path("/dev/zero"))
