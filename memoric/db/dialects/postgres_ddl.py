"""PostgreSQL DDL that migrations write: GIN indexes, and the guard around SQL for PostgreSQL
alone in a migration file (a file runs on both dialects)."""

from __future__ import annotations

from memoric.db.models import GIN_INDEXES

# The guard generated migration files put around SQL for PostgreSQL alone (a file runs on both).
POSTGRES_ONLY = "if isinstance(database, pw.PostgresqlDatabase):"
GUARD_NOTE = f"SQL for PostgreSQL alone goes under `{POSTGRES_ONLY}`."  # for the migration template


def gin_index_sql(name: str, table: str = "memories", definition: tuple[str, str] | None = None) -> str:
    """The DDL of a PostgreSQL GIN index (default: one of the GIN indexes of `memories`)."""
    column, opclass = definition or GIN_INDEXES[name]
    key = column if column.startswith("(") else f'"{column}"'
    return f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" USING GIN ({key} {opclass})'


def postgres_only_code(code: str, indent: str) -> str:
    """Migration-file code running `code` on PostgreSQL only (the file itself runs on both dialects)."""
    return f"{POSTGRES_ONLY}\n{indent}{code}"


def gin_index_code(table: str, name: str, definition: tuple[str, str] | None, indent: str) -> str:
    """Create (`definition` given) or drop one GIN index, and record it in the ORM snapshot."""
    gin = f'migrator.orm["{table}"]._meta.gin_indexes'
    if definition is None:
        sql, record = f'DROP INDEX IF EXISTS "{name}"', f"{gin}.pop({name!r}, None)"
    else:
        sql, record = gin_index_sql(name, table, definition), f"{gin}[{name!r}] = {definition!r}"
    return postgres_only_code(f"migrator.sql({sql!r})", indent) + f"\n{record}"
