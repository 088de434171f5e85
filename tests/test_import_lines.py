"""An import's lines: a refusal moves no id counter, format versions, what JSON and memoric accept
in a line, timestamps to the microsecond."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re

import pytest

from memoric import Memoric
from memoric.db.urls import sqlite_path
from memoric.errors import MemoricError, ValidationError
from memoric.transfer import (
    FORMAT_VERSION,
    check_jsonl,
    export_memoric,
    import_checked,
    import_jsonl,
    import_memoric,
    rereadable,
)
from tests.helpers.chain import id_counters, schema, tables
from tests.helpers.transfer_data import (
    HEADER,
    T0,
    assert_identical,
    cluster_line,
    export_of,
    memory_line,
    snapshot,
)

pytestmark = pytest.mark.citus  # also on a Citus cluster


LARGEST = 2**63 - 1


@pytest.mark.parametrize(
    ("records", "named"),
    [
        (
            [memory_line(1, user_id="bob"), memory_line(LARGEST)],
            "line 2: memory id 1 is already in the target with other data",
        ),
        (
            [cluster_line(1, summary="another summary"), memory_line(LARGEST)],
            "line 2: cluster id 1 is already in the target with other data",
        ),
        (
            [memory_line(LARGEST), cluster_line(LARGEST, memory_ids=[LARGEST])],
            f"line 3: cluster {LARGEST} is for user_id, topic and category ['ada', 't', 'general'], "
            "which the target holds as cluster 1",
        ),
        (
            [
                memory_line(LARGEST, user_id="bob"),
                cluster_line(LARGEST, user_id="bob", memory_ids=[1, LARGEST], memory_count=2),
            ],
            f"line 3: cluster {LARGEST} of user_id 'bob' lists memory 1, which is neither in this export "
            "nor a memory of that user_id in the target",
        ),
    ],
    ids=["memory differs", "cluster differs", "cluster key taken", "another user's memory"],
)
def test_an_import_refused_for_what_the_target_holds_moves_no_id_counter(db, records, named):
    db.insert_memories([{"user_id": "ada", "content": "memory 1", "created_at": T0}])
    db.upsert_cluster(user_id="ada", topic="t", category="general", memory_ids=[1])
    counters, built, before = id_counters(db), schema(db), snapshot(db)
    with pytest.raises(ValidationError, match=re.escape(named)):
        import_jsonl(db, export_of(*records))
    assert (id_counters(db), schema(db)) == (counters, built)
    assert_identical(snapshot(db), before)
    assert db.insert_memory(user_id="ada", content="saved after") == 2
    assert db.upsert_cluster(user_id="ada", topic="u", category="general", memory_ids=[2]) == 2


def test_an_import_refused_for_what_an_empty_database_lacks_leaves_it_unbuilt(new_dsn):
    dsn = new_dsn()
    memoric = Memoric(dsn)
    stranger = export_of(memory_line(LARGEST), cluster_line(3, memory_ids=[1, LARGEST], memory_count=2))
    plan = check_jsonl(memoric.store, stranger)
    with pytest.raises(ValidationError, match="line 3: cluster 3 of user_id 'ada' lists memory 1, which is"):
        import_memoric(memoric, plan)
    if memoric.store.is_sqlite:
        assert not os.path.exists(sqlite_path(dsn)), "a SQLite file not there stays away"
    else:
        assert (tables(memoric.store), id_counters(memoric.store)) == (set(), {})
    memoric.close()


@pytest.mark.parametrize("version", [True, False, 0, -5, 1.0, "1", None, FORMAT_VERSION + 1])
def test_only_a_positive_integer_format_version_this_memoric_reads_is_accepted(db, version):
    with pytest.raises(ValidationError, match="export format version"):
        import_jsonl(db, export_of(memory_line(1), header={**HEADER, "format_version": version}))
    assert db.count_memories() == 0


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (
            '{"type": "memory", "id": 1, "user_id": "a", "content": "x", "metadata": {"n": 1'
            + "0" * 5000
            + "}}",
            "line 3 is not valid JSON here: Exceeds the limit (4300 digits)",
        ),
        (
            '{"type": "memory", "id": 1, "user_id": "a", "content": "x", "metadata": {"n": '
            + "[" * 5000
            + "]" * 5000
            + "}}",
            "line 3 is not valid JSON here: it is nested too deeply",
        ),
        (
            '{"type": "memory", "id": 0, "user_id": "a", "content": "x"}',
            "line 3: id must be an int from 1 to 9223372036854775807, got 0",
        ),
        (
            '{"type": "memory", "id": 9223372036854775808, "user_id": "a", "content": "x"}',
            "line 3: id must be an int from 1 to 9223372036854775807, got 9223372036854775808",
        ),
        ('{"type": "memory", "user_id": "a", "content": "x"}', "line 3: id must be an int, got None"),
        ('{"type": "cluster", "cluster_id": true, "user_id": "a"}', "line 3: cluster_id must be an int"),
    ],
    ids=["huge int", "deep nesting", "id 0", "id beyond 64 bits", "no id", "cluster_id true"],
)
def test_a_line_json_or_memoric_cannot_take_is_a_validation_error_naming_it(db, text, named):
    lines = export_of(memory_line(1)).getvalue() + text + "\n"
    with pytest.raises(ValidationError, match=re.escape(named)):
        import_jsonl(db, io.StringIO(lines))
    assert db.count_memories() == 0


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (
            '{"type": "memory", "id": 1, "user_id": "ada", "content": "x", "content": "y"}',
            "line 3 gives the key 'content' twice in one object",
        ),
        (
            '{"type": "memory", "id": 1, "user_id": "ada", "content": "x", "metadata": {"a": 1, "a": 2}}',
            "line 3 gives the key 'a' twice in one object",
        ),
        (
            '{"type": "memory", "id": 1, "user_id": "ada", "content": "x", '
            '"metadata": {"l": [1, {"b": {"c": true, "d": 0, "c": true}}]}}',
            "line 3 gives the key 'c' twice in one object",
        ),
        (
            '{"type": "memory", "id": 1, "id": 1, "user_id": "ada", "content": "x"}',
            "line 3 gives the key 'id' twice in one object",
        ),
        (
            '{"type": "cluster", "cluster_id": 1, "user_id": "ada", "topic": "t", "category": "c", '
            '"memory_ids": [], "memory_count": 0, "summary": "", "summary": "other"}',
            "line 3 gives the key 'summary' twice in one object",
        ),
        (
            '{"type": "memory", "id": 1, "user_id": "ada", "content": "x", '
            '"metadata": {"\\u0061": 1, "a": 2}}',
            "line 3 gives the key 'a' twice in one object",
        ),
    ],
    ids=["content", "metadata", "deep in a list", "same value twice", "cluster", "escaped key"],
)
def test_a_line_giving_a_key_twice_is_refused_naming_the_line_and_the_key(db, text, named):
    lines = export_of(memory_line(5)).getvalue() + text + "\n"
    with pytest.raises(ValidationError, match=re.escape(named)):
        import_jsonl(db, io.StringIO(lines))
    assert_identical(snapshot(db), [[], []])


def test_a_header_giving_a_key_twice_is_refused(db):
    header = '{"type": "header", "format": "memoric-export", "format_version": 2, "format_version": 1}\n'
    with pytest.raises(ValidationError, match="line 1 gives the key 'format_version' twice in one object"):
        import_jsonl(db, io.StringIO(header + json.dumps(memory_line(1)) + "\n"))
    assert db.count_memories() == 0


INEXACT = [
    ("0.10000000000000000000000001", "0.1"),
    ("12345678901234567.0", "1.2345678901234568e+16"),
    ("2.5000000000000001", "2.5"),
    ("1e-400", "0.0"),
    ("-1e400", "-inf"),
    ("-1e-400", "0.0"),
    ("0.1000000000000000055511151231257827021181583404541015625", "0.1"),
]


@pytest.mark.parametrize(("number", "stored_as"), INEXACT)
def test_a_number_no_float_holds_exactly_is_refused_naming_the_line_and_what_it_would_become(
    db, number, stored_as
):
    line = json.dumps(memory_line(2, metadata={"n": [1, "NUMBER"]})).replace('"NUMBER"', number)
    text = export_of(memory_line(1)).getvalue() + line + "\n"
    named = f"line 3 holds the number {number}, which a float would change: it would be stored as "
    named += stored_as
    with pytest.raises(ValidationError, match=re.escape(named)):
        import_jsonl(db, io.StringIO(text))
    assert_identical(snapshot(db), [[], []])


def test_a_number_written_another_way_than_memoric_writes_it_is_the_float_it_says(db):
    line = json.dumps(memory_line(1, metadata={"n": "NUMBERS"}))
    line = line.replace('"NUMBERS"', "[1E2, 0.50, 1e16, 5e-324]")
    import_jsonl(db, io.StringIO(export_of().getvalue() + line + "\n"))
    assert db.get_memory(1)["metadata"] == {"n": [100.0, 0.5, 1e16, 5e-324]}


PRECISE = ["2026-11-29T23:06:03.1098409+00:00", "2026-11-29T23:06:03,1234561Z",
           "20261129T230603.1234560001+02:00"]  # fmt: skip


@pytest.mark.parametrize("stamp", PRECISE)
@pytest.mark.parametrize(
    ("kind", "field"),
    [("memory", "created_at"), ("memory", "updated_at"), ("cluster", "created_at"),
     ("cluster", "updated_at"), ("cluster", "last_built_at")],
)  # fmt: skip
def test_a_timestamp_more_precise_than_a_microsecond_is_refused_naming_the_line_and_field(
    db, kind, field, stamp
):
    line = memory_line(2, **{field: stamp}) if kind == "memory" else cluster_line(1, **{field: stamp})
    named = f"line 3: {field} {stamp!r} is more precise than a microsecond"
    with pytest.raises(ValidationError, match=re.escape(named)):
        import_jsonl(db, export_of(memory_line(1), line))
    assert_identical(snapshot(db), [[], []])


def test_a_timestamp_with_zeros_past_the_microsecond_is_the_instant_it_says(db):
    import_jsonl(db, export_of(memory_line(1, created_at="2026-11-29T23:06:03.1098400000+00:00")))
    assert db.get_memory(1)["created_at"] == dt.datetime(2026, 11, 29, 23, 6, 3, 109840, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "stamp",
    ["2026-11-29T23:07:09.111146+00:00:00.5", "2026-11-29T23:07:09+01:30:15", "2026-11-29T23:07:09-000001"],
)
def test_a_timestamp_whose_utc_offset_has_seconds_is_refused(db, stamp):
    """Python 3.11 read `+00:00:00.5` as UTC, dropping half a second: the instant changed silently."""
    named = f"line 2: created_at {stamp!r} has a UTC offset with seconds"
    with pytest.raises(ValidationError, match=re.escape(named)):
        import_jsonl(db, export_of(memory_line(1, created_at=stamp)))
    assert_identical(snapshot(db), [[], []])


ENDED = {**HEADER, "format_version": 2}
NOT_AN_END = "an end line holds the number of memories and of clusters"


@pytest.mark.parametrize(
    ("end", "named"),
    [
        ({"memories": 1, "clusters": 0}, "the end line counts 1 memories and 0 clusters, the file holds 2"),
        ({"memories": 3, "clusters": 0}, "the end line counts 3 memories and 0 clusters, the file holds 2"),
        ({"memories": 2}, NOT_AN_END),
        ({"memories": 2, "clusters": "0"}, NOT_AN_END),
        ({"memories": 2, "clusters": 0, "more": 1}, NOT_AN_END),
    ],
)
def test_an_end_line_that_does_not_count_the_file_is_refused(db, end, named):
    text = export_of(memory_line(1), memory_line(2), {"type": "end", **end}, header=ENDED)
    with pytest.raises(ValidationError, match=re.escape(f"line 4: {named}")):
        import_jsonl(db, text)
    assert db.count_memories() == 0


def test_a_record_after_the_end_line_is_refused(db):
    end = {"type": "end", "memories": 1, "clusters": 0}
    text = export_of(memory_line(1), end, memory_line(2), header=ENDED)
    with pytest.raises(ValidationError, match=re.escape("line 4: a record after the end line (line 3)")):
        import_jsonl(db, text)
    assert db.count_memories() == 0


def test_an_export_of_format_version_1_needs_no_end_line(db):
    assert import_jsonl(db, export_of(memory_line(1), memory_line(2)))["memories"] == 2


@pytest.mark.parametrize("clusters", [True, False])
def test_a_repeated_line_in_place_of_a_lost_one_is_refused(db, clusters):
    """The end line counts lines; a repeated one would make up for a lost one (a resumed download
    that overlapped), so an export of format 2 must hold as many different records, its
    clusters left out (`clusters=False`) or not."""
    end = {"type": "end", "memories": 3, "clusters": 0}
    text = export_of(memory_line(1), memory_line(2), memory_line(1), end, header=ENDED)
    with pytest.raises(ValidationError, match=re.escape("the file holds 2 and 0 different ones")):
        import_jsonl(db, text, clusters=clusters)
    assert db.count_memories() == 0


def test_clusters_left_out_are_counted_by_the_end_line_but_not_written(db):
    end = {"type": "end", "memories": 1, "clusters": 1}
    counts = import_jsonl(db, export_of(memory_line(1), cluster_line(7), end, header=ENDED), clusters=False)
    assert counts == {"memories": 1, "clusters": 0, "skipped": 0}
    assert db.get_clusters() == []


@pytest.mark.parametrize("as_bytes", [True, False], ids=["bytes", "text"])
def test_a_byte_order_mark_opening_the_file_is_not_part_of_its_text(db, as_bytes):
    text = "\ufeff" + export_of(memory_line(1, content="\ufeffkept inside")).getvalue()
    lines = io.BytesIO(text.encode("utf-8")) if as_bytes else io.StringIO(text)
    assert import_jsonl(db, lines)["memories"] == 1
    assert db.get_memory(1)["content"] == "\ufeffkept inside"


def test_a_byte_order_mark_opening_a_later_line_is_refused(db):
    header, memory = export_of(memory_line(1)).getvalue().splitlines(keepends=True)[:2]
    with pytest.raises(ValidationError, match="line 2 is not valid JSON"):
        import_jsonl(db, io.StringIO(header + "\ufeff" + memory))


def test_a_line_longer_than_an_import_reads_is_refused_and_no_export_writes_one(dsn, new_dsn, monkeypatch):
    """The limit (256 MiB) made small: an import refuses a longer line by its number, and an
    export refuses, before its first line, a cluster whose line would be longer."""
    for module in ("lines", "export"):
        monkeypatch.setattr(f"memoric.transfer.{module}.MAX_LINE_BYTES", 5000)
    source = Memoric(dsn)
    source.db.insert_memories([{"user_id": "ada", "content": "m"}] * 30)
    ids = [row["id"] for row in source.db.get_memories(user_id="ada", limit=None)]
    source.db.upsert_cluster(user_id="ada", topic="t", category="c", memory_ids=ids, summary="s" * 4000)
    fits = io.StringIO()
    export_memoric(source, fits)
    source.db.upsert_cluster(user_id="ada", topic="t", category="c", memory_ids=ids, summary="s" * 6000)
    written = io.StringIO()
    with pytest.raises(
        ValidationError, match=r"^cluster \d+: its line \(30 memory ids and its summary\) is longer"
    ):
        export_memoric(source, written)
    assert written.getvalue() == "", "refused before the first line"

    too_long = fits.getvalue().replace("s" * 4000, "s" * 6000)
    with pytest.raises(ValidationError, match=r"^line \d+ of the export is longer than 0 MiB"):
        import_jsonl(Memoric(new_dsn()).db, io.StringIO(too_long))
    assert import_jsonl(Memoric(new_dsn()).db, io.StringIO(fits.getvalue()))["clusters"] == 1


# --- lines that can be read only once ------------------------------------------------------------

HEADER_TEXT = json.dumps(HEADER)
MEMORY_TEXT = json.dumps(memory_line(1))
END_TEXT = json.dumps({"type": "end", "memories": 1, "clusters": 0})


@pytest.mark.parametrize(
    "lines",
    [
        [],
        ["", "  "],
        ["y", "y"],
        ["[1]", HEADER_TEXT],
        [HEADER_TEXT, "y"],
        [HEADER_TEXT, "", MEMORY_TEXT, '"text"', END_TEXT],
        [HEADER_TEXT, "[" + MEMORY_TEXT + "]", END_TEXT],
        [HEADER_TEXT, "\ufeff" + MEMORY_TEXT, END_TEXT],
        [HEADER_TEXT, "  " + MEMORY_TEXT[:-1], END_TEXT],
        [HEADER_TEXT.replace('"type"', '"type": 1, "type"'), MEMORY_TEXT, END_TEXT],
        ["\ufeff" + json.dumps({**HEADER, "format_version": FORMAT_VERSION + 1}), MEMORY_TEXT, END_TEXT],
    ],
    ids=[
        "nothing",
        "blank",
        "no JSON",
        "no header first",
        "no JSON after the header",
        "a string",
        "an array",
        "a later byte order mark",
        "cut short",
        "a key twice in the header",
        "a newer format",
    ],
)
def test_lines_read_once_are_refused_as_a_file_of_them_is(db, lines):
    """A one-pass stream is spooled to a file first; what that spool refuses on the way is
    refused with the words the import's own check uses for the same file."""
    with pytest.raises(ValidationError) as from_file:
        import_jsonl(db, io.StringIO("".join(line + "\n" for line in lines)))
    with pytest.raises(ValidationError) as from_stream:
        import_jsonl(db, iter(lines))
    assert str(from_stream.value) == str(from_file.value)
    assert db.count_memories() == 0


@pytest.mark.parametrize(
    "lines",
    [
        ["\ufeff", "", HEADER_TEXT, "", MEMORY_TEXT, " ", END_TEXT],
        ["\ufeff" + HEADER_TEXT, MEMORY_TEXT, END_TEXT + "\n"],
        [b"\xef\xbb\xbf" + HEADER_TEXT.encode(), b"\n", MEMORY_TEXT.encode(), END_TEXT.encode()],
    ],
    ids=["blank lines and a byte order mark alone", "a byte order mark opening the header", "bytes"],
)
def test_lines_read_once_are_imported_as_a_file_of_them_is(db, lines):
    assert import_jsonl(db, iter(lines))["memories"] == 1
    assert db.get_memory(1)["content"] == "memory 1"


@pytest.mark.parametrize(
    ("first", "repeated", "refused", "most_pulled"),
    [
        ("y", "y", "line 1 is not valid JSON", 0),
        (HEADER_TEXT, "y", "line 2 is not valid JSON", 1),
        (HEADER_TEXT, "{", "line 2 is not valid JSON", 1),
        (HEADER_TEXT, '{"type": "memory"', "line 2 is not valid JSON", 1),
        (HEADER_TEXT, MEMORY_TEXT + " 1", "line 2 is not valid JSON", 1),
        ("", "", "line 1001 ends 1001 blank lines in a row", 1000),
        (HEADER_TEXT, " " * 2**16, "line 1002 ends 1001 blank lines in a row", 1001),
    ],
    ids=["yes", "yes after a header", "a brace", "an object cut", "after an object", "blank", "spaces"],
)
def test_an_endless_stream_of_no_export_is_refused_at_its_first_line_that_cannot_be_one(
    db, first, repeated, refused, most_pulled
):
    """`yes | memoric import -` was spooled whole before its first line was checked, filling the
    temporary directory for as long as it ran; a stream is now copied as the check reads it, so
    it stops at the first line that is no export (the stream here ends after 100,000 lines, so
    that the code before fails rather than runs on)."""
    pulled = 0

    def endless():
        nonlocal pulled
        yield first
        for _ in range(100_000):
            pulled += 1
            yield repeated

    with pytest.raises(ValidationError, match=re.escape(refused)):
        import_jsonl(db, endless())
    assert pulled <= most_pulled


def test_lines_as_bytearrays_or_memoryviews_are_read_as_bytes(db):
    lines = [HEADER_TEXT, MEMORY_TEXT, END_TEXT]
    assert import_jsonl(db, [bytearray(line.encode()) for line in lines])["memories"] == 1
    assert import_jsonl(db, [memoryview(line.encode()) for line in lines])["skipped"] == 1


@pytest.mark.parametrize("odd", [5, None, ["a list"]], ids=repr)
def test_a_line_that_is_no_text_is_refused_by_its_number(db, odd):
    with pytest.raises(ValidationError, match=f"^line 2 is {type(odd).__name__}, not text"):
        import_jsonl(db, [HEADER_TEXT, odd, END_TEXT])
    assert db.count_memories() == 0


def test_a_file_closed_before_it_is_read_is_a_memoric_error(db, tmp_path):
    path = tmp_path / "export.jsonl"
    path.write_text("\n".join([HEADER_TEXT, MEMORY_TEXT, END_TEXT]) + "\n")
    with open(path) as closed:
        pass
    with pytest.raises(MemoricError, match=r"^cannot read .*export\.jsonl: I/O operation on closed file"):
        import_jsonl(db, closed)
    with open(path) as file:
        plan = check_jsonl(db, file)
    with pytest.raises(MemoricError, match=r"^cannot read .*export\.jsonl: I/O operation on closed file"):
        import_checked(db, plan)
    assert db.count_memories() == 0


def test_a_text_stream_that_is_not_utf8_names_its_line(db):
    """A pipe read as UTF-8 text, carrying Latin-1: the decoder's error came out raw."""
    read_end, write_end = os.pipe()
    os.write(
        write_end,
        (HEADER_TEXT + "\n" + MEMORY_TEXT.replace("memory 1", "caf\u00e9") + "\n").encode("latin-1"),
    )
    os.close(write_end)
    with (
        os.fdopen(read_end, encoding="utf-8") as pipe,
        pytest.raises(ValidationError, match=r"^the export is not UTF-8 text"),
    ):
        import_jsonl(db, pipe)
    assert db.count_memories() == 0


@pytest.mark.parametrize(
    ("options", "refused"),
    [
        ({"encoding": "latin-1"}, "read as latin-1"),
        ({"encoding": "utf-8", "errors": "replace"}, "read with errors='replace'"),
    ],
    ids=["latin-1", "errors replaced"],
)
def test_a_file_read_as_other_text_than_utf8_is_refused_before_it_is_read(db, tmp_path, options, refused):
    """Read as Latin-1, 'café' came in as 'cafÃ©', imported: changed silently."""
    path = tmp_path / "export.jsonl"
    text = "\n".join([HEADER_TEXT, MEMORY_TEXT.replace("memory 1", "caf\u00e9"), END_TEXT]) + "\n"
    path.write_text(text, encoding="utf-8")
    refusal = pytest.raises(ValidationError, match=f"^lines is {re.escape(refused)}")
    with open(path, **options) as file, refusal:
        import_jsonl(db, file)
    assert db.count_memories() == 0


@pytest.mark.parametrize("one_pass", [False, True], ids=["a list", "a generator"])
def test_an_item_holding_a_line_break_is_refused_as_the_line_it_is_not(db, one_pass):
    """A generator's items were checked as given and read again from a copy split at line
    breaks: the check passed, and the import failed after writing its first batches."""
    indented = json.dumps(memory_line(2), indent=1)
    lines = [HEADER_TEXT, MEMORY_TEXT, indented, END_TEXT.replace('"memories": 1', '"memories": 2')]
    with pytest.raises(ValidationError, match=r"^line 3 holds a line break before its end"):
        import_jsonl(db, iter(lines) if one_pass else lines, batch_size=1)
    assert db.count_memories() == 0


def test_a_stream_checked_in_a_rereadable_block_is_imported_inside_it(db):
    lines = [HEADER_TEXT, MEMORY_TEXT, END_TEXT]
    with rereadable(iter(lines)) as reread:
        plan = check_jsonl(db, reread)
    with pytest.raises(MemoricError, match="dropped when its `rereadable` block ended"):
        import_checked(db, plan)
    with rereadable(iter(lines)) as reread:
        assert import_checked(db, check_jsonl(db, reread))["memories"] == 1
