"""The two guards of a run: never adopt a foreign table, never drop data unconfirmed.

An upgrade (or stamp) refuses, before writing anything, a table it would create that exists
already in another shape; a downgrade finds what it dropped by comparing the catalogue before
and after, so any migration's drops are seen, memoric's or an application's.
"""

from __future__ import annotations

from memoric.db import catalogue
from memoric.db.connection import first_line
from memoric.errors import MigrationError
from memoric.migrate.chains import HISTORY_TABLE
from memoric.migrate.runner import Runner, replay

Shape = dict[str, set[str]]


def refuse_foreign_tables(runner: Runner, done: list[str], plan: list[str]) -> None:
    """MigrationError, before anything is written, when a table `plan` creates exists in another shape.

    The chain's `CREATE TABLE IF NOT EXISTS` would adopt any table of that name: another
    application's, which a later `downgrade` would then drop. The shape the chain builds is
    learnt by building it, with the existing tables renamed aside, in a transaction that is
    rolled back.
    """
    existing = set(catalogue.tables(runner.database))
    created = created_tables(runner, done, plan)
    creators = {table: name for name, tables in created for table in tables if table in existing}
    if not creators:
        return
    last = max(plan.index(name) for name in creators.values())
    built, found = _built_and_found(runner, plan[: last + 1], list(creators))
    problems = [
        f"table {table} already exists and is not the one {creators[table]} creates: "
        + "; ".join(differences)
        for table in creators
        if (differences := catalogue.shape_differences(built.get(table), found[table]))
    ]
    if problems:
        raise MigrationError(
            "; ".join(problems) + "; nothing was changed (give memoric a database or schema of its own)"
        )


def created_tables(runner: Runner, done: list[str], plan: list[str]) -> list[tuple[str, list[str]]]:
    """(migration, the tables it creates) for each of `plan`, from the chain's ORM snapshot."""
    router, migrator = runner.router(done), runner.replayed_migrator(done)
    created = []
    for name in plan:
        before = {model._meta.table_name for model in migrator.orm}
        replay(router, migrator, name)
        created.append((name, sorted({model._meta.table_name for model in migrator.orm} - before)))
    return created


def existing_chain_tables(runner: Runner, names: list[str]) -> list[str]:
    """The tables migrations `names` create that exist already."""
    existing = set(catalogue.tables(runner.database))
    return [table for _, tables in created_tables(runner, [], names) for table in tables if table in existing]


def _built_and_found(runner: Runner, plan: list[str], tables: list[str]) -> tuple[dict, dict]:
    """The columns `plan` gives `tables`, and the columns they have now; nothing is kept."""
    database = runner.database
    aside = {table: f"memoric_existing_{number}" for number, table in enumerate(tables)}
    with database.atomic() as transaction:
        try:
            for table, name in aside.items():
                catalogue.rename_table(database, table, name)
            router = runner.router(plan)
            migrator = router.migrator
            for name in plan:
                router.run_one(name, migrator, fake=False)
            built = catalogue.columns(database, tables)
            found = catalogue.columns(database, aside.values())
        except Exception as exc:
            raise MigrationError(
                f"cannot compare the existing table(s) {', '.join(tables)} with what the chain builds: "
                f"{first_line(exc)}; nothing was changed"
            ) from exc
        finally:
            transaction.rollback()
    return built, {table: found[name] for table, name in aside.items()}


def shape(runner: Runner) -> Shape:
    """{table: its column names} of every application table but the history."""
    database = runner.database
    names = [table for table in catalogue.tables(database) if table != HISTORY_TABLE]
    return {table: set(found) for table, found in catalogue.columns(database, names).items()}


def dropped(before: Shape, after: Shape) -> list[tuple[str, str | None]]:
    """(table, None) for each table gone from `before` to `after`, (table, column) for each column."""
    gone: list[tuple[str, str | None]] = []
    for table, table_columns in before.items():
        if table not in after:
            gone.append((table, None))
        else:
            gone += [(table, column) for column in sorted(table_columns - after[table])]
    return gone


def holding_data(runner: Runner, gone: list[tuple[str, str | None]]) -> dict[str, int]:
    """{`table` or `table.column`: rows or non-null values} of what is dropped and not empty."""
    database = runner.database
    losses = {}
    for table, column in gone:
        if column is None:
            losses[table] = catalogue.count_rows(database, table)
        else:
            losses[f"{table}.{column}"] = catalogue.count_values(database, table, column)
    return {what: count for what, count in losses.items() if count}
