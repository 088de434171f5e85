"""New migration files: the blank template, and drafts generated from the models.

A draft comes from peewee-migrate's generator (`peewee_migrate.auto`), patched for the length of
one draft to know memoric's JSON, id and UTC timestamp fields, SQL defaults, named indexes and the
PostgreSQL-only GIN indexes. A new file never overwrites one, and a failed write leaves none.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path

import peewee
from peewee_migrate import Migrator, auto

from memoric.db import models
from memoric.db.dialects import GUARD_NOTE, gin_index_code
from memoric.db.models import GIN_INDEXES
from memoric.errors import MigrationError
from memoric.migrate.chains import migration_names

SLUG_BYTES = 80


def write_migration(directory: Path, message, draft: Callable[[list[str]], str] | None) -> Path:
    """Write the next migration of the chain in `directory`: the template, or `draft(names)`.

    The file is `NNN_message.py`, numbered one past the chain's last (001 in a new chain, whose
    directory is created); MigrationError when the message has no letters or digits or the chain
    is full.
    """
    slug = _slug(message)
    if not slug:
        raise MigrationError("a migration needs a message with letters or digits: -m 'add importance'")
    names = migration_names(directory) if directory.exists() else []
    number = max((int(name[:3]) for name in names), default=0) + 1
    if number > 999:
        raise MigrationError("the chain is full: migration numbers stop at 999")
    source = draft(names) if draft is not None else blank_source(message)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MigrationError(f"cannot create the directory {str(directory)!r}: {exc.strerror}") from exc
    path = directory / f"{number:03d}_{slug}.py"
    _write_new_file(path, source)
    return path


def _slug(message) -> str:
    """The file-name part of a message: its letters and digits (any script) joined by `_`.

    Lower case, NFC (the form Linux and macOS agree on), cut to SLUG_BYTES bytes of UTF-8 so
    the file name stays far below the file system's limit of 255.
    """
    if not isinstance(message, str):
        return ""
    words = re.sub(r"[\W_]+", "_", unicodedata.normalize("NFC", message).lower()).strip("_")
    return words.encode("utf-8")[:SLUG_BYTES].decode("utf-8", "ignore").rstrip("_")


def _write_new_file(path: Path, text: str) -> None:
    """Create `path` holding `text`; MigrationError, and no file left behind, when that fails."""
    try:
        handle = path.open("x", encoding="utf-8")
    except OSError as exc:
        raise MigrationError(f"cannot create {str(path)!r}: {exc.strerror or exc}; nothing written") from exc
    try:
        with handle:
            handle.write(text)
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise MigrationError(f"cannot write {str(path)!r}: {exc.strerror or exc}; nothing written") from exc


TEMPLATE = '''"""{message}

{about}
"""
{imports}

def migrate(migrator, database, *, fake=False):
    """Apply: {message}"""{migrate}


def rollback(migrator, database, *, fake=False):
    """Undo: {message}"""{rollback}
'''
BLANK_ABOUT = f"""Written by `memoric migrate revision`. Queue the changes on `migrator`; they run after this
function returns, in one transaction with the history row: `migrator.add_fields("memories", ...)`,
`migrator.add_index(...)`, `migrator.sql("...")`, `migrator.run(function)`. With `fake=True` the
migration is only replayed to rebuild `migrator.orm`: touch the database through `migrator` only.
{GUARD_NOTE}"""
DRAFT_ABOUT = """DRAFT written by `memoric migrate revision --auto` from the models: review and edit it before
running it. A renamed column shows up as add + remove (data loss). Id, JSON and UTC timestamp
columns use memoric's live field classes (`mf`, memoric.db.models): copy them in to freeze this file."""
INDENT = "    "
CUSTOM_FIELDS = {
    "IdField": models.IdField,
    "JSONDocumentField": models.JSONDocumentField,
    "UTCDateTimeField": models.UTCDateTimeField,
}
BLANK_IMPORT = "import peewee as pw"
IMPORTS = (
    (re.compile(r"\bpw\."), BLANK_IMPORT),
    (re.compile(r"(?<![\w.])SQL\("), "from peewee import SQL"),
    (re.compile(r"\bmf\."), "from memoric.db import models as mf"),
)


def blank_source(message: str) -> str:
    """A migration file with empty `migrate` and `rollback` functions, importing peewee as `pw`."""
    return _source(message, BLANK_ABOUT, [], [], always=(BLANK_IMPORT,))


def draft_source(message: str, migrator: Migrator, targets: list | None = None) -> str:
    """A migration file taking the chains' schema (`migrator.orm`) to the models' (default: memoric's).

    Tables of the schema that none of the models names are left as they are. MigrationError when
    there is nothing to change.
    """
    targets = list(targets or [models.Memory, models.MemoryCluster, *models.POSTING_MODELS])
    source = list(migrator.orm)
    named = {model._meta.table_name for model in targets}
    targets += [model for model in source if model._meta.table_name not in named]
    with _generator_patches():
        forward = auto.diff_many(targets, source, migrator)
        backward = auto.diff_many(source, targets, migrator, reverse=True)
    before, after = _gin_indexes(source), _gin_indexes(targets)
    forward += _gin_changes(before, after)
    backward += _gin_changes(after, before)
    if not forward:
        raise MigrationError("no changes: the models match the migration chain, nothing written")
    return _source(message, DRAFT_ABOUT, forward, backward)


def _source(
    message: str, about: str, forward: list[str], backward: list[str], always: tuple[str, ...] = ()
) -> str:
    """The file: docstring, the imports its code uses (and `always`), `migrate` and `rollback`."""
    printable = " ".join("".join(char if char.isprintable() else " " for char in message).split())
    message = printable.replace("\\", "\\\\").replace('"', '\\"')  # read back as given
    migrate, rollback = _body(forward), _body(backward)
    used = [line for pattern, line in IMPORTS if line in always or pattern.search(migrate + rollback)]
    own = [line for line in used if line.startswith("from memoric")]
    groups = ("\n".join(line for line in used if line not in own), "\n".join(own))
    imports = "".join(f"\n{group}\n" for group in groups if group)
    return TEMPLATE.format(message=message, about=about, imports=imports, migrate=migrate, rollback=rollback)


def _body(changes: list[str]) -> str:
    """The changes as a function body (after the docstring line); empty when there are none."""
    lines = "\n\n".join(changes).splitlines()
    return "".join("\n" + (INDENT + line if line.strip() else "") for line in lines)


def _gin_indexes(model_list: list) -> dict[str, dict]:
    """{table: {index name: (column, opclass)}}: the PostgreSQL-only GIN indexes of each model."""
    found = {}
    for model in model_list:
        table = model._meta.table_name
        default = GIN_INDEXES if table == "memories" else {}
        found[table] = dict(getattr(model._meta, "gin_indexes", default))
    return found


def _gin_changes(before: dict[str, dict], after: dict[str, dict]) -> list[str]:
    """Code moving the GIN indexes of the tables in `after` from `before` (PostgreSQL only)."""
    changes = []
    for table, wanted in after.items():
        had = before.get(table, {})
        for name in sorted(had):
            if wanted.get(name) != had[name]:
                changes.append(gin_index_code(table, name, None, INDENT))
        for name in sorted(wanted):
            if had.get(name) != wanted[name]:
                changes.append(gin_index_code(table, name, wanted[name], INDENT))
    return changes


_find_field_type = auto.find_field_type
_model_to_code = auto.model_to_code
_diff_model = auto.diff_model


_column_init = auto.Column.__init__


def _column_init_with_default(self, field: peewee.Field, **kwargs) -> None:
    """peewee-migrate's column, which also writes the SQL DEFAULT and a `dict`/`list` default."""
    _column_init(self, field, **kwargs)
    self.default = _sql_default(field)
    if field.default in (dict, list):
        self.extra_parameters = {**(self.extra_parameters or {}), "default": field.default.__name__}


def _sql_default(field: peewee.Field) -> str | None:
    for constraint in field.constraints or ():
        if isinstance(constraint, peewee.SQL) and constraint.sql.upper().startswith("DEFAULT "):
            return constraint.sql[len("DEFAULT ") :]
    return None


def _field_type(field: peewee.Field) -> type:
    """memoric's JSON and timestamp fields (or snapshots of them) are types of their own."""
    for cls in type(field).__mro__:
        if cls.__name__ in CUSTOM_FIELDS:
            return CUSTOM_FIELDS[cls.__name__]
    return _find_field_type(field)


def _index_parts(idx) -> tuple[str, list[peewee.Field]]:
    fields = list(idx._expressions)
    if not all(isinstance(field, peewee.Field) for field in fields):
        raise MigrationError(f"cannot draft index {idx._name!r} (an expression index): write it by hand")
    return idx._model._meta.table_name, fields


def _create_index_code(idx) -> str:
    """Create a named index and record it in the ORM snapshot."""
    table, fields = _index_parts(idx)
    unique = "UNIQUE " if idx._unique else ""
    columns = ", ".join(f'"{field.column_name}"' for field in fields)
    sql = f'CREATE {unique}INDEX IF NOT EXISTS "{idx._name}" ON "{table}" ({columns})'
    attributes = ", ".join(f"model.{field.name}" for field in fields)
    return (
        f'model = migrator.orm["{table}"]\n'
        f"model.add_index({attributes}, name={idx._name!r}, unique={bool(idx._unique)})\n"
        f"migrator.sql({sql!r})"
    )


def _drop_index_code(idx) -> str:
    """Drop a named index and forget it in the ORM snapshot."""
    table, _ = _index_parts(idx)
    sql = f'DROP INDEX IF EXISTS "{idx._name}"'
    keep = f'[i for i in model._meta.indexes if getattr(i, "_name", "") != {idx._name!r}]'
    return f'model = migrator.orm["{table}"]\nmodel._meta.indexes = {keep}\nmigrator.sql({sql!r})'


def _create_model_code(model: type[peewee.Model], **kwargs) -> str:
    """A new table: the model class, its per-dialect column types, then its named indexes."""
    name = model.__name__
    code = re.sub(r"^\s+indexes = .*\n?", "", _model_to_code(model, **kwargs), flags=re.MULTILINE)
    lines = [
        "@migrator.create_model",
        code,
        f"{name}._meta.set_database(database)",
        f"{name}._meta.gin_indexes = {{}}",
    ]
    for idx in model._meta.fields_to_index():
        _, fields = _index_parts(idx)
        attributes = ", ".join(f"{name}.{field.name}" for field in fields)
        lines.append(f"{name}.add_index({attributes}, name={idx._name!r}, unique={bool(idx._unique)})")
    return "\n".join(lines)


def _diff_model_drop_indexes_first(model, source, **opts) -> list[str]:
    """One table's changes with index drops first: SQLite cannot drop an indexed column."""
    changes = _diff_model(model, source, **opts)
    drops = [change for change in changes if "DROP INDEX" in change]
    return drops + [change for change in changes if change not in drops]


@contextlib.contextmanager
def _generator_patches() -> Iterator[None]:
    """peewee-migrate's generator, taught memoric's fields, SQL defaults and named indexes."""
    replacements = {
        "find_field_type": _field_type,
        "add_index": _create_index_code,
        "drop_index": _drop_index_code,
        "create_model": _create_model_code,
        "diff_model": _diff_model_drop_indexes_first,
    }
    saved = {name: getattr(auto, name) for name in replacements}
    modules = dict(auto.FIELD_MODULES_MAP)
    try:
        auto.Column.__init__ = _column_init_with_default
        for name, value in replacements.items():
            setattr(auto, name, value)
        auto.FIELD_MODULES_MAP.pop("JSONField", None)
        auto.FIELD_MODULES_MAP.update(dict.fromkeys(CUSTOM_FIELDS, "mf"))
        yield
    finally:
        auto.Column.__init__ = _column_init
        for name, value in saved.items():
            setattr(auto, name, value)
        auto.FIELD_MODULES_MAP.clear()
        auto.FIELD_MODULES_MAP.update(modules)
