"""Copying between two databases through the facade: both ends opened and checked, then copied."""

from __future__ import annotations

import shlex

from memoric import arguments
from memoric.core import Memoric
from memoric.db import recall_queries
from memoric.db.connection import database_exists
from memoric.db.identity import same_database
from memoric.db.masking import mask_url
from memoric.errors import ConfigError, MigrationError, ValidationError
from memoric.transfer.leftovers import refuse_leaving_behind
from memoric.transfer.records import BATCH_SIZE, Progress
from memoric.transfer.writing import copy_database


def open_copy(
    source_dsn: str, target_dsn: str, *, config_path=None, app_dir=None, memoric_only: bool = False
) -> tuple[Memoric, Memoric]:
    """The two ends of a copy: a source at head (nothing is written to it), a target built or at head.

    A target that is the source under another URL (another path to the file, another name of
    the server) is refused before it is opened, and so is a source holding the application's
    own data unless `memoric_only` (the copy checks again in its snapshot). `app_dir` is the
    application's migration chain, for both ends (default: as `Memoric` resolves it).
    """
    if not database_exists(source_dsn):
        raise ConfigError(f"the source database {mask_url(source_dsn)} does not exist")
    source = Memoric(source_dsn, config_path, app_dir=app_dir)
    if same_database(source.store.database, target_dsn):
        raise ValidationError("the source and the target are the same database")
    pending = source.migrations.pending()
    if pending and source.migrations.current() is None:
        raise MigrationError(f"the source {mask_url(source_dsn)} holds no memoric schema")
    if pending:
        app = source.migrations.app_dir
        with_app = f" --app-dir {shlex.quote(str(app))}" if app is not None else ""
        raise MigrationError(
            f"the source {mask_url(source_dsn)} is behind head ({', '.join(pending)} pending): "
            f"run `memoric --dsn SOURCE{with_app} migrate upgrade` first"
        )
    refuse_leaving_behind(source.db, "a copy", memoric_only)
    target = Memoric(target_dsn, config_path, app_dir=app_dir)
    target.ensure_schema()
    return source, target


def copy_size(memoric: Memoric) -> int:
    """How many rows (memories and clusters) a copy of this database moves: the progress total."""
    arguments.instance("memoric", memoric, Memoric)
    stats = recall_queries.memory_stats(memoric.db)
    return stats["total"] + stats["clusters"]


def copy_memoric(
    source: Memoric,
    target: Memoric,
    *,
    batch_size: int = BATCH_SIZE,
    progress: Progress | None = None,
    memoric_only: bool = False,
) -> dict[str, int]:
    """`copy_database` between two Memorics opened with `open_copy`."""
    arguments.instance("source", source, Memoric)
    arguments.instance("target", target, Memoric)
    return copy_database(
        source.db, target.db, batch_size=batch_size, progress=progress, memoric_only=memoric_only
    )
