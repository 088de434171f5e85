"""001: the `memories` and `memory_clusters` tables with all their indexes.

A frozen snapshot: the DDL below is what runs, written out per dialect (JSONB and TIMESTAMPTZ on
PostgreSQL, JSON text and DATETIME on SQLite; GIN indexes on PostgreSQL only), so later changes to
`memoric.db.models` never change what this migration does. Every statement is `IF NOT EXISTS`,
so upgrading a database whose tables already exist adopts them.

The model classes are the ORM snapshot peewee-migrate keeps in `migrator.orm` for later
migrations (`migrator.add_fields("memories", ...)`) and for `memoric migrate revision --auto`;
`_meta.gin_indexes` records the PostgreSQL-only GIN indexes there.
"""

import peewee as pw

SQLITE_TABLES = (
    """CREATE TABLE IF NOT EXISTS "memories" (
        "id" INTEGER NOT NULL PRIMARY KEY,
        "user_id" VARCHAR(128) NOT NULL,
        "namespace" VARCHAR(128),
        "thread_id" VARCHAR(128),
        "content" TEXT NOT NULL,
        "tier" VARCHAR(64) NOT NULL,
        "score" INTEGER NOT NULL DEFAULT 50,
        "metadata" TEXT NOT NULL DEFAULT '{}',
        "related_threads" TEXT NOT NULL DEFAULT '[]',
        "summarized" INTEGER NOT NULL DEFAULT FALSE,
        "created_at" DATETIME NOT NULL,
        "updated_at" DATETIME NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS "memory_clusters" (
        "cluster_id" INTEGER NOT NULL PRIMARY KEY,
        "user_id" VARCHAR(128) NOT NULL,
        "topic" VARCHAR(255) NOT NULL,
        "category" VARCHAR(255) NOT NULL,
        "memory_ids" TEXT NOT NULL DEFAULT '[]',
        "memory_count" INTEGER NOT NULL DEFAULT 0,
        "summary" TEXT NOT NULL DEFAULT '',
        "created_at" DATETIME NOT NULL,
        "updated_at" DATETIME NOT NULL,
        "last_built_at" DATETIME NOT NULL)""",
)

POSTGRES_TABLES = (
    """CREATE TABLE IF NOT EXISTS "memories" (
        "id" SERIAL NOT NULL PRIMARY KEY,
        "user_id" VARCHAR(128) NOT NULL,
        "namespace" VARCHAR(128),
        "thread_id" VARCHAR(128),
        "content" TEXT NOT NULL,
        "tier" VARCHAR(64) NOT NULL,
        "score" INTEGER NOT NULL DEFAULT 50,
        "metadata" JSONB NOT NULL DEFAULT '{}',
        "related_threads" JSONB NOT NULL DEFAULT '[]',
        "summarized" BOOLEAN NOT NULL DEFAULT FALSE,
        "created_at" TIMESTAMPTZ NOT NULL,
        "updated_at" TIMESTAMPTZ NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS "memory_clusters" (
        "cluster_id" SERIAL NOT NULL PRIMARY KEY,
        "user_id" VARCHAR(128) NOT NULL,
        "topic" VARCHAR(255) NOT NULL,
        "category" VARCHAR(255) NOT NULL,
        "memory_ids" JSONB NOT NULL DEFAULT '[]',
        "memory_count" INTEGER NOT NULL DEFAULT 0,
        "summary" TEXT NOT NULL DEFAULT '',
        "created_at" TIMESTAMPTZ NOT NULL,
        "updated_at" TIMESTAMPTZ NOT NULL,
        "last_built_at" TIMESTAMPTZ NOT NULL)""",
)

INDEXES = (
    'CREATE INDEX IF NOT EXISTS "idx_memories_user_thread" ON "memories" ("user_id", "thread_id")',
    'CREATE INDEX IF NOT EXISTS "idx_memories_user_thread_created" ON "memories" '
    '("user_id", "thread_id", "created_at")',
    'CREATE INDEX IF NOT EXISTS "idx_memories_user_tier" ON "memories" ("user_id", "tier")',
    'CREATE INDEX IF NOT EXISTS "idx_memories_tier_updated" ON "memories" ("tier", "updated_at")',
    'CREATE INDEX IF NOT EXISTS "idx_memories_user_tier_updated" ON "memories" '
    '("user_id", "tier", "updated_at")',
    'CREATE INDEX IF NOT EXISTS "idx_memories_user_created" ON "memories" ("user_id", "created_at")',
    'CREATE INDEX IF NOT EXISTS "idx_memories_created" ON "memories" ("created_at")',
    'CREATE UNIQUE INDEX IF NOT EXISTS "idx_cluster_unique" ON "memory_clusters" '
    '("user_id", "topic", "category")',
    'CREATE INDEX IF NOT EXISTS "idx_cluster_user" ON "memory_clusters" ("user_id")',
    'CREATE INDEX IF NOT EXISTS "idx_cluster_topic" ON "memory_clusters" ("topic")',
)

# PostgreSQL only: jsonb_path_ops serves `@>` on metadata; `?|` on related_threads needs jsonb_ops.
GIN_INDEXES = {
    "idx_memories_metadata_gin": ("metadata", "jsonb_path_ops"),
    "idx_memories_related_threads_gin": ("related_threads", "jsonb_ops"),
}
POSTGRES_GIN_INDEXES = tuple(
    f'CREATE INDEX IF NOT EXISTS "{name}" ON "memories" USING GIN ("{column}" {opclass})'
    for name, (column, opclass) in GIN_INDEXES.items()
)

DROP_TABLES = (
    'DROP TABLE IF EXISTS "memory_clusters"',  # its indexes go with it
    'DROP TABLE IF EXISTS "memories"',
)


class JSONDocumentField(pw.Field):
    """Snapshot of memoric's JSON column (JSONB on PostgreSQL, JSON text on SQLite)."""

    field_type = "JSON"


class UTCDateTimeField(pw.Field):
    """Snapshot of memoric's UTC timestamp column (TIMESTAMPTZ on PostgreSQL, DATETIME on SQLite)."""

    field_type = "DATETIME"


class Memory(pw.Model):
    id = pw.AutoField()
    user_id = pw.CharField(max_length=128)
    namespace = pw.CharField(max_length=128, null=True)
    thread_id = pw.CharField(max_length=128, null=True)
    content = pw.TextField()
    tier = pw.CharField(max_length=64)
    score = pw.IntegerField(default=50, constraints=[pw.SQL("DEFAULT 50")])
    metadata = JSONDocumentField(default=dict, constraints=[pw.SQL("DEFAULT '{}'")])
    related_threads = JSONDocumentField(default=list, constraints=[pw.SQL("DEFAULT '[]'")])
    summarized = pw.BooleanField(default=False, constraints=[pw.SQL("DEFAULT FALSE")])
    created_at = UTCDateTimeField()
    updated_at = UTCDateTimeField()

    class Meta:
        table_name = "memories"


class MemoryCluster(pw.Model):
    cluster_id = pw.AutoField()
    user_id = pw.CharField(max_length=128)
    topic = pw.CharField(max_length=255)
    category = pw.CharField(max_length=255)
    memory_ids = JSONDocumentField(default=list, constraints=[pw.SQL("DEFAULT '[]'")])
    memory_count = pw.IntegerField(default=0, constraints=[pw.SQL("DEFAULT 0")])
    summary = pw.TextField(default="", constraints=[pw.SQL("DEFAULT ''")])
    created_at = UTCDateTimeField()
    updated_at = UTCDateTimeField()
    last_built_at = UTCDateTimeField()

    class Meta:
        table_name = "memory_clusters"


Memory.add_index(Memory.user_id, Memory.thread_id, name="idx_memories_user_thread")
Memory.add_index(Memory.user_id, Memory.thread_id, Memory.created_at, name="idx_memories_user_thread_created")
Memory.add_index(Memory.user_id, Memory.tier, name="idx_memories_user_tier")
Memory.add_index(Memory.tier, Memory.updated_at, name="idx_memories_tier_updated")
Memory.add_index(Memory.user_id, Memory.tier, Memory.updated_at, name="idx_memories_user_tier_updated")
Memory.add_index(Memory.user_id, Memory.created_at, name="idx_memories_user_created")
Memory.add_index(Memory.created_at, name="idx_memories_created")
MemoryCluster.add_index(
    MemoryCluster.user_id, MemoryCluster.topic, MemoryCluster.category, name="idx_cluster_unique", unique=True
)
MemoryCluster.add_index(MemoryCluster.user_id, name="idx_cluster_user")
MemoryCluster.add_index(MemoryCluster.topic, name="idx_cluster_topic")


def migrate(migrator, database, *, fake=False):
    """Create both tables and their indexes (the GIN ones on PostgreSQL only)."""
    if isinstance(database, pw.PostgresqlDatabase):
        statements = (*POSTGRES_TABLES, *INDEXES, *POSTGRES_GIN_INDEXES)
    else:
        statements = (*SQLITE_TABLES, *INDEXES)
    for statement in statements:
        migrator.sql(statement)
    Memory._meta.gin_indexes = dict(GIN_INDEXES)
    MemoryCluster._meta.gin_indexes = {}
    for model in (Memory, MemoryCluster):
        model.bind(database)
        migrator.orm.add(model)


def rollback(migrator, database, *, fake=False):
    """Drop both tables, and with them every index of this migration."""
    for statement in DROP_TABLES:
        migrator.sql(statement)
    for model in (Memory, MemoryCluster):
        migrator.orm.remove(migrator.orm[model._meta.table_name])
