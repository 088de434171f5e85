"""`memoric export` and `import` on both dialects: exact round trips and clear refusals."""

from __future__ import annotations

import json
import os
import threading

import pytest

from memoric import Memoric
from memoric.db import transfer_queries
from memoric.db.store import MemoryStore
from tests.helpers.chain import HEAD, THIRD, built, id_counters, schema, tables
from tests.helpers.cli_process import run_cli
from tests.helpers.cli_runs import invoke, ok
from tests.helpers.dialects import one_line_error
from tests.helpers.transfer_data import HEADER_LINE, assert_identical, snapshot


def test_export_to_a_file_then_import_is_exact_and_idempotent(source, new_dsn, tmp_path):
    path = tmp_path / "all.jsonl"
    result = ok(invoke("--dsn", source.db.dsn, "export", str(path)))
    assert result.stdout == f"Exported 2497 memories and 2 clusters to {path}\n"
    lines = path.read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0])
    assert (header["format"], header["format_version"], header["schema_version"]) == (
        "memoric-export",
        2,
        HEAD,
    )
    assert len(lines) == 1 + 2497 + 2 + 1
    assert json.loads(lines[-1]) == {"type": "end", "memories": 2497, "clusters": 2}

    target = new_dsn()
    result = ok(invoke("--dsn", target, "import", str(path)))
    assert result.stdout.startswith("Imported 2497 memories and 2 clusters into ")
    check = MemoryStore(target)
    assert_identical(snapshot(check), snapshot(source.db))
    assert Memoric(target).migrations.current() == HEAD

    again = ok(invoke("--dsn", target, "import", str(path)))
    assert "Imported 0 memories and 0 clusters" in again.stdout
    assert "2499 already there, skipped" in again.stdout
    assert_identical(snapshot(check), snapshot(source.db))
    assert check.insert_memory(user_id="new", content="after the import") == 2501


def test_export_of_one_user_to_stdout_then_import_from_stdin(source, new_dsn):
    result = ok(invoke("--dsn", source.db.dsn, "export", "--user", "user1"))
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records[0]["user_id"] == "user1" and records[0]["schema_version"] == HEAD
    assert {r["user_id"] for r in records[1:-1]} == {"user1"}
    assert records[-1] == {"type": "end", "memories": 832, "clusters": 1}
    assert "Exported 832 memories and 1 clusters to -" in result.stderr

    target = new_dsn()
    ok(invoke("--dsn", target, "import", "-", input=result.stdout.encode()))
    imported = MemoryStore(target)
    assert list(transfer_queries.iter_memories(imported)) == list(
        transfer_queries.iter_memories(source.db, user_id="user1")
    )
    assert transfer_queries.all_clusters(imported) == transfer_queries.all_clusters(
        source.db, user_id="user1"
    )


def test_export_to_a_terminal_free_pipe_is_only_json_lines(source):
    result = ok(invoke("--dsn", source.db.dsn, "export", "-"))
    assert all(json.loads(line)["type"] for line in result.stdout.splitlines())


def test_a_newer_export_format_is_refused_and_nothing_is_written(new_dsn, tmp_path):
    path = tmp_path / "future.jsonl"
    path.write_text(
        '{"type": "header", "format": "memoric-export", "format_version": 3}\n'
        '{"type": "memory", "id": 1, "user_id": "ada", "content": "from the future"}\n'
    )
    target = new_dsn()
    error = one_line_error(invoke("--dsn", target, "import", str(path)))
    assert "export format version 3 is newer than this memoric reads (2)" in error
    assert not MemoryStore(target).has_schema(), "a refused file leaves an empty database unbuilt"


def test_a_refused_import_into_a_sqlite_file_not_there_yet_leaves_no_file(tmp_path):
    path = tmp_path / "bad.jsonl"
    line = '{"type": "memory", "id": 1, "user_id": "ada", "content": "x", "tier": "t"}\n'
    path.write_text(HEADER_LINE + line)
    target = tmp_path / "new.db"
    error = one_line_error(invoke("--dsn", f"sqlite:///{target}", "import", str(path)))
    assert "line 2: tier must be one of" in error
    assert sorted(tmp_path.iterdir()) == [path], "no database file, no lock file"


def test_one_bad_line_refuses_the_whole_file_before_any_batch(source, new_dsn, tmp_path):
    path = tmp_path / "all.jsonl"
    ok(invoke("--dsn", source.db.dsn, "export", str(path)))
    lines = path.read_text(encoding="utf-8").splitlines()
    bad = json.loads(lines[2400])
    bad["score"] = 101
    lines[2400] = json.dumps(bad)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    target = new_dsn()
    error = one_line_error(invoke("--dsn", target, "import", str(path)))
    assert "line 2401: score must be from 0 to 100, got 101" in error
    store = MemoryStore(target)
    assert not store.has_schema(), "a refused file leaves an empty database unbuilt"
    store.create_schema()
    assert store.count_memories() == 0


def test_a_refused_file_leaves_a_built_database_as_it_was(source, tmp_path):
    before = snapshot(source.db)
    path = tmp_path / "bad.jsonl"
    path.write_text(HEADER_LINE + '{"type": "memory", "id": 999999, "user_id": "ada", "content": ""}\n')
    error = one_line_error(invoke("--dsn", source.db.dsn, "import", str(path)))
    assert "line 2: content must be a non-empty string" in error
    assert snapshot(source.db) == before


def test_an_id_taken_by_another_memory_is_refused_never_dropped(new_dsn, tmp_path):
    target = built(new_dsn())
    target.save("ada", "already here")
    path = tmp_path / "other.jsonl"
    path.write_text(HEADER_LINE + '{"type": "memory", "id": 1, "user_id": "bob", "content": "other"}\n')
    error = one_line_error(invoke("--dsn", target.db.dsn, "import", str(path)))
    assert "memory id 1 is already in the target with other data (differing: user_id, content)" in error
    assert [m["content"] for m in target.db.get_memories()] == ["already here"]


def test_a_cluster_listing_another_users_memory_in_the_target_is_refused(new_dsn, tmp_path):
    target = built(new_dsn())
    target.save("demo-ada", "ada's secret")
    before = snapshot(target.db)
    path = tmp_path / "mallory.jsonl"
    path.write_text(
        HEADER_LINE
        + '{"type": "memory", "id": 2, "user_id": "mallory", "content": "mine"}\n'
        + '{"type": "cluster", "cluster_id": 5, "user_id": "mallory", "topic": "t", "category": "general", '
        '"memory_ids": [1, 2], "memory_count": 2, "summary": ""}\n'
    )
    error = one_line_error(invoke("--dsn", target.db.dsn, "import", str(path)))
    assert error == (
        "Error: line 3: cluster 5 of user_id 'mallory' lists memory 1, which is neither in this export "
        "nor a memory of that user_id in the target; nothing was written"
    )
    assert_identical(snapshot(target.db), before)


LARGEST = 2**63 - 1


def test_an_import_refused_for_what_the_target_holds_moves_no_id_counter(new_dsn, tmp_path):
    target = built(new_dsn())
    target.save("ada", "already here")
    target.db.upsert_cluster(user_id="ada", topic="t", category="general", memory_ids=[1])
    counters, shape, before = id_counters(target.db), schema(target.db), snapshot(target.db)
    path = tmp_path / "taken.jsonl"
    path.write_text(
        HEADER_LINE
        + json.dumps({"type": "memory", "id": LARGEST, "user_id": "ada", "content": "last"})
        + "\n"
        + json.dumps({"type": "cluster", "cluster_id": LARGEST, "user_id": "ada", "topic": "t",
                      "category": "general", "memory_ids": [LARGEST], "memory_count": 1, "summary": ""})
        + "\n"
    )  # fmt: skip
    error = one_line_error(invoke("--dsn", target.db.dsn, "import", str(path)))
    assert f"line 3: cluster {LARGEST} is for user_id, topic and category" in error
    assert (id_counters(target.db), schema(target.db)) == (counters, shape)
    assert_identical(snapshot(target.db), before)
    assert target.save("ada", "saved after") == 2
    ok(invoke("--dsn", target.db.dsn, "migrate", "downgrade", THIRD))


def test_an_import_refused_for_a_memory_no_one_has_leaves_an_empty_database_unbuilt(new_dsn, tmp_path):
    target = new_dsn()
    path = tmp_path / "stranger.jsonl"
    path.write_text(
        HEADER_LINE + '{"type": "cluster", "cluster_id": 5, "user_id": "ada", "topic": "t", '
        '"category": "general", "memory_ids": [7], "memory_count": 1, "summary": ""}\n'
    )
    error = one_line_error(invoke("--dsn", target, "import", str(path)))
    assert error == (
        "Error: line 2: cluster 5 of user_id 'ada' lists memory 7, which is neither in this export nor "
        "a memory of that user_id in the target; nothing was written"
    )
    if target.startswith("sqlite"):
        assert sorted(tmp_path.iterdir()) == [path], "no database file, no lock file"
    else:
        assert (tables(MemoryStore(target)), id_counters(MemoryStore(target))) == (set(), {})


def test_a_failed_export_leaves_no_file_and_an_old_file_untouched(source, tmp_path):
    exports = tmp_path / "exports"
    exports.mkdir()
    path = exports / "keep.jsonl"
    path.write_text("the previous export\n")
    one_line_error(invoke("--dsn", source.db.dsn, "export", "--user", "", str(path)))
    assert path.read_text() == "the previous export\n"
    assert os.listdir(exports) == ["keep.jsonl"]
    error = one_line_error(invoke("--dsn", source.db.dsn, "export", str(exports / "no" / "x.jsonl")))
    assert "cannot write" in error


def test_import_with_new_ids_adds_an_export_beside_other_memories(source, new_dsn, tmp_path):
    path = tmp_path / "all.jsonl"
    ok(invoke("--dsn", source.db.dsn, "export", str(path)))
    target = built(new_dsn())
    mine = [target.save("zoe", f"zoe {n}") for n in range(3)]
    error = one_line_error(invoke("--dsn", target.db.dsn, "import", str(path)))
    assert "line 2: memory id 1 is already in the target with other data" in error
    assert "(another memory (another user, thread or creation time) holds that id here" in error

    result = ok(invoke("--dsn", target.db.dsn, "import", "--new-ids", str(path)))
    assert result.stdout.startswith("Imported 2497 memories and 2 clusters into ")
    added = [m for m in target.db.get_memories(limit=None) if m["user_id"] != "zoe"]
    originals = source.db.get_memories(limit=None)
    assert [m["content"] for m in added] == [m["content"] for m in originals]
    assert [m["id"] for m in target.db.get_memories(user_id="zoe", limit=None)] == mine[::-1]
    content = {m["id"]: m["content"] for m in added}
    for original in source.db.get_clusters():
        [cluster] = target.db.get_clusters(user_id=original["user_id"], topic=original["topic"])
        expected = [source.db.get_memory(i)["content"] for i in original["memory_ids"]]
        assert [content[i] for i in cluster["memory_ids"]] == expected


@pytest.mark.parametrize("kept", [1, 2, 1000, 2499, 2500])
def test_an_export_cut_short_is_refused_whole_and_writes_nothing(source, new_dsn, kept):
    """`head -n KEPT export.jsonl | memoric import -`: without its end line (the last of its 2,501)
    a file is taken for what it is, a part, and nothing is written."""
    export = ok(invoke("--dsn", source.db.dsn, "export")).stdout
    cut = "".join(export.splitlines(keepends=True)[:kept])
    target = new_dsn()
    error = one_line_error(invoke("--dsn", target, "import", "-", input=cut.encode()))
    assert error == (
        f"Error: the export stops at line {kept} without its end line: it was cut short (a copy or "
        "download that stopped, a full disk?) and is refused whole"
    )
    assert not MemoryStore(target).has_schema()


def test_an_export_read_from_a_named_pipe_is_imported_whole(source, new_dsn, tmp_path):
    """A path that is not a regular file (`/dev/stdin`, `<(...)`, a FIFO) is spooled as `-` is:
    the import reads its file more than once."""
    export = ok(invoke("--dsn", source.db.dsn, "export")).stdout
    pipe = tmp_path / "export.pipe"
    os.mkfifo(pipe)
    writer = threading.Thread(target=pipe.write_text, args=(export,))
    writer.start()
    target = new_dsn()
    result = ok(invoke("--dsn", target, "import", str(pipe)))
    writer.join()
    assert result.stdout.startswith("Imported 2497 memories and 2 clusters into ")
    assert_identical(snapshot(MemoryStore(target)), snapshot(source.db))


def test_an_export_written_into_a_named_pipe_reaches_its_reader_whole(source, tmp_path):
    """The check that an export never replaces a database file opened the pipe to read its first
    bytes, and so waited for ever for a writer (the export runs in a child process to be timed out)."""
    pipe = tmp_path / "export.pipe"
    os.mkfifo(pipe)
    received = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_text(encoding="utf-8")), daemon=True)
    reader.start()
    exported = run_cli(source.db.dsn, "export", str(pipe), cwd=tmp_path)
    reader.join(timeout=120)
    assert exported.returncode == 0, exported.stderr
    again = ok(invoke("--dsn", source.db.dsn, "export")).stdout.splitlines()
    (text,) = received
    assert json.loads(text.splitlines()[0])["type"] == "header"
    assert text.splitlines()[1:] == again[1:], "the same records as an export to stdout, to the end line"


def test_a_backup_restores_into_a_database_whose_clusters_changed_with_no_clusters(new_dsn, tmp_path):
    """After a forget rebuilt the clusters, the backup's cluster differed and the import was
    refused, pointing at --new-ids (which would add every memory again) and at an option import
    did not have. --no-clusters restores the memories; the file's clusters are checked, not written."""
    dsn, backup = new_dsn(), tmp_path / "backup.jsonl"
    memoric = Memoric(dsn)
    ids = [memoric.save("ada", f"note {i}", metadata={"topic": "t", "category": "c"}) for i in range(3)]
    memoric.rebuild_clusters()
    ok(invoke("--dsn", dsn, "export", str(backup)))
    memoric.forget("ada", [ids[1]])
    clusters = memoric.get_clusters("ada")

    refused = one_line_error(invoke("--dsn", dsn, "import", str(backup)))
    assert "import without the file's clusters (`--no-clusters`" in refused and "new ids" not in refused
    assert "`--no-clusters`" in one_line_error(invoke("--dsn", dsn, "import", "--new-ids", str(backup)))

    restored = ok(invoke("--dsn", dsn, "import", "--no-clusters", str(backup)))
    assert restored.stdout.splitlines()[1:] == [
        "Left out the file's 1 clusters: run `memoric clusters --rebuild`"
    ]
    assert sorted(m["id"] for m in memoric.db.get_memories(limit=None)) == ids
    assert memoric.get_clusters("ada") == clusters, "the target's clusters are left as they were"
    memoric.rebuild_clusters()
    assert memoric.get_clusters("ada")[0]["memory_ids"] == ids


def test_no_clusters_still_refuses_a_bad_cluster_line_or_a_file_cut_short(new_dsn, tmp_path):
    dsn, path = new_dsn(), tmp_path / "backup.jsonl"
    memoric = Memoric(dsn)
    memoric.save("ada", "note", metadata={"topic": "t", "category": "c"})
    memoric.rebuild_clusters()
    ok(invoke("--dsn", dsn, "export", str(path)))
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    target = new_dsn()
    bad_cluster = [line.replace('"memory_count":1', '"memory_count":"one"') for line in lines]
    assert bad_cluster != lines
    for name, text in [("bad", "".join(bad_cluster)), ("cut", "".join(lines[:-1]))]:
        (tmp_path / name).write_text(text, encoding="utf-8")
        refused = one_line_error(invoke("--dsn", target, "import", "--no-clusters", str(tmp_path / name)))
        assert ("memory_count" if name == "bad" else "without its end line") in refused
    assert tables(MemoryStore(target)) == set(), "nothing was written, not even the schema"
