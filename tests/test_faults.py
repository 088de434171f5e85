"""A process killed mid-write leaves whole batches only, and the next run completes."""

from __future__ import annotations

import signal
import subprocess
import sys

BATCH = 1000

BULK_WRITER = """
import sys
from memoric.db.store import MemoryStore
store = MemoryStore(sys.argv[1])
for b in range(1000):
    rows = [{"user_id": "ada", "content": f"b{b} r{r}", "metadata": {"b": b}} for r in range(1000)]
    store.insert_memories(rows)
    print(f"batch {b}", flush=True)
"""


def test_sigkill_during_bulk_insert_keeps_whole_batches(db, dialect):
    writer = subprocess.Popen([sys.executable, "-c", BULK_WRITER, db.dsn], stdout=subprocess.PIPE, text=True)
    for _ in range(3):
        assert writer.stdout.readline().startswith("batch")
    writer.send_signal(signal.SIGKILL)
    writer.wait()

    count = db.count_memories()
    assert count >= 3 * BATCH and count % BATCH == 0
    batches = {m["metadata"]["b"] for m in db.get_memories(limit=None)}
    assert batches == set(range(count // BATCH))
    if dialect == "sqlite":
        assert db.database.execute_sql("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.insert_memories([{"user_id": "ada", "content": "after the crash"}]) == 1
    assert db.count_memories() == count + 1
