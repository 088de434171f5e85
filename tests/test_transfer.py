"""Export, import and copy keep every memory and cluster exactly, on both dialects."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest

from memoric.db.models import UTC
from memoric.db.store import MemoryStore
from memoric.errors import ValidationError
from memoric.transfer import FORMAT_VERSION, copy_database, export_jsonl, import_jsonl
from tests.conftest import requires_postgres
from tests.test_migrations import HEAD

T0 = dt.datetime(2025, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
TRICKY_METADATA = {"int": 1, "float": 1.0, "big": 2**62, "neg": -0.5, "bool": False, "none": None,
                   "list": [1, "1", 1.5, [True]], "nested": {"a.b": {"%s": "'; DROP TABLE memories; --"}},
                   "unicode": "żółw 🐢"}  # fmt: skip


def fill(store: MemoryStore) -> None:
    store.insert_memories(
        [
            {
                "user_id": f"user{i % 3}",
                "thread_id": f"t{i % 4}" if i % 5 else None,
                "namespace": "ns" if i % 7 == 0 else None,
                "tier": store.tiers[i % 3],
                "score": i % 101,
                "content": f"memory {i} — with ünïcode",
                "metadata": {**TRICKY_METADATA, "i": i},
                "related_threads": [f"t{(i + 1) % 4}"] if i % 2 else [],
                "summarized": i % 9 == 0,
                "created_at": T0 - dt.timedelta(hours=i),
                "updated_at": T0 - dt.timedelta(minutes=i),
            }
            for i in range(2500)
        ]
    )
    store.delete_memories(memory_ids=[5, 6, 7])  # ids with holes must survive
    store.upsert_cluster(user_id="user1", topic="a", category="general", memory_ids=[1, 4], summary="two")
    store.upsert_cluster(user_id="user2", topic="b", category="x", memory_ids=[2])


def snapshot(store: MemoryStore) -> tuple[list, list]:
    return list(store.iter_memories()), store.all_clusters()


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
    assert snapshot(target) == snapshot(db)
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
    assert snapshot(db) == before


def test_export_of_one_user(db):
    fill(db)
    lines = [json.loads(line) for line in export_text(db, user_id="user1").splitlines()]
    assert {r["user_id"] for r in lines[1:]} == {"user1"}
    assert sum(r["type"] == "cluster" for r in lines) == 1


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


@requires_postgres
def test_round_trip_sqlite_to_postgresql_to_sqlite_is_identical(tmp_path, new_postgres_url):
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
    assert snapshot(middle) == snapshot(origin)
    assert snapshot(back) == snapshot(origin)
    assert middle.insert_memory(user_id="u", content="next id") == 2501
