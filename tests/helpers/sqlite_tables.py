"""SQLite tables of an older schema, built for the tests of how memoric treats them."""

from __future__ import annotations

from memoric.db.store import MemoryStore


def sqlite_without_autoincrement(path) -> MemoryStore:
    """An empty SQLite store whose tables keep no id counter (as before migration 003): max(id) + 1."""
    store = MemoryStore(f"sqlite:///{path}")
    store.create_schema()
    database = store.database
    schema = database.execute_sql(
        "SELECT type, sql FROM sqlite_master WHERE tbl_name IN ('memories', 'memory_clusters') "
        "AND sql IS NOT NULL ORDER BY type = 'table' DESC, type"
    ).fetchall()
    for table in ("memories", "memory_clusters"):
        database.execute_sql(f'DROP TABLE "{table}"')
    for kind, sql in schema:
        database.execute_sql(sql.replace(" AUTOINCREMENT", "") if kind == "table" else sql)
    return store
