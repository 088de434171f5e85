"""The arguments that are not data (options, directories, the stores, files and lines an entry
point works on): a wrong one is a ValidationError naming it, raised before any work.

A string where a bool belongs is true to Python: `downgrade(confirm_data_loss="no")` confirmed the
loss and `import_jsonl(new_ids="no")` added every memory again. An int for a directory or a store
was a TypeError or AttributeError from inside (found by a hostile run).
"""

from __future__ import annotations

import io
import re

import pytest

from memoric import Memoric, MemoryStore
from memoric.errors import ValidationError
from memoric.migrate import Migrations
from memoric.transfer import (
    check_jsonl,
    copy_database,
    copy_memoric,
    copy_size,
    export_jsonl,
    export_memoric,
    import_checked,
    import_jsonl,
    import_memoric,
    open_copy,
)
from tests.helpers.odd_paths import BrokenPath, BytesPath


@pytest.fixture(scope="module")
def source(module_dsn):
    """A Memoric holding three memories, and its export (each test leaves them as they are)."""
    memoric = Memoric(module_dsn)
    memoric.db.insert_memories([{"user_id": "ada", "content": f"memory {n}"} for n in range(3)])
    export = io.StringIO()
    export_memoric(memoric, export)
    yield memoric, export.getvalue()
    memoric.close()


# --- options that are bools ------------------------------------------------------------------------

BOOLEANS = {
    "Memoric auto_migrate": lambda m, text, value: Memoric(m.db.dsn, auto_migrate=value),
    "Memoric create": lambda m, text, value: Memoric(m.db.dsn, create=value),
    "MemoryStore warn_sqlite": lambda m, text, value: MemoryStore(m.db.dsn, warn_sqlite=value),
    "ensure_schema auto_migrate": lambda m, text, value: m.migrations.ensure_schema(auto_migrate=value),
    "ensure_schema create": lambda m, text, value: m.migrations.ensure_schema(create=value),
    "downgrade confirm_data_loss": lambda m, text, value: m.migrations.downgrade(
        "base", confirm_data_loss=value
    ),
    "run_policies dry_run": lambda m, text, value: m.run_policies(dry_run=value),
    "import_jsonl new_ids": lambda m, text, value: import_jsonl(m.db, io.StringIO(text), new_ids=value),
    "import_jsonl clusters": lambda m, text, value: import_jsonl(m.db, io.StringIO(text), clusters=value),
    "import_jsonl keep_existing": lambda m, text, value: import_jsonl(
        m.db, io.StringIO(text), keep_existing=value
    ),
    "check_jsonl new_ids": lambda m, text, value: check_jsonl(m.db, io.StringIO(text), new_ids=value),
}


@pytest.mark.parametrize("value", ["no", 0, None], ids=repr)
@pytest.mark.parametrize("call", BOOLEANS.values(), ids=BOOLEANS.keys())
def test_every_option_that_is_a_bool_takes_only_true_or_false(source, call, value):
    """None too: `clusters=None` left the file's clusters out and `create=None` refused to
    create, each silently reading None as False where the default is True."""
    memoric, text = source
    before = memoric.migrations.current(), memoric.db.count_memories()
    with pytest.raises(ValidationError, match=" must be True or False, got "):
        call(memoric, text, value)
    assert (memoric.migrations.current(), memoric.db.count_memories()) == before


def test_a_downgrade_confirmed_with_a_string_drops_nothing(source):
    memoric, _ = source
    with pytest.raises(ValidationError, match=r"^confirm_data_loss must be True or False, got 'no'"):
        memoric.migrations.downgrade("base", confirm_data_loss="no")
    assert [m["content"] for m in memoric.db.get_memories(limit=None)] == [f"memory {n}" for n in (2, 1, 0)]


# --- directories -----------------------------------------------------------------------------------

DIRECTORIES = {
    "Memoric app_dir": ("app_dir", lambda m, value: Memoric(m.db.dsn, app_dir=value)),
    "Migrations app_dir": ("app_dir", lambda m, value: Migrations(m.store, app_dir=value)),
    "Migrations migrate_dir": (
        "migrate_dir",
        lambda m, value: Migrations(m.store, migrate_dir=value),
    ),
    "open_copy app_dir": ("app_dir", lambda m, value: open_copy(m.db.dsn, m.db.dsn + "-copy", app_dir=value)),
}


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (1, "int"),
        (b"migrations", "bytes"),
        ("", "it is empty"),
        ("a\0b", "NUL character"),
        (BrokenPath(), "its __fspath__ failed"),
        (BytesPath(), "bytes"),
    ],
    ids=["int", "bytes", "empty", "NUL", "failing path-like", "bytes path-like"],
)
@pytest.mark.parametrize(("field", "call"), DIRECTORIES.values(), ids=DIRECTORIES.keys())
def test_every_directory_argument_is_a_path(source, field, call, value, problem):
    memoric, _ = source
    with pytest.raises(ValidationError, match=f"^{field} must be a directory path.*{problem}"):
        call(memoric, value)


def test_on_wait_is_a_function_of_no_arguments(source):
    memoric, _ = source
    with pytest.raises(ValidationError, match=r"^on_wait must be a function .*, got str"):
        Migrations(memoric.store, on_wait="wait")
    with pytest.raises(ValidationError, match=r"^on_wait must be a function .*: it cannot be called with 0"):
        Migrations(memoric.store, on_wait=lambda seconds: None)


# --- the stores, files and lines an entry point works on --------------------------------------------

OBJECTS = {
    "export_jsonl store": ("store", lambda m, t, x: export_jsonl(x, io.StringIO())),
    "export_jsonl out": ("out", lambda m, t, x: export_jsonl(m.db, x)),
    "export_memoric memoric": ("memoric", lambda m, t, x: export_memoric(x, io.StringIO())),
    "export_memoric out": ("out", lambda m, t, x: export_memoric(m, x)),
    "import_jsonl store": ("store", lambda m, t, x: import_jsonl(x, io.StringIO(t))),
    "import_jsonl lines": ("lines", lambda m, t, x: import_jsonl(m.db, x)),
    "check_jsonl store": ("store", lambda m, t, x: check_jsonl(x, io.StringIO(t))),
    "check_jsonl lines": ("lines", lambda m, t, x: check_jsonl(m.db, x)),
    "import_memoric memoric": (
        "memoric",
        lambda m, t, x: import_memoric(x, check_jsonl(m.db, io.StringIO(t))),
    ),
    "import_memoric plan": ("plan", lambda m, t, x: import_memoric(m, x)),
    "import_checked store": ("store", lambda m, t, x: import_checked(x, check_jsonl(m.db, io.StringIO(t)))),
    "import_checked plan": ("plan", lambda m, t, x: import_checked(m.db, x)),
    "copy_database source": ("source", lambda m, t, x: copy_database(x, m.db)),
    "copy_database target": ("target", lambda m, t, x: copy_database(m.db, x)),
    "copy_memoric source": ("source", lambda m, t, x: copy_memoric(x, m)),
    "copy_memoric target": ("target", lambda m, t, x: copy_memoric(m, x)),
    "copy_size memoric": ("memoric", lambda m, t, x: copy_size(x)),
}


@pytest.mark.parametrize("value", [5, None], ids=["int", "None"])
@pytest.mark.parametrize(("field", "call"), OBJECTS.values(), ids=OBJECTS.keys())
def test_every_store_file_or_lines_argument_of_another_kind_is_named(source, field, call, value):
    memoric, text = source
    before = memoric.db.count_memories()
    with pytest.raises(ValidationError, match=f"^{field} must be an? .*, got {type(value).__name__}"):
        call(memoric, text, value)
    assert memoric.db.count_memories() == before


@pytest.mark.parametrize("text", ["an export", b"an export"], ids=["str", "bytes"])
def test_an_export_given_as_one_string_asks_for_its_lines(source, text):
    """A string is iterable, character by character: it was read as lines of one character."""
    memoric, _ = source
    with pytest.raises(
        ValidationError, match=r"^lines must be an open file or an iterable of lines, got one"
    ):
        import_jsonl(memoric.db, text)


def test_an_export_holds_a_schema_version_of_text(source):
    memoric, _ = source
    out = io.StringIO()
    with pytest.raises(ValidationError, match=r"^schema_version must be"):
        export_jsonl(memoric.db, out, schema_version=object())
    assert out.getvalue() == ""


@pytest.mark.parametrize(
    ("mode", "encoding", "refused"),
    [
        ("w", "latin-1", "writes latin-1; an export is UTF-8"),
        ("w", "ascii", "writes ascii; an export is UTF-8"),
        ("w", "utf-16", "writes utf-16; an export is UTF-8"),
        ("wb", None, "must be a file open for writing text: a bytes-like object is required"),
        ("r", "utf-8", "must be a file open for writing text: not writable"),
        ("closed", "utf-8", "must be a file open for writing text: I/O operation on closed file"),
    ],
    ids=["latin-1", "ascii", "utf-16", "binary", "read only", "closed"],
)
def test_an_export_to_a_file_that_cannot_take_its_text_writes_nothing(
    source, tmp_path, mode, encoding, refused
):
    """It wrote the header, then failed on the first character the file could not take (or on
    the first write), leaving a file cut after its first line."""
    memoric, _ = source
    saved = memoric.save("ada", "a dash \u2013 and a \u2603")
    path = tmp_path / "export.jsonl"
    path.write_text("")
    with open(path, mode.replace("closed", "w"), encoding=encoding) as out:
        if mode == "closed":
            out.close()
        with pytest.raises(ValidationError, match=f"^out {re.escape(refused)}"):
            export_jsonl(memoric.db, out)
    assert path.read_bytes() == b""
    memoric.forget("ada", [saved])
