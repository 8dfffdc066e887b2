"""The client's unpacking of the publish and comment answers is the inverse of the
HTTP layer's packing, for every shape of result (damas_core.wire), and a publish
answer of 20 000 files unpacks in one pass."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from damas_core.errors import StorageError
from damas_core.wire import pack_comments, pack_published, unpack_comments, unpack_published

_ids = st.text(alphabet="abc/", min_size=1, max_size=4).map(lambda s: "/" + s)
_pair = _ids.map(lambda i: ({"_id": i, "origin": "paris"}, {"#parent": i, "comment": "new"}))


@given(st.lists(st.none() | _pair, max_size=40))
def test_published_answers_unpack_to_what_was_packed(pairs):
    assert unpack_published(pack_published(pairs)) == pairs


# one comment item: a single parent (one result or None) or a list of parents
_result = st.none() | _ids.map(lambda i: {"_id": i, "#parent": i, "comment": "ok"})
_item = st.one_of(
    _result.map(lambda r: ("/p", r)),
    st.lists(_result, max_size=5).map(lambda rs: (["/p"] * len(rs), rs)),
)


@given(st.lists(_item, max_size=20), st.booleans())
def test_comment_answers_unpack_to_what_was_packed(items, as_list):
    if not as_list:
        items = items[:1] or [("/p", None)]
    elements = [{"#parent": parents, "comment": "ok"} for parents, _ in items]
    made = [r for _, r in items]
    request, result = (elements, made) if as_list else (elements[0], made[0])
    assert unpack_comments(pack_comments(result), request) == result


def test_a_404_comment_answer_gives_none_for_every_parent():
    elements = [{"#parent": ["/a", "/b"], "comment": "x"}, {"#parent": "/c", "comment": "x"}]
    assert unpack_comments([], elements) == [[None, None], None]


@pytest.mark.parametrize("payload", [[None, {"_id": "/a"}], [{"_id": "/a"}], [{"_id": "/a"}] * 3])
def test_an_answer_that_is_not_slots_then_children_is_refused(payload):
    with pytest.raises(StorageError, match="publish error"):
        unpack_published(payload)


def test_a_batch_of_20000_files_unpacks():
    pairs = [({"_id": f"/f{i}"}, {"#parent": f"/f{i}"}) for i in range(20000)]
    pairs[7] = None
    assert unpack_published(pack_published(pairs)) == pairs
