"""memoric's versioned schema: a peewee-migrate chain run safely (see `Migrations`).

- `targets`: target parsing and the upgrade, downgrade and stamp plans (no database);
- `chains`: a chain (memoric's, or an application's own) on disk and its history table;
- `runner`: peewee-migrate's Router and Migrator under the lock, applying migrations;
- `guards`: no foreign table adopted, no data dropped unconfirmed;
- `preview`: the `--sql` statements of a run (run, then rolled back);
- `authoring`: new migration files, blank or drafted from the models;
- `migrations`: `Migrations`, the public API over all of them.
"""

from memoric.migrate.chains import APP_HISTORY_TABLE, HISTORY_TABLE, default_migrate_dir, history_model
from memoric.migrate.migrations import NOT_CREATED, Migrations
from memoric.migrate.runner import LOCK_NAME
from memoric.migrate.targets import APP, MEMORIC

__all__ = [
    "APP",
    "APP_HISTORY_TABLE",
    "HISTORY_TABLE",
    "LOCK_NAME",
    "MEMORIC",
    "NOT_CREATED",
    "Migrations",
    "default_migrate_dir",
    "history_model",
]
