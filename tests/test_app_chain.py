"""An application's own migration chain beside memoric's, on SQLite and PostgreSQL.

`memoric migrate revision` used to write into memoric's own chain (the installed
`memoric_migrations` package: lost on reinstall, applied to every database afterwards), and
`--dir` on an empty folder replaced memoric's chain, numbering a new `001`. Now an application
names a directory of its own (config `migrations.app_dir`, $MEMORIC_APP_MIGRATIONS or
`--app-dir`), recorded in `memoric_app_history`; upgrades apply memoric's chain then the
application's, downgrades roll the application's back first, one lock covers both, and targets
may name a chain (`app:base`, `memoric:002`).
"""

from __future__ import annotations

import peewee
import pytest
from click.testing import CliRunner

from memoric import Memoric
from memoric.cli import main
from memoric.db.store import MemoryStore
from memoric.errors import DataLossRefused, MigrationError
from memoric.migrate import APP_HISTORY_TABLE, Migrations
from tests.helpers.app_chain import (
    ADD_FIELD,
    MESSAGE,
    REMOVE_FIELD,
    SENTIMENT,
    SENTIMENT_FILE,
    app_chain,
    app_history,
    both_chains,
    clear_environment,
    fill_in,
    memoric_rows,
    shipped_listing,
)
from tests.helpers.chain import (
    ADD_IMPORTANCE,
    FIRST,
    HEAD,
    LABELS,
    SHIPPED,
    all_rows,
    chain,
    columns,
    history_names,
    schema,
    tables,
)
from tests.helpers.cli_process import run_twice_at_once
from tests.helpers.dialects import one_line_error


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    clear_environment(monkeypatch)


@pytest.fixture
def both(store, tmp_path) -> Migrations:
    return both_chains(store, tmp_path)


# --- the whole workflow, through the command line ----------------------------------------------


def test_the_whole_workflow_through_the_cli(dsn, tmp_path, monkeypatch, model_schema):
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    config = project / "memoric.yaml"
    config.write_text(f"database: {{dsn: '{dsn}'}}\nmigrations: {{app_dir: migrations/app}}\n")
    monkeypatch.chdir(elsewhere)  # a relative app_dir is the config file's, not the working directory's

    def run(*args: str):
        return CliRunner().invoke(main, ["--config", str(config), *args])

    shipped = shipped_listing()
    created = run("migrate", "revision", "-m", MESSAGE)
    path = project / "migrations" / "app" / f"{SENTIMENT}.py"
    assert (created.exit_code, created.stdout) == (0, f"Created {path}\n"), created.output
    assert not (elsewhere / "migrations").exists()
    assert shipped_listing() == shipped, "memoric's chain is untouched"
    fill_in(path)

    assert run("migrate", "pending").stdout.splitlines() == [
        *(f"memoric  {name}" for name in SHIPPED),
        f"app      {SENTIMENT}",
    ]
    preview = run("migrate", "upgrade", "--sql")
    assert preview.exit_code == 0, preview.output
    assert 'ALTER TABLE "memories" ADD COLUMN "sentiment"' in preview.stdout
    assert f'INSERT INTO "{APP_HISTORY_TABLE}"' in preview.stdout
    store = MemoryStore(dsn)
    assert tables(store) == set(), "--sql changes nothing"

    upgraded = run("migrate", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    applied = "".join(f"Applied {name}\n" for name in SHIPPED) + f"Applied app:{SENTIMENT}\n"
    assert upgraded.stdout.startswith(applied)
    assert upgraded.stdout.endswith(f" is at {HEAD} (head); app chain at {SENTIMENT} (head)\n")
    history = run("migrate", "history").stdout.splitlines()
    assert [line.split()[:3] for line in history] == [
        *(["memoric", "applied", name] for name in SHIPPED),
        ["app", "applied", SENTIMENT],
    ]
    assert run("migrate", "current").stdout == f"memoric  {HEAD} (head)\napp      {SENTIMENT} (head)\n"

    with Memoric(config_path=config) as memoric:
        ids = [memoric.save("ada", f"memory {n}", thread_id="t", metadata={"topic": "tea"}) for n in range(3)]
        memoric.db.database.execute_sql('UPDATE "memories" SET "sentiment" = 0.5')
        assert {m["id"] for m in memoric.retrieve("ada", metadata_filter={"topic": "tea"})} == set(ids)
        assert memoric.rebuild_clusters("ada") == 1
        assert memoric.run_policies()["migrated"] == {"short_term": 0, "mid_term": 0}
        assert memoric.forget("ada", [ids[0]]) == 1
        assert memoric.stats()["total"] == 2
    before = memoric_rows(store)

    assert run("migrate", "stamp", "app:base").stdout.endswith("; app chain at base (no migration applied)\n")
    assert "sentiment" in {column[0] for column in columns(store, "memories")}, "stamp runs nothing"
    assert run("migrate", "stamp", "head").exit_code == 0
    assert app_history(store) == [SENTIMENT]

    refused = one_line_error(run("migrate", "downgrade", "app:base"))
    assert "downgrade app:base would drop data: memories.sentiment (2 values)" in refused
    down = run("migrate", "downgrade", "app:base", "--yes")
    assert down.exit_code == 0, down.output
    assert down.stdout.startswith(f"Rolled back app:{SENTIMENT}\n")
    assert down.stdout.endswith(f" is at {HEAD} (head); app chain at base (no migration applied)\n")
    assert app_history(store) == []
    assert history_names(store) == SHIPPED
    assert memoric_rows(store) == before
    assert schema(store) == model_schema, "only the app's column is gone"
    store.close()


# --- memoric gains a migration after the application added its own -----------------------------


def test_memoric_gains_a_migration_after_the_app_added_its_own(store, tmp_path):
    memoric_dir = chain(tmp_path / "memoric")
    app = app_chain(tmp_path / "app", **{SENTIMENT: SENTIMENT_FILE})
    assert Migrations(store, migrate_dir=memoric_dir, app_dir=app).upgrade() == [*SHIPPED, f"app:{SENTIMENT}"]
    ids = [store.insert_memory(user_id="ada", content=f"memory {n}") for n in range(3)]
    store.database.execute_sql('UPDATE "memories" SET "sentiment" = "id" * 0.25')
    sentiments = store.database.execute_sql('SELECT "id", "sentiment" FROM "memories" ORDER BY 1').fetchall()
    before = all_rows(store)

    (memoric_dir / "090_add_importance.py").write_text(ADD_IMPORTANCE, encoding="utf-8")
    later = Migrations(store, migrate_dir=memoric_dir, app_dir=app)
    assert later.names() == [*SHIPPED, "090_add_importance", f"app:{SENTIMENT}"]
    assert later.pending() == ["090_add_importance"]
    with pytest.raises(MigrationError, match=r"1 pending migration\(s\) \(090_add_importance\)"):
        later.ensure_schema()
    assert later.upgrade() == ["090_add_importance"]
    assert (later.current(), later.current("app")) == ("090_add_importance", SENTIMENT)
    assert [(row["chain"], row["name"], row["applied"]) for row in later.history()] == [
        *(("memoric", name, True) for name in [*SHIPPED, "090_add_importance"]),
        ("app", SENTIMENT, True),
    ]
    assert (
        store.database.execute_sql('SELECT "id", "sentiment" FROM "memories" ORDER BY 1').fetchall()
        == sentiments
    )
    assert [m["id"] for m in store.get_memories(user_id="ada")] == ids[::-1]

    assert later.downgrade(confirm_data_loss=True) == [f"app:{SENTIMENT}"], "the app's chain comes last"
    assert later.downgrade(confirm_data_loss=True) == ["090_add_importance"]
    assert later.upgrade() == ["090_add_importance", f"app:{SENTIMENT}"]
    assert later.downgrade("app:base", confirm_data_loss=True) == [f"app:{SENTIMENT}"]
    assert later.downgrade(f"memoric:{HEAD[:3]}", confirm_data_loss=True) == ["090_add_importance"]
    assert all_rows(store) == {
        table: [row[: len(row) - 1] if table == "memories" else row for row in rows]
        for table, rows in before.items()
    }, "memoric's rows are as they were before the app's column"


# --- targets across the two chains ------------------------------------------------------------


def test_targets_across_the_two_chains(both):
    sentiment = f"app:{SENTIMENT}"
    assert both.upgrade("app:+1") == [*SHIPPED, sentiment], "memoric's chain comes first"
    assert both.upgrade("+1") == ["app:002_labels"]
    assert both.downgrade("app:-1") == ["app:002_labels"]
    rolled_back = both.downgrade("memoric:002")
    assert rolled_back == [sentiment, *reversed(SHIPPED[2:])], "the app's chain is rolled back first"
    assert both.upgrade("app:001") == [*SHIPPED[2:], sentiment]
    assert both.upgrade("002_labels") == ["app:002_labels"], "a name only the app chain has"
    assert both.downgrade("app:base") == ["app:002_labels", sentiment]
    assert (both.current(), both.current("app")) == (HEAD, None)
    assert both.upgrade("memoric:head") == []
    assert both.upgrade() == [sentiment, "app:002_labels"]
    assert both.downgrade("memoric:-1") == ["app:002_labels", sentiment, HEAD]
    assert both.downgrade("base") == list(reversed(SHIPPED[:-1]))
    assert both.pending() == [*SHIPPED, sentiment, "app:002_labels"]


@pytest.mark.parametrize(
    ("method", "target", "message"),
    [
        ("upgrade", "001", f"'001' is ambiguous: it matches {FIRST}, app:{SENTIMENT} \\(prefix it with"),
        ("upgrade", "1", f"'1' is ambiguous: it matches {FIRST}, app:{SENTIMENT}"),
        (
            "upgrade",
            "app:003",
            f"unknown migration target 'app:003'.*migrations: app:{SENTIMENT}, app:002_labels$",
        ),
        ("upgrade", "memoric:002_labels", "unknown migration target 'memoric:002_labels'"),
        ("upgrade", "app:+3", r"cannot upgrade app:\+3: only 2 migration\(s\) pending in the app chain"),
        ("upgrade", "app:-1", "goes backwards: use `downgrade app:-1`"),
        ("downgrade", "app:-1", r"only 0 migration\(s\) applied in the app chain"),
        ("downgrade", "app:+1", r"goes forwards: use `upgrade app:\+1`"),
        ("upgrade", "app:", "unknown migration target 'app:'"),
        ("upgrade", "other:head", "unknown migration target 'other:head'"),
        ("stamp", "APP:head", "unknown migration target 'APP:head'"),
    ],
)
def test_bad_targets_name_what_is_wrong(both, method, target, message):
    with pytest.raises(MigrationError, match=message):
        getattr(both, method)(target)
    assert both.current() is None


def test_an_app_target_without_an_app_chain_says_how_to_configure_one(store):
    with pytest.raises(MigrationError, match=r"names the app chain, but no application migrations directory"):
        Migrations(store).upgrade("app:head")
    with pytest.raises(MigrationError, match="MEMORIC_APP_MIGRATIONS"):
        Migrations(store).current("app")


def test_stamp_moves_either_chain_without_ddl(both):
    store = both.store
    both.upgrade()
    built = tables(store)
    assert both.stamp("app:base") == HEAD
    assert app_history(store) == []
    assert both.stamp("app:001") == f"app:{SENTIMENT}"
    assert history_names(store) == SHIPPED and app_history(store) == [SENTIMENT]
    assert both.stamp("head") == "app:002_labels"
    assert both.stamp("memoric:base") is None
    assert (history_names(store), app_history(store)) == ([], [])
    assert tables(store) == built


def test_sql_covers_the_app_chain_and_changes_nothing(both):
    store = both.store
    text = "\n".join(both.sql("upgrade", "head"))
    assert (
        'ALTER TABLE "memories" ADD COLUMN "sentiment"' in text
        and 'CREATE TABLE IF NOT EXISTS "labels"' in text
    )
    assert f"'{SENTIMENT}'" in text and f'"{APP_HISTORY_TABLE}"' in text
    assert tables(store) == set()
    both.upgrade()
    down = "\n".join(both.sql("downgrade", "app:base"))
    assert 'DROP TABLE "labels"' in down and f'DELETE FROM "{APP_HISTORY_TABLE}"' in down
    assert HEAD not in down, "memoric's chain is not touched"
    assert app_history(store) == [SENTIMENT, "002_labels"]


# --- the guards and the history table ------------------------------------------------------------


def test_a_foreign_table_the_app_chain_would_create_is_refused(both):
    store = both.store
    store.database.execute_sql(
        'CREATE TABLE "labels" ("id" INTEGER PRIMARY KEY, "memory_id" INTEGER NOT NULL, '
        '"note" TEXT NOT NULL, "owner" TEXT NOT NULL)'
    )
    with pytest.raises(
        MigrationError, match="table labels already exists and is not the one app:002_labels creates"
    ):
        both.upgrade()
    assert tables(store) == {"labels"}, "nothing was written"


def test_dropping_the_apps_data_needs_a_confirmation(both):
    store = both.store
    both.upgrade()
    store.insert_memory(user_id="ada", content="kept")
    store.database.execute_sql('UPDATE "memories" SET "sentiment" = 1')
    store.database.execute_sql('INSERT INTO "labels" ("id", "memory_id", "note") VALUES (1, 1, \'x\')')
    with pytest.raises(DataLossRefused) as refused:
        both.downgrade("app:base")
    assert refused.value.losses == {"labels": 1, "memories.sentiment": 1}
    assert app_history(store) == [SENTIMENT, "002_labels"]
    assert both.downgrade("app:base", confirm_data_loss=True) == ["app:002_labels", f"app:{SENTIMENT}"]
    assert store.get_memories(user_id="ada")[0]["content"] == "kept"


def test_the_app_history_names_are_unique(both):
    both.upgrade()
    with pytest.raises(peewee.IntegrityError):
        both.store.database.execute_sql(
            f'INSERT INTO "{APP_HISTORY_TABLE}" (name, migrated_at) '
            f"VALUES ('{SENTIMENT}', CURRENT_TIMESTAMP)"
        )


def test_a_failing_app_migration_is_named_and_undone(store, tmp_path):
    broken = SENTIMENT_FILE.replace(
        ADD_FIELD, ADD_FIELD + "\n    migrator.sql('DROP TABLE \"no_such_table\"')"
    )
    migrations = Migrations(store, app_dir=app_chain(tmp_path / "app", **{SENTIMENT: broken}))
    with pytest.raises(MigrationError, match=rf"migration app:{SENTIMENT} failed and was undone.*{HEAD}\]"):
        migrations.upgrade()
    assert history_names(store) == SHIPPED and app_history(store) == []
    assert "sentiment" not in {column[0] for column in columns(store, "memories")}


def test_a_failing_app_migration_on_tables_without_a_history_is_named_not_the_stamp(store, tmp_path):
    """memoric's tables built without a history (from the models, or by an older memoric) are
    compared with what the chains build; the application's migration failing there was blamed on
    a stamp nobody made."""
    store.create_schema()
    store.insert_memory(user_id="ada", content="kept")
    broken = SENTIMENT_FILE.replace(
        ADD_FIELD, ADD_FIELD + "\n    migrator.sql('DROP TABLE \"no_such_table\"')"
    )
    migrations = Migrations(store, app_dir=app_chain(tmp_path / "app", **{SENTIMENT: broken}))
    with pytest.raises(
        MigrationError, match=rf"migration app:{SENTIMENT} failed building them aside"
    ) as failed:
        migrations.upgrade()
    assert "no_such_table" in str(failed.value) and str(failed.value).endswith("Nothing was changed")
    assert "migratehistory" not in tables(store) and app_history(store) == []
    assert store.get_memories(user_id="ada")[0]["content"] == "kept"


@pytest.mark.parametrize(
    ("field", "fills"),
    [
        ('pw.CharField(max_length=20, default="neutral")', False),  # peewee's default: rows there only
        ("pw.CharField(max_length=20, null=True)", True),
        ("pw.CharField(max_length=20, default='neutral', constraints=[pw.SQL(\"DEFAULT 'neutral'\")])", True),
    ],
)
def test_an_app_column_memorics_saves_cannot_fill_is_refused(store, tmp_path, field, fills):
    """A NOT NULL column with no database default made every later save fail; the docs' "or have
    a default" was read as peewee's `default=`, which only fills the rows already there."""
    migration = SENTIMENT_FILE.replace(ADD_FIELD, f'    migrator.add_fields("memories", mood={field})')
    migration = migration.replace(REMOVE_FIELD, '    migrator.remove_fields("memories", "mood")')
    migrations = Migrations(store, app_dir=app_chain(tmp_path / "app", **{SENTIMENT: migration}))
    migrations.upgrade(HEAD)
    store.insert_memory(user_id="ada", content="there before")
    if fills:
        migrations.upgrade()
        assert store.insert_memory(user_id="ada", content="saved after") > 0
        return
    with pytest.raises(
        MigrationError, match=rf"app:{SENTIMENT} failed and was undone.*memories.mood NOT NULL"
    ):
        migrations.upgrade()
    assert app_history(store) == [] and "mood" not in {column[0] for column in columns(store, "memories")}
    assert store.insert_memory(user_id="ada", content="saved after") > 0


@pytest.mark.parametrize(
    ("dialect_only", "statement", "refused"),
    [
        ("sqlite", 'ALTER TABLE "memories" ADD COLUMN "mood" INTEGER NOT NULL DEFAULT (NULL)', True),
        (
            "postgresql",
            'ALTER TABLE "memories" ADD COLUMN "seq" BIGINT GENERATED BY DEFAULT AS IDENTITY',
            False,
        ),
        ("sqlite", 'CREATE INDEX "unrelated" ON "memories" ("tier")', False),
        ("postgresql", 'ALTER TABLE "memories" ALTER COLUMN "namespace" SET NOT NULL', True),
    ],
)
def test_what_the_database_fills_is_told_from_what_it_cannot(
    store, tmp_path, dialect_only, statement, refused
):
    """A NULL default fills nothing (SQLite takes `NOT NULL DEFAULT (NULL)`); an identity column
    is filled by the database though its catalogue lists no default expression; memoric's own
    `namespace`, which it saves NULL when none is given, may not become NOT NULL."""
    if store.dialect.name != dialect_only:
        pytest.skip(f"{dialect_only}'s SQL")
    migration = f"def migrate(migrator, database, *, fake=False):\n    migrator.sql({statement!r})\n"
    migrations = Migrations(store, app_dir=app_chain(tmp_path / "app", **{"001_column": migration}))
    migrations.upgrade(HEAD)
    if refused:
        with pytest.raises(MigrationError, match=r"memories\.(mood|namespace) NOT NULL with no default"):
            migrations.upgrade()
    else:
        assert migrations.upgrade() == ["app:001_column"]
    assert store.insert_memory(user_id="ada", content="saved after") > 0


def test_memorics_chain_is_not_rolled_back_under_an_app_chain_not_in_use(both, cli):
    store = both.store
    both.upgrade()
    without = Migrations(store)
    for call in (lambda m: m.downgrade(), lambda m: m.downgrade("base"), lambda m: m.sql("downgrade", "-1")):
        with pytest.raises(
            MigrationError, match=rf"application migrations {SENTIMENT}, 002_labels are applied"
        ):
            call(without)
    assert "--app-dir DIRECTORY" in one_line_error(cli("migrate", "downgrade", "--yes"))
    assert without.upgrade() == [] and without.downgrade("head") == []
    assert (history_names(store), app_history(store)) == (SHIPPED, [SENTIMENT, "002_labels"])


def test_init_db_builds_memoric_from_the_models_then_runs_the_app_chain(both):
    both.init_db()
    assert history_names(both.store) == SHIPPED
    assert app_history(both.store) == [SENTIMENT, "002_labels"]
    assert "sentiment" in {column[0] for column in columns(both.store, "memories")}
    assert both.upgrade() == []


# --- one lock for both chains ------------------------------------------------------------------------


def test_two_processes_upgrading_both_chains_at_once_apply_each_migration_once(dsn, store, tmp_path):
    app = app_chain(tmp_path / "app", **{SENTIMENT: SENTIMENT_FILE, "002_labels": LABELS})
    stdouts = run_twice_at_once(store, dsn, "--app-dir", str(app), "migrate", "upgrade", cwd=tmp_path)
    assert f"Applied {HEAD}\nApplied app:{SENTIMENT}\nApplied app:002_labels\n" in stdouts[0]
    assert "Nothing to apply" in stdouts[1]
    assert (history_names(store), app_history(store)) == (SHIPPED, [SENTIMENT, "002_labels"])
