"""What the detector writes of a record is bounded: depth, string length, total size; the
same value always gives the same result, and a value within the bounds is not copied."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.bounded import MARKER, MAX_DEPTH, MAX_SIZE, MAX_STRING, bounded, bounded_text


def nested(depth: int, leaf: Any = "x") -> Any:
    value = leaf
    for _ in range(depth):
        value = {"a": [value]} if depth % 2 else [value]
    return value


def test_a_value_within_the_bounds_is_returned_as_it_is() -> None:
    value = {"streamName": "front-door", "tags": [{"k": "v"}], "n": 3, "ok": True, "x": None}
    assert bounded(value) is value
    assert bounded("short") == "short"


def test_nesting_past_the_depth_bound_becomes_a_marker() -> None:
    deep = nested(1000)

    cut = bounded(deep)

    text = orjson.dumps(cut).decode()  # orjson writes it: at most 254 levels
    assert text.startswith("[" * MAX_DEPTH + "\"")
    assert f"{MARKER}[truncated: nested deeper than {MAX_DEPTH} levels]" in text
    assert bounded(nested(1000)) == cut


def test_a_long_string_keeps_its_start_its_length_and_a_hash() -> None:
    one, two = "a" * 10_000 + "1", "a" * 10_000 + "2"

    cut_one, cut_two = bounded(one), bounded(two)

    assert cut_one.startswith("a" * MAX_STRING + MARKER + "[truncated: 10001 characters, sha256 ")
    assert cut_one != cut_two
    assert bounded(one) == cut_one
    assert bounded_text("abc", 2).startswith("ab" + MARKER)


def test_a_value_past_the_size_bound_keeps_its_first_items_and_counts_the_rest() -> None:
    many = {f"key{n}": "v" * 100 for n in range(1000)}

    cut = bounded(many)

    assert len(orjson.dumps(cut)) < MAX_SIZE + 1000
    kept = [key for key in cut if key != MARKER]
    assert kept == [f"key{n}" for n in range(len(kept))]
    assert cut[MARKER] == f"{MARKER}[truncated: {1000 - len(kept)} more items]"
    listed = bounded(["v" * 100] * 1000)
    assert listed[-1] == f"{MARKER}[truncated: {1000 - len(listed) + 1} more items]"


def test_what_orjson_cannot_write_becomes_text() -> None:
    assert bounded({"n": 2**70}) == {"n": str(2**70)}
    assert bounded({1: "x"}) == {"1": "x"}
    assert bounded(2**100_000).startswith(MARKER + "[truncated: an integer of")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5),
                                                                      children, max_size=5),
    max_leaves=40,
)


@given(JSON, st.integers(0, 400))
@settings(max_examples=300)
def test_any_value_at_any_depth_is_written_and_deterministic(value: Any, depth: int) -> None:
    wrapped = nested(depth, value)

    cut = bounded(wrapped)

    assert orjson.dumps(cut) == orjson.dumps(bounded(nested(depth, value)))
