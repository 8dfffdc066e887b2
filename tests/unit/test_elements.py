"""What makes an element: ``damas_core.elements.encode`` and the checks built on it."""

from __future__ import annotations

import time

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from damas_core.elements import MAX_DEPTH, check_element, encode, encode_all, encode_run
from damas_core.errors import BadRequest


def nested(levels: int) -> dict:
    """An element whose containers nest ``levels`` deep, the element itself included."""
    element: dict = {"_id": "/deep"}
    node = element
    for i in range(levels - 1):
        child: dict | list = {} if i % 2 else []
        if isinstance(node, dict):
            node["v"] = child
        else:
            node.append(child)
        node = child
    return element


def test_encode_gives_the_json_orjson_writes():
    element = {"_id": "/a", "n": 1.5, "tags": ["x", {"y": None}], "ok": True}
    assert encode(element, "create") == orjson.dumps(element)


def test_nesting_is_allowed_up_to_the_limit_and_refused_past_it():
    assert encode(nested(MAX_DEPTH), "create")
    with pytest.raises(BadRequest, match=f"deeper than {MAX_DEPTH}"):
        encode(nested(MAX_DEPTH + 1), "create")
    with pytest.raises(BadRequest, match=f"deeper than {MAX_DEPTH}"):
        encode(nested(1000), "create")  # past orjson's own limit too: still the clear error


def test_brackets_inside_strings_are_not_nesting():
    element = {"_id": "/a", "text": "{[" * 500}
    assert encode(element, "create") == orjson.dumps(element)


def test_many_flat_containers_are_not_deep():
    element = {"_id": "/a", **{f"k{i}": [i] for i in range(200)}}
    assert encode(element, "create") == orjson.dumps(element)


@pytest.mark.parametrize(
    "bad, message",
    [
        ([1], "JSON object"),
        ("x", "JSON object"),
        ({"_id": "/a", "": 1}, "non-empty"),
        ({"_id": "/a", 1: 2}, "not JSON"),
        ({"_id": "/a", "v": {1, 2}}, "not JSON"),
        ({"_id": "/a", "v": object()}, "not JSON"),
        ({"_id": "/a", "v": float("nan")}, None),
    ],
)
def test_what_is_not_an_element(bad, message):
    if message is None:  # orjson writes NaN as null: stored, read back as null
        assert encode(bad, "create") == b'{"_id":"/a","v":null}'
        return
    with pytest.raises(BadRequest, match=message) as info:
        encode(bad, "create")
    assert str(info.value).startswith("create error")


def test_a_dict_subclass_is_an_element():
    class Ordered(dict):
        pass

    element = Ordered(_id="/a", n=1)
    assert check_element(element, "update") is element
    assert encode(element, "create") == b'{"_id":"/a","n":1}'


def test_new_ids_are_ulids_of_now_unique_and_time_sorted():
    from ulid import ULID

    from damas_core.elements import new_id, new_ids

    before = time.time_ns() // 1_000_000
    batch = new_ids(5000)
    after = time.time_ns() // 1_000_000
    assert len(set(batch)) == 5000
    assert batch == sorted(batch)  # monotonic within a call
    for value in batch:
        parsed = ULID.from_str(value)  # a valid ULID, spelled as the spec says
        assert str(parsed) == value
        assert before <= parsed.milliseconds <= after
    time.sleep(0.002)
    later = new_id()
    assert later > max(batch)  # a later millisecond sorts after
    assert new_ids(0) == []


@given(st.integers(min_value=0, max_value=40_000))
@settings(max_examples=30, deadline=None)
def test_a_call_of_any_size_gives_distinct_sorted_ulids(count):
    from damas_core.elements import new_ids

    batch = new_ids(count)
    assert len(batch) == count == len(set(batch))
    assert batch == sorted(batch)
    assert all(len(i) == 26 and set(i) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ") for i in batch)


def _lists(levels: int) -> list:
    """Arrays only, ``levels`` deep."""
    value: list = []
    for _ in range(levels - 1):
        value = [value]
    return value


_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.sampled_from(["x", "{", "[", '"":', "a{b}"])
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=2), inner, max_size=2)
    ),
    max_leaves=4,
)
_ELEMENTS = st.one_of(
    st.dictionaries(st.sampled_from(["_id", "a", "b", '"', ""]), _VALUES, max_size=3),
    st.sampled_from(
        [nested(MAX_DEPTH), nested(MAX_DEPTH + 1), {"_id": "/l", "v": _lists(MAX_DEPTH)}, [1], "x"]
    ),
)


def _each(elements: list) -> list[bytes] | None:
    try:
        return [encode(e, "create") for e in elements]
    except BadRequest:
        return None


@settings(max_examples=300, deadline=None)
@given(st.lists(_ELEMENTS, max_size=6))
def test_a_run_is_encoded_and_checked_like_each_of_its_elements(elements):
    expected = _each(elements)
    if expected is None:
        with pytest.raises(BadRequest):
            encode_run(elements, "create")
        with pytest.raises(BadRequest):
            list(encode_all(elements, "create"))
    else:
        assert encode_run(elements, "create") == expected
        assert list(encode_all(elements, "create")) == expected
