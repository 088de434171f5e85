"""What every command shares: the global options, resolved once, and the Memoric they select."""

from __future__ import annotations

import functools
from pathlib import Path

from memoric.commands.output import echo
from memoric.config import load_config
from memoric.core import Memoric
from memoric.db.connection import SQLITE_WARNING, sqlite_warning_wanted


class Session:
    """The database and configuration one `memoric` run works on.

    `--dsn`, `--config` and `--app-dir` are read once, on first use (a command that needs no
    database resolves none): the configuration, then the `Memoric`, which resolves the database
    URL (--dsn > $MEMORIC_DATABASE_URL > config > the default SQLite file) and the application's
    migration chain. Set `auto_migrate` before the first use of
    `memoric` to bring a database behind head up to date, and `create` to build one not there
    yet (the commands that bring data: a mistyped path must not become an empty database).
    """

    def __init__(
        self, dsn: str | None = None, config_path: str | None = None, app_dir: str | None = None
    ) -> None:
        self.dsn_option = dsn
        self.config_path = config_path
        self.app_dir_option = app_dir
        self.auto_migrate = False
        self.create = False

    @functools.cached_property
    def config(self) -> dict:
        """The validated configuration: the defaults, overlaid with the --config file."""
        return load_config(self.config_path)

    @functools.cached_property
    def memoric(self) -> Memoric:
        """The Memoric on the selected database (its schema checked at its first data operation)."""
        return Memoric(
            self.dsn_option,
            config=self.config,
            auto_migrate=self.auto_migrate,
            app_dir=self.app_dir_option,
            create=self.create,
        )

    @property
    def app_dir(self) -> Path | None:
        """The application's migration chain (--app-dir > $MEMORIC_APP_MIGRATIONS > config > none)."""
        return self.memoric.migrations.app_dir

    def echo_sqlite_warning(self) -> None:
        """The SQLite warning on stderr (init-db, demo, stats), unless config or environment silence it."""
        store = self.memoric.store
        path = store.database_file
        if path is not None and sqlite_warning_wanted(self.config["database"]["sqlite_warning"]):
            echo("Warning: " + SQLITE_WARNING % path, err=True)
