"""The guards of a run: never adopt a foreign table, never drop data unconfirmed, never start a
second store beside one the search path hides.

An upgrade (or stamp) refuses, before writing anything, a table it would create that exists
already in another shape; a downgrade finds what it dropped by comparing the catalogue before
and after, so any migration's drops are seen, memoric's or an application's.
"""

from __future__ import annotations

from memoric.db import catalogue
from memoric.db.driver_errors import first_line
from memoric.db.models import POSTING_MODELS
from memoric.errors import ConfigError, MigrationError
from memoric.migrate.chains import HISTORY_TABLE
from memoric.migrate.runner import Run
from memoric.migrate.targets import Step

# The columns of memoric's that it derives from the memories alone, by table (indexes of them).
DERIVED_COLUMNS = {
    catalogue.METADATA_KEYS_TABLE: catalogue.METADATA_KEYS_COLUMNS,
    **{model._meta.table_name: frozenset(model._meta.columns) for model in POSTING_MODELS},
}
Shape = dict[str, set[str]]


def refuse_foreign_tables(run: Run, done: list[Step], plan: list[Step]) -> None:
    """MigrationError, before anything is written, when a table `plan` creates exists in another shape.

    A chain's `CREATE TABLE IF NOT EXISTS` would adopt any table of that name: another
    application's, which a later `downgrade` would then drop. The shape the chain builds is
    learnt by building it, with the existing tables renamed aside, in a transaction that is
    rolled back.
    """
    existing = set(run.tables())
    created = created_tables(run, done, plan)
    creators = {table: step for step, tables in created for table in tables if table in existing}
    if not creators:
        return
    built, found = _built_and_found(run, plan, list(creators))
    problems = [
        f"table {table} already exists and is not the one {creators[table].label} creates: "
        + "; ".join(differences)
        for table in creators
        if (differences := _unlike_every_shape(built[plan.index(creators[table]) :], table, found[table]))
    ]
    if problems:
        raise MigrationError(
            "; ".join(problems) + "; nothing was changed (give memoric a database or schema of its own)"
        )


def _unlike_every_shape(shapes: list[dict], table: str, found: dict) -> list[str]:
    """[] when `found` is `table` as one of `shapes` has it (its creator's, or a later migration's).

    Otherwise how it differs from the first: the shape its creator gives it. A table an
    older memoric built from its models, or one already in the shape of the whole plan, is
    memoric's and adopted; the migrations after its creator then bring it to head.
    """
    differences = [catalogue.shape_differences(shape.get(table), found) for shape in shapes]
    return [] if any(not difference for difference in differences) else differences[0]


def created_tables(run: Run, done: list[Step], plan: list[Step]) -> list[tuple[Step, list[str]]]:
    """(migration, the tables it creates) for each of `plan`, from the chains' ORM snapshot."""
    return _replayed(run, done, plan)[0]


def _replayed(run: Run, done: list[Step], plan: list[Step]) -> tuple[list[tuple[Step, list[str]]], set[str]]:
    """(migration, the tables it creates) for each of `plan` replayed after `done`; the tables at the end."""
    migrator = run.migrator(done)
    created = []
    for step in plan:
        before = _snapshot_tables(migrator)
        run.replay(migrator, step)
        created.append((step, sorted(_snapshot_tables(migrator) - before)))
    return created, _snapshot_tables(migrator)


def _snapshot_tables(migrator) -> set[str]:
    return {model._meta.table_name for model in migrator.orm}


def missing_tables(run: Run, done: list[Step], plan: list[Step]) -> dict[Step, list[str]]:
    """{migration of `plan`: the tables it creates that the database lacks}, replayed after `done`.

    A table a later migration of the plan drops again is not expected to exist.
    """
    created, kept = _replayed(run, done, plan)
    existing = set(run.tables())
    missing = {
        step: [table for table in tables if table in kept and table not in existing]
        for step, tables in created
    }
    return {step: tables for step, tables in missing.items() if tables}


def refuse_stamping_missing_tables(run: Run, done: list[Step], plan: list[Step]) -> None:
    """MigrationError when a migration stamped as applied creates a table the database lacks.

    Stamp records history without running anything: it adopts tables that exist. Recording a
    migration whose tables are missing would leave a history at head over a schema that is not there.
    """
    missing = missing_tables(run, done, plan)
    if missing:
        raise MigrationError(
            "cannot stamp "
            + "; ".join(f"{step.label}: {_tables(tables)} not exist" for step, tables in missing.items())
            + "; stamp records migrations as applied without running them, for tables that exist already: "
            "run `memoric migrate upgrade` to build them; nothing was changed"
        )


def refuse_a_store_out_of_sight(run: Run) -> None:
    """ConfigError where the schema memoric uses holds no history but one later on the search
    path does (PostgreSQL's default `"$user", public` once a schema named after the role
    exists): building here would start a second, empty store beside the one agents use."""
    if run.order.done:
        return
    hidden = run.dialect.hidden_schemas_holding(run.database, HISTORY_TABLE)
    if hidden:
        raise ConfigError(
            f"the schema memoric uses (the first on the search path) holds no memoric store, but "
            f"schema {hidden[0]!r}, later on the search path, does: memoric would start a second, "
            "empty store beside it. Put the schema you mean first, e.g. "
            f"?options=-c%20search_path%3D{hidden[0]} in the database URL"
        )


def refuse_recorded_missing_tables(run: Run) -> None:
    """MigrationError when the history records a migration whose tables the database lacks.

    Such a history (a stamp on an empty database) makes every later call fail on a missing table.
    """
    missing = missing_tables(run, [], run.order.done)
    if missing:
        raise MigrationError(
            "; ".join(
                f"the history says {step.label} is applied but {_tables(tables)} not exist"
                for step, tables in missing.items()
            )
            + ": run `memoric migrate stamp base` then `memoric migrate upgrade`"
        )


def _tables(tables: list[str]) -> str:
    """`table x does` or `tables x, y do`, for a sentence ending in `not exist`."""
    if len(tables) == 1:
        return f"table {tables[0]} does"
    return f"tables {', '.join(tables)} do"


def existing_chain_tables(run: Run, steps: list[Step]) -> list[str]:
    """The tables migrations `steps` create (from an empty schema) that exist already."""
    existing = set(run.tables())
    return [table for _, tables in created_tables(run, [], steps) for table in tables if table in existing]


def _built_and_found(run: Run, plan: list[Step], tables: list[str]) -> tuple[list[dict], dict]:
    """The columns of `tables` after each step of `plan`, and the columns they have now; nothing is kept."""
    database, scratch = run.database, run.fresh()
    aside = {table: f"memoric_existing_{number}" for number, table in enumerate(tables)}
    built, running = [], None
    with database.atomic() as transaction:
        try:
            for table, name in aside.items():
                run.dialect.rename_table(database, table, name)
            migrator = scratch.migrator(scratch.done())
            for step in plan:
                running = step
                scratch.routers[step.chain].run_one(step.name, migrator, fake=False)
                running = None
                built.append(run.dialect.columns(database, tables))
            found = run.dialect.columns(database, aside.values())
        except Exception as exc:
            raise MigrationError(_not_compared(tables, running, exc)) from exc
        finally:
            transaction.rollback()
    return built, {table: found[name] for table, name in aside.items()}


def _not_compared(tables: list[str], running: Step | None, exc: Exception) -> str:
    """Why the existing tables could not be compared with what the chain builds: the migration
    that failed building them aside, or what failed before."""
    where = f"cannot compare the existing table(s) {', '.join(tables)} with what the chain builds"
    if running is None:
        return (
            f"{where} ({first_line(exc)}): was the history stamped at a version the schema is not "
            "at? Stamp the version it is at (`memoric migrate stamp VERSION`); nothing was changed"
        )
    return (
        f"{where}: migration {running.label} failed building them aside ({first_line(exc)}). Either "
        "the history was stamped at a version the schema is not at (stamp the version it is at: "
        "`memoric migrate stamp VERSION`), or the migration fails by itself: fix it. Nothing was changed"
    )


def shape(run: Run) -> Shape:
    """{table: its column names} of every table but the chains' histories; of a table derived
    from the memories alone (the metadata keys, the text postings), the columns an application
    added only: dropping memoric's loses nothing the upgrade that adds them does not build again."""
    histories = {router.chain.table for router in run.routers.values()}
    names = [table for table in run.tables() if table not in histories]
    found = run.dialect.columns(run.database, names)
    return {table: set(columns) - DERIVED_COLUMNS.get(table, set()) for table, columns in found.items()}


def dropped(before: Shape, after: Shape) -> list[tuple[str, str | None]]:
    """(table, None) for each table gone from `before` to `after`, (table, column) for each column
    (and for each column an application added to a derived table gone)."""
    gone: list[tuple[str, str | None]] = []
    for table, table_columns in before.items():
        if table in DERIVED_COLUMNS and table not in after:
            gone += [(table, column) for column in sorted(table_columns)]
        elif table not in after:
            gone.append((table, None))
        else:
            gone += [(table, column) for column in sorted(table_columns - after[table])]
    return gone


def holding_data(run: Run, gone: list[tuple[str, str | None]]) -> dict[str, int]:
    """{`table` or `table.column`: rows or non-null values} of what is dropped and not empty."""
    losses = {}
    for table, column in gone:
        if column is None:
            losses[table] = catalogue.count_rows(run.database, table)
        else:
            losses[f"{table}.{column}"] = catalogue.count_values(run.database, table, column)
    return {what: count for what, count in losses.items() if count}
