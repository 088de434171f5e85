"""Odd input to the migration chain is a MigrationError (one CLI line, exit 1), never a traceback.

Targets take ASCII digits only (`str.isdigit` and `\\d` also accept "²" and "٣", which `int()`
then refused or read as another number); revision messages keep letters of any script and are
cut to a file name the file system takes; a migrations directory holding files that look like
migrations but are not named like them is an error instead of a silently skipped file.
"""

from __future__ import annotations

import ast
import os
import shutil

import pytest
from click.testing import CliRunner

from memoric.cli import main
from memoric.db.store import MemoryStore
from memoric.errors import MemoricError, MigrationError
from memoric.migrate import Migrations
from memoric.migrate.targets import MEMORIC, Order, Step
from tests.helpers.chain import (
    ADD_IMPORTANCE,
    FIRST,
    HEAD,
    SHIPPED,
    chain,
    history_names,
    table_migration,
    tables,
)
from tests.helpers.dialects import one_line_error

ODD_TARGETS = [
    "²",
    "³",
    "٣",
    "３",
    "+²",
    "-٣",
    "+３",
    "00²",
    "+99999999999999999999",
    "-99999999999999999999",
    "99999999999999999999",
    "+" + "9" * 5000,
    "9" * 5000,
    "",
    " ",
    "\t",
    " head",
    "head ",
    "head\n",
    "001\n",
    "+1\n",
    "-0",
    "+0",
    "+-1",
    "0x1",
    "1e3",
    "1.0",
    "1_0",
    "head\x00",
    "HEAD",
    "003_never_reuse_ids.py",
]
METHODS = ["upgrade", "downgrade", "stamp", "sql-upgrade", "sql-downgrade"]
# A few of the odd targets for each entry point; the rule itself is tried on all of them, on the
# plan alone, by test_an_odd_target_is_a_one_line_migration_error.
WIRED_TARGETS = ["²", "-٣", "+３", "", "head\n", "9" * 5000, "-99999999999999999999"]


def call(migrations: Migrations, method: str, target: str):
    if method.startswith("sql-"):
        return migrations.sql(method[4:], target)
    return getattr(migrations, method)(target)


def plan_refusal(method: str, target: str) -> str:
    """The MigrationError a database at FIRST meets for `method` to `target`, from the plan alone."""
    order = Order({MEMORIC: SHIPPED}, [Step(MEMORIC, FIRST)])
    with pytest.raises(MigrationError) as refused:
        getattr(order, method.removeprefix("sql-"))(target)
    return str(refused.value)


@pytest.fixture(scope="module")
def at_first(module_dsn):
    """A database at the first migration, shared by the many target cases (none may change it)."""
    store = MemoryStore(module_dsn)
    Migrations(store).upgrade(FIRST)
    yield store
    store.close()


@pytest.mark.parametrize("target", ODD_TARGETS, ids=ascii)
def test_an_odd_target_is_a_one_line_migration_error(target):
    for method in ("upgrade", "downgrade", "stamp"):
        message = plan_refusal(method, target)
        assert "\n" not in message and len(message) < 1000, (method, message)


@pytest.mark.parametrize("method", METHODS)
def test_the_library_refuses_odd_targets_with_the_plans_message(at_first, method):
    for target in WIRED_TARGETS:
        with pytest.raises(MigrationError) as refused:
            call(Migrations(at_first), method, target)
        assert str(refused.value) == plan_refusal(method, target)
    assert history_names(at_first) == [FIRST]


@pytest.mark.parametrize("command", ["upgrade", "downgrade", "stamp", "upgrade --sql", "downgrade --sql"])
def test_the_cli_refuses_odd_targets_in_one_line(at_first, monkeypatch, command):
    monkeypatch.delenv("MEMORIC_DATABASE_URL", raising=False)
    words = command.split()
    for target in WIRED_TARGETS:
        arguments = ["--dsn", at_first.dsn, "migrate", words[0], target, *words[1:]]
        error = one_line_error(CliRunner().invoke(main, arguments))
        assert error == f"Error: {plan_refusal(words[0], target)}"
    assert history_names(at_first) == [FIRST]


@pytest.mark.parametrize("target", ["10", "010", "0010", "+9", "+09", HEAD])
def test_ascii_numbers_and_names_still_work(store, target):
    migrations = Migrations(store)
    migrations.upgrade(FIRST)
    assert migrations.upgrade(target) == SHIPPED[1:]
    assert migrations.stamp("1") == FIRST


def test_two_migrations_with_one_number_make_that_number_ambiguous(store, tmp_path):
    directory = chain(
        tmp_path / "chain", **{"090_a": ADD_IMPORTANCE, "090_b": ADD_IMPORTANCE.replace("importance", "w")}
    )
    with pytest.raises(MigrationError, match="'090' is ambiguous: it matches 090_a, 090_b"):
        Migrations(store, migrate_dir=directory).upgrade("090")


def test_two_pending_migrations_with_one_number_are_refused_before_either_runs(store, tmp_path):
    directory = chain(
        tmp_path / "chain", **{"090_a": ADD_IMPORTANCE, "090_b": ADD_IMPORTANCE.replace("importance", "w")}
    )
    migrations = Migrations(store, migrate_dir=directory)
    migrations.upgrade(HEAD)
    for target in ("head", "+1", "090_b"):
        with pytest.raises(MigrationError, match="090_a and 090_b share the number 090: two branches"):
            migrations.upgrade(target)
    assert history_names(store) == SHIPPED


@pytest.mark.parametrize("build", ["ensure_schema", "auto_migrate", "init_db"])
def test_every_way_of_applying_migrations_refuses_two_of_one_number(store, tmp_path, build):
    """Not only `upgrade`: a first build, an upgrade on first use and `init-db` judge the chain alike."""
    directory = chain(
        tmp_path / "chain", **{"090_a": ADD_IMPORTANCE, "090_b": ADD_IMPORTANCE.replace("importance", "w")}
    )
    migrations = Migrations(store, migrate_dir=directory)
    if build == "auto_migrate":
        migrations.upgrade(HEAD)
    with pytest.raises(MigrationError, match="090_a and 090_b share the number 090"):
        if build == "init_db":
            migrations.init_db()
        else:
            migrations.ensure_schema(auto_migrate=build == "auto_migrate")
    if build == "auto_migrate":
        assert history_names(store) == SHIPPED
    else:
        assert "memories" not in tables(store)


def test_one_number_applied_twice_already_stays_usable(store, tmp_path):
    """A database that applied both before they were refused keeps working: only what is pending
    is judged."""
    nothing = "def migrate(migrator, database, *, fake=False):\n    pass\n\n\n"
    nothing += "def rollback(migrator, database, *, fake=False):\n    pass\n"
    directory = chain(tmp_path / "chain", **{"090_a": nothing, "090_b": nothing})
    migrations = Migrations(store, migrate_dir=directory)
    migrations.upgrade(HEAD)
    migrations.stamp("090_b")
    assert migrations.upgrade("head") == []
    assert migrations.downgrade(HEAD) == ["090_b", "090_a"]


def test_a_migration_added_behind_the_applied_head_is_refused(store, tmp_path, monkeypatch):
    directory = chain(tmp_path / "chain", **{"095_later": ADD_IMPORTANCE})
    migrations = Migrations(store, migrate_dir=directory)
    migrations.upgrade("head")
    (directory / "092_merged.py").write_text(ADD_IMPORTANCE.replace("importance", "w"), encoding="utf-8")
    refusal = "092_merged is pending but sorts before 095_later, which is applied: the chain gained"
    for target in ("head", "+1", "092"):
        with pytest.raises(MigrationError, match=refusal):
            Migrations(store, migrate_dir=directory).upgrade(target)
    monkeypatch.delenv("MEMORIC_DATABASE_URL", raising=False)
    arguments = ["--dsn", store.dsn, "migrate", "upgrade", "--dir", str(directory)]
    assert one_line_error(CliRunner().invoke(main, arguments)).startswith(f"Error: {refusal}")
    assert history_names(store) == [*SHIPPED, "095_later"]


def test_out_of_order_applies_a_migration_behind_the_applied_head(store, tmp_path, monkeypatch):
    """Two deployments applied two branches' migrations in different orders: each applies the
    one it lacks where it stands, when told to."""
    directory = chain(tmp_path / "chain", **{"095_later": ADD_IMPORTANCE})
    Migrations(store, migrate_dir=directory).upgrade("head")
    (directory / "092_merged.py").write_text(ADD_IMPORTANCE.replace("importance", "w"), encoding="utf-8")
    migrations = Migrations(store, migrate_dir=directory)
    assert any("ADD COLUMN" in sql for sql in migrations.sql("upgrade", "head", out_of_order=True))
    with pytest.raises(MemoricError, match="out_of_order must be True or False"):
        migrations.upgrade("head", out_of_order="yes")
    monkeypatch.delenv("MEMORIC_DATABASE_URL", raising=False)
    arguments = ["--dsn", store.dsn, "migrate", "upgrade", "--dir", str(directory), "--out-of-order"]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Applied 092_merged\n")
    assert history_names(store) == [*SHIPPED, "095_later", "092_merged"]


def test_renumbered_applied_migrations_are_named_with_the_statements_that_record_them(store, tmp_path):
    directory = chain(
        tmp_path / "chain",
        **{"090_add_score": ADD_IMPORTANCE, "092_add_w": ADD_IMPORTANCE.replace("importance", "w")},
    )
    Migrations(store, migrate_dir=directory).upgrade("head")
    (directory / "090_add_score.py").rename(directory / "091_add_score.py")
    (directory / "092_add_w.py").rename(directory / "093_add_w.py")
    updates = [
        "UPDATE migratehistory SET name = '091_add_score' WHERE name = '090_add_score'",
        "UPDATE migratehistory SET name = '093_add_w' WHERE name = '092_add_w'",
    ]
    renamed = r"they look renumbered \(090_add_score to 091_add_score, 092_add_w to 093_add_w:"
    with pytest.raises(MigrationError, match=renamed) as refused:
        Migrations(store, migrate_dir=directory).current()
    assert str(refused.value).endswith("; ".join(updates))
    for update in updates:
        store.database.execute_sql(update)
    assert Migrations(store, migrate_dir=directory).current() == "093_add_w"


def test_an_applied_migration_copied_under_another_number_is_not_applied_again(store, tmp_path, monkeypatch):
    """`cp` where `mv` was meant: the copy would run the migration a second time."""
    counted = table_migration("runs", '"n" INTEGER', adopt=True, then='INSERT INTO "runs" VALUES (1)')
    directory = chain(tmp_path / "chain", **{"090_count": counted})
    Migrations(store, migrate_dir=directory).upgrade("head")
    shutil.copy(directory / "090_count.py", directory / "091_count.py")
    copy = "091_count is pending and a copy of 090_count, which is applied"
    for call in (lambda m: m.upgrade("head"), lambda m: m.ensure_schema(auto_migrate=True)):
        with pytest.raises(MigrationError, match=copy):
            call(Migrations(store, migrate_dir=directory))
    monkeypatch.delenv("MEMORIC_DATABASE_URL", raising=False)
    arguments = ["--dsn", store.dsn, "migrate", "upgrade", "--dir", str(directory)]
    assert one_line_error(CliRunner().invoke(main, arguments)).startswith(f"Error: {copy}")
    assert store.database.execute_sql('SELECT COUNT(*) FROM "runs"').fetchone()[0] == 1
    (directory / "091_count.py").write_text(counted.replace("VALUES (1)", "VALUES (2)"), encoding="utf-8")
    assert Migrations(store, migrate_dir=directory).upgrade("head") == [
        "091_count"
    ]  # edited: its own migration


# --- revision: messages become file names -----------------------------------------------------


@pytest.mark.parametrize(
    "message", ['say "hi" \\o/', "C:\\new\\table", 'ends with a quote"', '""" and \\"""']
)
def test_revision_keeps_the_message_in_its_docstrings_as_given(store, tmp_path, message):
    path = Migrations(store, app_dir=tmp_path / "app").create(message)
    module = ast.parse(path.read_text(encoding="utf-8"))
    functions = {
        node.name: ast.get_docstring(node) for node in module.body if isinstance(node, ast.FunctionDef)
    }
    assert ast.get_docstring(module).splitlines()[0] == message
    assert functions == {"migrate": f"Apply: {message}", "rollback": f"Undo: {message}"}


@pytest.mark.parametrize(
    ("message", "name"),
    [
        ("é", "001_é.py"),
        ("Ajouter l'élément", "001_ajouter_l_élément.py"),
        ("データを追加", "001_データを追加.py"),
        ("e\u0301te\u0301", "001_été.py"),  # decomposed accents become the composed letters
        ("add\x00 nul\x1b[31m", "001_add_nul_31m.py"),
        ("x²", "001_x².py"),
    ],
)
def test_revision_keeps_letters_of_any_script(store, tmp_path, message, name):
    directory = tmp_path / "app"
    path = Migrations(store, app_dir=directory).create(message)
    assert path.name == name
    compile(path.read_text(encoding="utf-8"), str(path), "exec")
    assert Migrations(store, app_dir=directory).upgrade() == [*SHIPPED, f"app:{path.stem}"]


@pytest.mark.parametrize("message", ["a" * 300, "é" * 300, "日本" * 200, "word " * 100])
def test_revision_of_a_long_message_is_cut_to_a_file_name_that_fits(cli, store, tmp_path, message):
    directory = tmp_path / "app"
    result = cli("--app-dir", str(directory), "migrate", "revision", "-m", message)
    assert result.exit_code == 0, result.output
    (path,) = directory.glob("001_*.py")
    assert len(path.name.encode()) <= 100
    assert f"{message[:20]}" in path.read_text(encoding="utf-8"), "the whole message stays in the docstring"
    assert cli("--app-dir", str(directory), "migrate", "upgrade").exit_code == 0


@pytest.mark.parametrize("message", ["!!!", "  ", "—", "🙂", ""])
def test_revision_needs_letters_or_digits(cli, tmp_path, message):
    directory = tmp_path / "app"
    assert "letters or digits" in one_line_error(
        cli("--app-dir", str(directory), "migrate", "revision", "-m", message)
    )
    assert not directory.exists()


def test_revision_that_cannot_write_its_file_is_one_line_and_leaves_nothing(cli, tmp_path):
    """A directory path so long that the new file's path passes PATH_MAX (ENAMETOOLONG)."""
    directory = tmp_path
    while len(str(directory)) < 4080:
        directory = directory / ("d" * min(200, 4080 - len(str(directory)) - 1))
    os.makedirs(directory)
    error = one_line_error(cli("--app-dir", str(directory), "migrate", "revision", "-m", "add importance"))
    assert "cannot create" in error and "nothing written" in error
    assert os.listdir(directory) == []


# --- odd file names in a migrations directory ---------------------------------------------------


@pytest.mark.parametrize(
    "odd",
    [
        "4_importance.py",
        "0005_importance.py",
        "004-importance.py",
        "090_importance.PY",
        "005_a.b.py",
        "٠٠٤_importance.py",
        "090_importance.py\n",
        "005_tab\there.py",
        "090_importance.py/",
    ],
    ids=ascii,
)
def test_a_file_that_looks_like_a_migration_but_is_not_named_like_one_is_an_error(cli, store, tmp_path, odd):
    directory = chain(tmp_path / "chain")
    if odd.endswith("/"):
        (directory / odd.rstrip("/")).mkdir()
    else:
        (directory / odd).write_text(ADD_IMPORTANCE, encoding="utf-8")
    with pytest.raises(MigrationError, match=r"look like migrations but are not files named NNN_name\.py"):
        Migrations(store, migrate_dir=directory).upgrade()
    assert Migrations(store).current() is None
    assert "rename or remove" in one_line_error(cli("migrate", "pending", "--dir", str(directory)))


def test_other_files_in_a_migrations_directory_are_left_alone(store, tmp_path):
    directory = chain(tmp_path / "chain")
    for name in ("__init__.py", "README.md", "helpers.py", "005_notes.txt", ".005_hidden.py.swp"):
        (directory / name).write_text("", encoding="utf-8")
    assert Migrations(store, migrate_dir=directory).upgrade() == SHIPPED
