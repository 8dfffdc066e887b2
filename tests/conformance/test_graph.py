"""graph: links walked backwards from tgt_id to src_id, nodes then links."""

from __future__ import annotations

import pytest

from damas_core.errors import BadRequest


@pytest.fixture
def chain(tracker):
    # d -> c -> b -> a (each link's tgt is closer to a), plus e -> a
    tracker.create([{"_id": n} for n in ("/a", "/b", "/c", "/d", "/e")])
    tracker.create(
        [
            {"_id": "l_ba", "src_id": "/b", "tgt_id": "/a"},
            {"_id": "l_cb", "src_id": "/c", "tgt_id": "/b"},
            {"_id": "l_dc", "src_id": "/d", "tgt_id": "/c"},
            {"_id": "l_ea", "src_id": "/e", "tgt_id": "/a"},
        ]
    )
    return tracker


def split(result):
    nodes = [e["_id"] for e in result if "tgt_id" not in e]
    links = [e["_id"] for e in result if "tgt_id" in e]
    return nodes, links


def test_graph_unlimited_walks_everything(chain):
    result = chain.graph("/a")
    nodes, links = split(result)
    assert nodes[0] == "/a" and set(nodes) == {"/a", "/b", "/c", "/d", "/e"}
    assert set(links) == {"l_ba", "l_cb", "l_dc", "l_ea"}
    # nodes come first, then links
    kinds = ["link" if "tgt_id" in e else "node" for e in result]
    assert kinds == sorted(kinds, key=lambda k: k == "link")


@pytest.mark.parametrize(
    ("depth", "nodes", "links"),
    [
        (1, {"/a", "/b", "/e"}, {"l_ba", "l_ea"}),
        (2, {"/a", "/b", "/c", "/e"}, {"l_ba", "l_ea", "l_cb"}),
        (3, {"/a", "/b", "/c", "/d", "/e"}, {"l_ba", "l_ea", "l_cb", "l_dc"}),
        (0, {"/a", "/b", "/c", "/d", "/e"}, {"l_ba", "l_ea", "l_cb", "l_dc"}),
    ],
)
def test_graph_depth(chain, depth, nodes, links):
    got_nodes, got_links = split(chain.graph(["/a"], depth=depth))
    assert set(got_nodes) == nodes and set(got_links) == links


def test_graph_handles_cycles_and_missing(tracker):
    tracker.create([{"_id": "/x"}, {"_id": "/y"}])
    tracker.create(
        [
            {"_id": "l1", "src_id": "/x", "tgt_id": "/y"},
            {"_id": "l2", "src_id": "/y", "tgt_id": "/x"},
            {"_id": "l3", "src_id": "/ghost", "tgt_id": "/x"},
        ]
    )
    got = tracker.graph(["/x", "/nope"])
    # a list of ids: each has its place, in the order given, None where it is missing
    assert got[0]["_id"] == "/x" and got[1] is None
    nodes, links = split(got[2:])
    assert nodes == ["/y"]
    assert set(links) == {"l1", "l2", "l3"}
    assert tracker.graph("/nope") == []
    assert tracker.graph(["/nope", "/nope"]) == [None]
    assert [e and e["_id"] for e in tracker.graph(["/nope", "/y"], depth=1)] == [
        None,
        "/y",
        "/x",
        "l1",
    ]


def test_graph_bad_depth(tracker):
    with pytest.raises(BadRequest):
        tracker.graph("/a", depth=-1)
    with pytest.raises(BadRequest):
        tracker.graph("/a", depth="2")
