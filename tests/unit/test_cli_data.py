"""``damas copy``, ``export`` and ``import`` between real stores."""

from __future__ import annotations

import importlib.util
import uuid

import orjson
import pytest
from click.testing import CliRunner

from damas_core.cli import main
from damas_core.registry import open_storage
from damas_core.transfer import copy_store, read_lines

# Persistent backends (memory excluded: a store that dies with its process has
# nothing to copy from the command line).
PERSISTENT = {
    "lmdb": "damas_core.backends.lmdb",
    "tinydb": "damas_core.backends.tinydb",
    "sqlite": "damas_core.backends.sqlite",
    "mongomock": "damas_core.backends.mongodb",
    "postgresql": "damas_core.backends.postgresql",
}


def url_for(name: str, tmp_path) -> str:
    if importlib.util.find_spec(PERSISTENT[name]) is None:
        pytest.skip(f"the {name} backend ({PERSISTENT[name]}) is not there yet")
    unique = uuid.uuid4().hex[:8]
    if name == "postgresql":
        from tests.conftest import backend_url

        return backend_url("postgresql", tmp_path)
    return {
        "lmdb": f"lmdb://{tmp_path}/lmdb-{unique}",
        "tinydb": f"tinydb://{tmp_path}/tiny-{unique}.json",
        "sqlite": f"sqlite://{tmp_path}/sql-{unique}.db",
        # a named mongomock server outlives one open, as a real server does
        "mongomock": f"mongomock://cli{unique}/db",
    }[name]


SAMPLE = [
    {"_id": "/a.exr", "file_size": 12, "tags": ["x", 1, True, None], "#parent": "/"},
    {"_id": "@bob", "class": "user", "password": "$argon2id$v=19$m=65536,t=3,p=4$abc$def"},
    {"_id": "/b/", "nested": {"k": [{"v": 1.5}]}, "time": 1700000000000},
    {"_id": "link1", "src_id": "/a.exr", "tgt_id": "/b/"},
]


def fill(url: str, elements=SAMPLE) -> None:
    with open_storage(url) as store:
        assert all(store.insert_many(elements))


def content(url: str) -> list[dict]:
    with open_storage(url) as store:
        return list(store.scan())


def run(*args: str, input: bytes | None = None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


@pytest.mark.parametrize("src", list(PERSISTENT))
@pytest.mark.parametrize("dst", list(PERSISTENT))
def test_copy_between_every_pair(src, dst, tmp_path):
    if src == dst:
        pytest.skip("same backend: covered by the other pairs")
    src_url, dst_url = url_for(src, tmp_path), url_for(dst, tmp_path)
    fill(src_url)
    result = run("copy", "--batch-size", "3", src_url, dst_url)
    assert result.exit_code == 0, result.output
    assert "count check ok" in result.output
    assert content(dst_url) == sorted(SAMPLE, key=lambda e: e["_id"])


def test_copy_resumes_and_reports_conflicts(tmp_path):
    src_url, dst_url = url_for("tinydb", tmp_path), url_for("mongomock", tmp_path)
    fill(src_url)
    fill(dst_url, SAMPLE[:2])  # an interrupted earlier copy
    fill(dst_url, [{"_id": "/b/", "other": True}])  # and someone else's element
    result = run("copy", src_url, dst_url)
    assert result.exit_code == 1
    assert "2 already there" in result.output
    assert "conflicts" in result.output and "/b/" in result.output
    assert "count check FAILED" in result.output
    with open_storage(dst_url) as store:
        assert store.get("/b/") == {"_id": "/b/", "other": True}  # not overwritten
    result = run("copy", "--overwrite", "-q", src_url, dst_url)
    assert result.exit_code == 0, result.output
    assert result.output == ""
    assert content(dst_url) == sorted(SAMPLE, key=lambda e: e["_id"])


def test_export_then_import_round_trip(tmp_path):
    src_url, dst_url = url_for("tinydb", tmp_path), url_for("lmdb", tmp_path)
    fill(src_url)
    out = tmp_path / "dump.jsonl"
    result = run("export", src_url, str(out))
    assert result.exit_code == 0, result.output
    lines = out.read_bytes().splitlines()
    assert [orjson.loads(line)["_id"] for line in lines] == sorted(e["_id"] for e in SAMPLE)
    # stdout by default, and '-' too
    assert run("export", "-q", src_url).stdout_bytes == out.read_bytes()
    assert run("export", "-q", src_url, "-").stdout_bytes == out.read_bytes()
    result = run("import", dst_url, input=out.read_bytes())
    assert result.exit_code == 0, result.output
    assert content(dst_url) == content(src_url)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b'{"_id": "/a"}\n{"_id": \n', "line 12: invalid JSON"),
        (b'{"_id": "/a"}\n\n[1]\n', "line 13: not a JSON object"),
        (b'{"_id": ""}\n', "line 11: _id must be a non-empty string"),
        (b'{"_id": "/a"}\n{"_id": "/a"}\n', "line 12: _id '/a' already on line 11"),
    ],
)
def test_import_refuses_a_bad_input_and_imports_nothing(tmp_path, text, message):
    dst_url = url_for("tinydb", tmp_path)
    fill(dst_url, [{"_id": "/keep"}])
    lines = [b'{"_id": "/x%d"}' % i for i in range(10)]  # ten good lines first
    result = CliRunner().invoke(main, ["import", dst_url], input=b"\n".join(lines) + b"\n" + text)
    assert result.exit_code == 1
    assert message in result.output
    assert "nothing imported" in result.output
    assert content(dst_url) == [{"_id": "/keep"}]


def test_read_lines_lists_at_most_twenty_errors():
    with pytest.raises(ValueError, match=r"25 bad lines.*and 5 more"):
        read_lines([b"x"] * 25)


def test_bad_urls_are_clear_errors(tmp_path):
    result = CliRunner().invoke(main, ["copy", "ftp://x", f"tinydb://{tmp_path}/a.json"])
    assert result.exit_code == 1
    assert "cannot open ftp://x" in result.output


def test_help_has_examples():
    for command in ("copy", "export", "import"):
        result = run(command, "--help")
        assert result.exit_code == 0
        assert "Examples:" in result.output


@pytest.mark.slow
def test_copy_100k_elements(tmp_path):
    # mongomock answers each lookup by scanning: real stores on both ends
    src_url, dst_url = url_for("tinydb", tmp_path), url_for("lmdb", tmp_path)
    n = 100_000
    with open_storage(src_url) as src:
        src.insert_many(
            [{"_id": f"/big/{i:06d}", "#parent": f"/p{i % 97}", "file_size": i} for i in range(n)]
        )
        with open_storage(dst_url) as dst:
            report = copy_store(src, dst, batch_size=5000)
            assert report.ok and report.inserted == n and report.source_count == n
            assert dst.get("/big/099999") == {
                "_id": "/big/099999",
                "#parent": "/p89",
                "file_size": 99999,
            }
