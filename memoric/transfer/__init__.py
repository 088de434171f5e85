"""Export, import and copy: whole databases as JSON Lines, between any two dialects, beside live agents.

An export is one header line (format, format version, schema version), then one line per
memory, then one per cluster, all read page by page inside one snapshot of the database, so it
shows a single point in time however long it takes and whatever agents write meanwhile.

An import (and a copy, whose source is read inside one snapshot) goes over its rows three times:

1. check: every row is validated as the store would validate it; a file naming one id, or one
   cluster (user_id, topic, category), twice with different data is refused, naming both lines
   (a row repeated with the same JSON, key order aside, is read once); so is a cluster listing a
   memory the file holds for another user_id. Nothing is written.
2. compare, reserve, compare: every row whose id (or cluster key) is already in the target is
   compared with it, field by field and type-exactly (true is not 1, 1 is not 1.0; a field the
   line leaves out counts as its default, a timestamp left out as whatever the target holds).
   Any difference refuses the import, naming the line, with nothing written and no id counter
   moved; so does a cluster listing a memory that is not in the file and not the same user_id's
   in the target. A target whose schema is not built counts as empty and stays unbuilt. Then
   the target's id counters are raised past the file's highest ids under a short lock, never
   lowered (a block of new ids that would pass the largest id, 2**63 - 1, is refused before
   any counter moves), so a memory or cluster an agent saves meanwhile gets an id above them;
   and the rows are compared again, for rows written in between (a refusal then may leave a
   counter raised: ids are never given twice, so a gap is harmless).
3. write: batches, one transaction each; a row whose id is taken meanwhile is compared again and
   a difference rolls its batch back and stops the import, naming it. Nothing is skipped unseen.

Importing the same file twice changes nothing, and an import that was interrupted completes when
run again. With `new_ids` every memory and cluster gets a fresh id instead, from a block
reserved the same way, and each cluster's memory_ids follow its memories; such an import adds
the export again each time it runs, so one that stops takes back what it wrote.

The package: `lines` (an export's lines read, parsed and spooled), `records` (records and
their JSON forms), `plan` (the check pass), `writing` (the reserve, compare and write passes;
import and copy), `export`, `copying` (both ends of a copy opened through the facade) and
`leftovers` (the application's own data, which neither an export nor a copy carries).
"""

from memoric.transfer.copying import copy_memoric, copy_size, open_copy
from memoric.transfer.export import export_jsonl, export_memoric
from memoric.transfer.lines import FORMAT, FORMAT_VERSION, rereadable
from memoric.transfer.plan import ImportPlan
from memoric.transfer.records import BATCH_SIZE, Progress, Record, same_json
from memoric.transfer.writing import (
    NotTakenBack,
    check_jsonl,
    compare_with_target,
    copy_database,
    import_checked,
    import_jsonl,
    import_memoric,
)

__all__ = [
    "BATCH_SIZE",
    "FORMAT",
    "FORMAT_VERSION",
    "ImportPlan",
    "NotTakenBack",
    "Progress",
    "Record",
    "check_jsonl",
    "compare_with_target",
    "copy_database",
    "copy_memoric",
    "copy_size",
    "export_jsonl",
    "export_memoric",
    "import_checked",
    "import_jsonl",
    "import_memoric",
    "open_copy",
    "rereadable",
    "same_json",
]
