"""Export, import and copy keep every memory and cluster exactly, on both dialects."""

from __future__ import annotations

import io
import json

import pytest

from memoric.db import transfer_queries
from memoric.db.store import MemoryStore
from memoric.errors import MemoricError, ValidationError
from memoric.transfer import (
    FORMAT_VERSION,
    NotTakenBack,
    copy_database,
    export_jsonl,
    import_jsonl,
    scratch,
)
from tests.helpers.chain import HEAD
from tests.helpers.dialects import requires_postgres
from tests.helpers.transfer_data import (
    assert_identical,
    cluster_line,
    export_of,
    fill,
    memory_line,
    snapshot,
)

pytestmark = pytest.mark.citus  # also on a Citus cluster


def export_text(store: MemoryStore, **kwargs) -> str:
    out = io.StringIO()
    export_jsonl(store, out, **kwargs)
    return out.getvalue()


def test_export_then_import_into_an_empty_database_is_exact(db, new_dsn):
    fill(db)
    text = export_text(db, schema_version=HEAD)
    header = json.loads(text.splitlines()[0])
    assert (header["format_version"], header["schema_version"]) == (FORMAT_VERSION, HEAD)

    target = MemoryStore(new_dsn())
    target.create_schema()
    counts = import_jsonl(target, io.StringIO(text))
    assert counts == {"memories": 2497, "clusters": 2, "skipped": 0}
    assert_identical(snapshot(target), snapshot(db))
    metadata = target.get_memory(1)["metadata"]
    assert type(metadata["float"]) is float and type(metadata["int"]) is int and metadata["big"] == 2**62
    assert target.insert_memory(user_id="new", content="after import") == 2501


def test_importing_twice_changes_nothing(db):
    fill(db)
    text = export_text(db)
    before = snapshot(db)
    assert import_jsonl(db, io.StringIO(text), batch_size=300) == {
        "memories": 0,
        "clusters": 0,
        "skipped": 2499,
    }
    assert_identical(snapshot(db), before)


def test_export_of_one_user(db):
    fill(db)
    lines = [json.loads(line) for line in export_text(db, user_id="user1").splitlines()]
    assert {r["user_id"] for r in lines[1:-1]} == {"user1"}
    assert sum(r["type"] == "cluster" for r in lines) == 1
    assert lines[-1] == {"type": "end", "memories": len(lines) - 3, "clusters": 1}


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("", "no header"),
        ('{"type": "memory"}\n', "not a memoric export"),
        ('{"type": "header", "format": "memoric-export", "format_version": 99}\n', "newer"),
        ('{"type": "header", "format": "memoric-export", "format_version": 1}\n{oops\n', "line 2"),
        ('{"type": "header", "format": "memoric-export", "format_version": 1}\n[1]\n', "line 2"),
        ('{"type": "header", "format": "memoric-export", "format_version": 1}\n{"type": "alien"}\n', "alien"),
        (
            '{"type": "header", "format": "memoric-export", "format_version": 1}\n'
            '{"type": "memory", "id": 1, "user_id": "", "content": "x"}\n',
            "user_id",
        ),
        (
            '{"type": "header", "format": "memoric-export", "format_version": 1}\n'
            '{"type": "memory", "id": 1, "user_id": "u", "content": "x", "created_at": "yesterday"}\n',
            "created_at",
        ),
    ],
)
def test_bad_exports_are_refused_with_the_reason_and_write_nothing(db, text, named):
    with pytest.raises(ValidationError, match=named):
        import_jsonl(db, io.StringIO(text))
    assert db.count_memories() == 0


# --- interrupted imports, other users, new ids ----------------------------------------------


class Interrupted(Exception):
    """Stands for anything that stops an import between two batches."""


def stopping_after(batches: int):
    """A progress callback that interrupts the import after `batches` batches."""
    done: list[int] = []

    def progress(rows: int) -> None:
        done.append(rows)
        if len(done) == batches:
            raise Interrupted

    return progress


@pytest.fixture
def exported(new_dsn) -> tuple[MemoryStore, str]:
    """A filled database and its export."""
    source = MemoryStore(new_dsn())
    source.create_schema()
    fill(source)
    return source, export_text(source)


def test_an_interrupted_import_completes_when_run_again(db, exported):
    source, text = exported
    with pytest.raises(Interrupted):
        import_jsonl(db, io.StringIO(text), batch_size=500, progress=stopping_after(2))
    memories, clusters = db.count_memories(), len(transfer_queries.all_clusters(db))
    assert 1000 <= memories <= 1001  # two batches (and the highest memory, where it holds the ids)
    counts = import_jsonl(db, io.StringIO(text), batch_size=500)
    assert counts == {"memories": 2497 - memories, "clusters": 2 - clusters, "skipped": memories + clusters}
    assert_identical(snapshot(db), snapshot(source))


def test_an_import_with_new_ids_that_stops_takes_back_what_it_wrote(db, exported):
    _, text = exported
    db.insert_memories([{"user_id": "zoe", "content": f"zoe {i}"} for i in range(10)])
    before = snapshot(db)
    with pytest.raises(Interrupted):
        import_jsonl(db, io.StringIO(text), new_ids=True, batch_size=500, progress=stopping_after(3))
    assert_identical(snapshot(db), before)
    assert import_jsonl(db, io.StringIO(text), new_ids=True) == {
        "memories": 2497,
        "clusters": 2,
        "skipped": 0,
    }
    assert db.count_memories() == 10 + 2497


def test_a_stopped_import_with_new_ids_names_the_rows_another_writer_changed_and_keeps_them(db, exported):
    """An agent edits a memory the import wrote before the import stops: the edit stays, and the
    import says so (importing the file again would add that memory's original a second time)."""
    _, text = exported
    edited = []

    def edit_then_stop(rows: int) -> None:
        if not edited:
            edited.append(max(memory["id"] for memory in db.get_memories(limit=None)))
            db.update_content(memory_id=edited[0], new_content="edited by an agent")
            return
        raise Interrupted

    with pytest.raises(NotTakenBack) as refused:
        import_jsonl(db, io.StringIO(text), new_ids=True, batch_size=500, progress=edit_then_stop)
    said = str(refused.value)
    assert "took back what it wrote, except rows that no longer hold what it wrote" in said
    assert f"(another writer changed them, or holds their ids): memories [{edited[0]}]; they stay" in said
    assert isinstance(refused.value.__cause__, Interrupted)
    assert [memory["id"] for memory in db.get_memories(limit=None)] == edited
    assert db.get_memory(edited[0])["content"] == "edited by an agent"


def test_an_export_is_refused_where_its_ids_hold_other_users_memories_and_new_ids_add_it(db, new_dsn):
    source = MemoryStore(new_dsn())
    source.create_schema()
    fill(source)
    text = export_text(source)
    db.insert_memories([{"user_id": "zoe", "content": f"zoe {i}", "metadata": {"i": i}} for i in range(50)])
    db.upsert_cluster(user_id="zoe", topic="a", category="general", memory_ids=[1, 2])
    before = snapshot(db)
    with pytest.raises(ValidationError, match="line 2: memory id 1 is already in the target with other data"):
        import_jsonl(db, io.StringIO(text))
    assert_identical(snapshot(db), before)

    counts = import_jsonl(db, io.StringIO(text), new_ids=True, batch_size=700)
    assert counts == {"memories": 2497, "clusters": 2, "skipped": 0}
    memories, clusters = snapshot(db)
    assert_identical([m for m in memories if m["user_id"] == "zoe"], before[0])
    assert_identical([c for c in clusters if c["user_id"] == "zoe"], before[1])
    originals, added = (
        list(transfer_queries.iter_memories(source)),
        [m for m in memories if m["user_id"] != "zoe"],
    )
    assert_identical([{**m, "id": None} for m in added], [{**m, "id": None} for m in originals])
    new_id = {old["id"]: new["id"] for old, new in zip(originals, added, strict=True)}
    first = min(new_id.values())  # above every id used (the refused import may have reserved some)
    assert first > 50 and sorted(new_id.values()) == list(range(first, first + 2497))
    for old in transfer_queries.all_clusters(source):
        [new] = [c for c in clusters if (c["user_id"], c["topic"]) == (old["user_id"], old["topic"])]
        assert new["cluster_id"] > 1
        assert_identical(
            {**new, "cluster_id": None},
            {**old, "cluster_id": None, "memory_ids": [new_id[i] for i in old["memory_ids"]]},
        )
    assert db.insert_memory(user_id="zoe", content="after") == first + 2497


def test_new_ids_refuse_a_cluster_of_memories_the_export_lacks_or_a_key_the_target_holds(db):
    with pytest.raises(
        ValidationError, match="line 3: cluster 1 lists memory 2, which is not in this export"
    ):
        import_jsonl(db, export_of(memory_line(1), cluster_line(1, memory_ids=[1, 2])), new_ids=True)
    db.upsert_cluster(user_id="ada", topic="t", category="general", memory_ids=[])
    before = snapshot(db)
    with pytest.raises(ValidationError, match="line 3: cluster 1 is for user_id, topic and category"):
        import_jsonl(db, export_of(memory_line(1), cluster_line(1)), new_ids=True)
    assert_identical(snapshot(db), before)


@requires_postgres
def test_copying_sqlite_to_postgresql_and_back_is_exact_and_a_second_time_changes_nothing(
    tmp_path, new_postgres_url
):
    origin = MemoryStore(f"sqlite:///{tmp_path / 'origin.db'}")
    middle = MemoryStore(new_postgres_url())
    back = MemoryStore(f"sqlite:///{tmp_path / 'back.db'}")
    for store in (origin, middle, back):
        store.create_schema()
    fill(origin)
    progress = []
    assert copy_database(origin, middle, progress=progress.append)["memories"] == 2497
    assert sum(progress) == 2499
    copy_database(middle, back)
    assert_identical(snapshot(middle), snapshot(origin))
    assert_identical(snapshot(back), snapshot(origin))
    nothing = {"memories": 0, "clusters": 0, "skipped": 2499}
    assert copy_database(origin, middle) == copy_database(middle, back) == nothing
    assert_identical(snapshot(middle), snapshot(origin))
    assert_identical(snapshot(back), snapshot(origin))
    assert type(middle.get_memory(1)["metadata"]["huge_float"]) is float
    assert middle.insert_memory(user_id="u", content="next id") == 2501


def test_floats_of_any_size_stay_floats_on_every_write_path(db):
    metadata = {"f": 1e16, "g": -2.5e300, "h": [123456789012345678.0, 1.5e-300], "text": "1e+16"}
    db.insert_memory(user_id="ada", content="one", metadata=metadata)
    db.insert_memories([{"user_id": "ada", "content": "many", "metadata": metadata}])
    import_jsonl(db, export_of(memory_line(50, metadata=metadata)))
    stored = [memory["metadata"] for memory in db.get_memories(limit=None)]
    assert_identical(stored, [metadata] * 3)
    assert db.count_memories(where_metadata={"f": 1e16}) == 3


@pytest.mark.parametrize("encode", [False, True], ids=["text lines", "UTF-8 lines"])
def test_an_export_given_as_a_one_pass_iterator_is_imported_whole(db, exported, encode):
    source, text = exported
    lines = (line.encode() if encode else line for line in text.splitlines())
    assert import_jsonl(db, lines)["memories"] == 2497
    assert_identical(snapshot(db), snapshot(source))
    with pytest.raises(ValidationError, match="line 2 and line 2501 are two different memories with id 1"):
        *records, end = text.splitlines()
        import_jsonl(db, iter([*records, json.dumps(memory_line(1)), end]))


def test_no_room_for_what_the_check_remembers_is_a_memoric_error_writing_nothing(db, exported, monkeypatch):
    """The check keeps each row's line, digest and user in a temporary SQLite file; one that
    cannot grow (here: a page limit, as a full disk) stops the import before it writes a row."""
    _, text = exported
    monkeypatch.setattr(scratch, "PRAGMAS", (*scratch.PRAGMAS, "max_page_count = 6"))
    with pytest.raises(MemoricError, match="could not keep the check's bookkeeping in a temporary file"):
        import_jsonl(db, io.StringIO(text))
    assert db.count_memories() == 0


def test_lines_with_no_room_to_keep_them_are_a_memoric_error_writing_nothing(
    db, exported, monkeypatch, tmp_path
):
    """Lines that can be read only once are kept in a temporary file for the second pass; a
    temporary directory that cannot take them stops the import before it writes a row."""
    _, text = exported
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "missing"))
    with pytest.raises(MemoricError, match="could not keep a copy of the export in a temporary file"):
        import_jsonl(db, iter(text.splitlines()))
    assert db.count_memories() == 0


# --- a database written with other tiers, opened without its configuration ---------------------

OTHER_TIERS = {"tiers": [{"name": "inbox", "expire_after_days": 5}, {"name": "archive"}]}


def test_memories_of_tiers_the_configuration_does_not_name_point_at_the_configuration(new_dsn):
    """The refusal said to correct or delete the row: wrong advice for a backup of a database
    whose configuration was left out."""
    from memoric import Memoric

    dsn = new_dsn()
    with Memoric(dsn, config=OTHER_TIERS) as written:
        written.save("ada", "in the inbox")
        text = io.StringIO()
        export_jsonl(written.db, text)
    with Memoric(dsn) as without, pytest.raises(ValidationError) as refused:
        export_jsonl(without.db, io.StringIO())
    assert str(refused.value) == (
        "memory 1: its tier 'inbox' is not one of the tiers configured here ['short_term', 'mid_term', "
        "'long_term']; an import would refuse it, so nothing was exported: pass the configuration the "
        "database is written with (`--config`, `config=`)"
    )
    with Memoric(new_dsn()) as target, pytest.raises(ValidationError) as refused:
        import_jsonl(target.db, io.StringIO(text.getvalue()))
    assert str(refused.value).endswith(
        "got 'inbox' (the tiers configured here: pass the configuration they were written with, `--config`)"
    )
