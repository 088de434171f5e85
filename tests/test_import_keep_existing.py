"""`import --keep-existing`: finish an import cut short, or restore a backup, over rows changed since.

An import compares every memory the target already holds with the file's and refuses a
difference, so an import cut short and then changed (a policy run moved its rows to another
tier) could not be finished, and the `--new-ids` its error offered added every memory twice.
With `keep_existing`, a memory the target holds under the file's id for the same user is kept
as it is there; what is missing comes in; another memory under that id (another user, thread or
creation time: what no edit changes) still refuses.
"""

from __future__ import annotations

import io

import pytest
from click.testing import CliRunner

from memoric import Memoric
from memoric.cli import main
from memoric.db.summaries import SUMMARY_METADATA
from memoric.errors import MemoricError, ValidationError
from memoric.transfer import export_jsonl, import_jsonl


def backup_of(memoric: Memoric) -> str:
    out = io.StringIO()
    export_jsonl(memoric.db, out)
    return out.getvalue()


@pytest.fixture
def cut_short(new_dsn):
    """(the file, a target holding its first 25 of 40 memories, 5 of them moved to long_term since)."""
    source = Memoric(new_dsn())
    for n in range(40):
        source.save(f"user{n % 2}", f"memory {n}", thread_id=f"t{n % 4}", metadata={"topic": f"x{n % 3}"})
    source.rebuild_clusters()
    backup = backup_of(source)
    target = Memoric(new_dsn())
    import_jsonl(target.db, io.StringIO(backup))
    target.db.delete_memories(memory_ids=list(range(26, 41)))  # as if never written
    target.db.update_tier(memory_ids=[1, 2, 3, 4, 5], new_tier="long_term")  # a policy run, say
    yield backup, target
    source.close()
    target.close()


def test_an_import_cut_short_and_changed_since_is_refused_naming_the_way_to_finish_it(cut_short):
    backup, target = cut_short
    with pytest.raises(ValidationError) as refused:
        import_jsonl(target.db, io.StringIO(backup))
    assert "memory id 1 is already in the target with other data (differing: tier, updated_at)" in str(
        refused.value
    )
    assert "`--keep-existing` (in Python, keep_existing=True) keeps it as it is now" in str(refused.value)
    assert target.db.count_memories() == 25


def test_keeping_existing_memories_brings_in_the_missing_ones_and_keeps_the_changed_ones(cut_short):
    backup, target = cut_short
    counts = import_jsonl(target.db, io.StringIO(backup), keep_existing=True)
    assert counts["memories"] == 15
    memories = target.db.get_memories(limit=None)
    assert sorted(m["content"] for m in memories) == sorted(f"memory {n}" for n in range(40))
    assert {m["id"] for m in memories if m["tier"] == "long_term"} == {1, 2, 3, 4, 5}
    assert import_jsonl(target.db, io.StringIO(backup), keep_existing=True)["memories"] == 0


def test_another_users_memory_under_a_files_id_still_refuses_the_file(new_dsn, cut_short):
    backup, _ = cut_short
    other = Memoric(new_dsn())
    other.save("zoe", "zoe's own")
    with pytest.raises(ValidationError, match=r"\(another user, thread or creation time\) holds"):
        import_jsonl(other.db, io.StringIO(backup), keep_existing=True)
    assert [m["content"] for m in other.db.get_memories()] == ["zoe's own"]
    other.close()


def test_keeping_existing_memories_and_new_ids_exclude_each_other(cut_short):
    backup, target = cut_short
    with pytest.raises(ValidationError, match="new ids and keeping existing memories exclude each other"):
        import_jsonl(target.db, io.StringIO(backup), keep_existing=True, new_ids=True)
    assert target.db.count_memories() == 25


def test_the_cli_keeps_existing_memories_and_says_the_clusters_were_left_out(cut_short, tmp_path):
    backup, target = cut_short
    path = tmp_path / "backup.jsonl"
    path.write_text(backup)
    result = CliRunner().invoke(main, ["--dsn", target.db.dsn, "import", "--keep-existing", str(path)])
    assert result.exit_code == 0, result.output
    assert "Imported 15 memories and 0 clusters into" in result.stdout
    assert "; 25 already there, skipped" in result.stdout
    assert "Left out the file's " in result.stdout and "run `memoric clusters --rebuild`" in result.stdout
    assert target.db.count_memories() == 40


def summarized_thread(memoric: Memoric) -> tuple[list[int], int]:
    """Three memories of thread t and their summary, as a policy run leaves them: (sources, summary)."""
    sources = [memoric.save("ada", f"fact {n}", thread_id="t") for n in range(3)]
    summary = memoric.save("ada", "fact 0, fact 1, fact 2", thread_id="t", metadata=SUMMARY_METADATA)
    memoric.db.mark_summarized(memory_ids=sources)
    return sources, summary


def recalled(memoric: Memoric) -> list[str]:
    return sorted(m["content"] for m in memoric.retrieve("ada", thread_id="t", top_k=10))


def test_a_summary_whose_sources_changed_since_is_not_brought_back_beside_them(new_dsn):
    """The restored summary held the text from before an edit, beside its unmarked sources, and
    the next policy run wrote a second one: recall returned both."""
    memoric = Memoric(new_dsn())
    sources, summary = summarized_thread(memoric)
    backup = backup_of(memoric)
    memoric.db.update_content(memory_id=sources[0], new_content="fact 0, corrected")  # releases the summary
    counts = import_jsonl(memoric.db, io.StringIO(backup), keep_existing=True)
    assert counts["memories"] == 1 and counts["summaries_released"] == 1
    assert memoric.db.get_memory(summary) is None
    assert recalled(memoric) == ["fact 0, corrected", "fact 1", "fact 2"]
    memoric.close()


def test_memories_marked_summarized_never_stay_hidden_without_their_summary(new_dsn):
    """An import cut short before the summary's line, then changed: its sources stayed marked
    (hidden from recall) and the summary was left out, or came back holding the older text."""
    memoric = Memoric(new_dsn())
    sources, summary = summarized_thread(memoric)
    backup = backup_of(memoric)
    memoric.db.delete_memories(memory_ids=[summary])  # as if the import stopped before it ...
    memoric.db.mark_summarized(memory_ids=sources)
    memoric.db.update_tier(memory_ids=[sources[1]], new_tier="long_term")  # ... and a policy ran
    counts = import_jsonl(memoric.db, io.StringIO(backup), keep_existing=True)
    assert counts["summaries_released"] == 1
    assert memoric.db.count_memories(summarized=True) == 0
    assert recalled(memoric) == ["fact 0", "fact 1", "fact 2"]
    memoric.close()


def test_a_memory_that_took_a_files_id_since_is_not_taken_for_the_files(new_dsn):
    """A backup restored, a policy run's summary then drew the next id, and a newer backup holding
    another memory under that id was imported with keep_existing: the file's memory was taken
    for kept, and the release then deleted the summary: the memory was nowhere, exit 0."""
    source = Memoric(new_dsn())
    for n in range(6):
        source.save("ada", f"fact {n}", thread_id="t")
    first = backup_of(source)
    later = [source.save("ada", f"fact {n}", thread_id="t") for n in range(6, 9)]
    second = backup_of(source)
    target = Memoric(new_dsn())
    import_jsonl(target.db, io.StringIO(first))
    drawn = target.save("ada", "a summary a policy run wrote", thread_id="t", metadata=SUMMARY_METADATA)
    assert drawn == later[0]
    with pytest.raises(ValidationError, match=f"memory id {drawn} is already in the target with other data"):
        import_jsonl(target.db, io.StringIO(second), keep_existing=True)
    assert target.db.count_memories() == 7
    source.close()
    target.close()


@pytest.mark.parametrize(
    "constraint, named",
    [
        ('CREATE UNIQUE INDEX "one_content" ON "memories" ("content")', "content"),
        ('CREATE UNIQUE INDEX "one_content" ON "memories" (lower("content"))', "one_content"),
    ],
)
def test_an_applications_unique_index_refusing_a_row_is_named_not_taken_for_a_writer(
    new_dsn, constraint, named
):
    """The import skipped a row whose key the table held, any key: one the application's own
    index refused was skipped too, then missed, and the error blamed "another writer", whose
    advice (run the import again) failed the same way every time."""
    source = Memoric(new_dsn())
    source.save("ada", "the same words")
    target = Memoric(new_dsn())
    target.save("ada", "the same words")
    target.db.database.execute_sql(constraint)
    with pytest.raises(MemoricError) as refused:
        import_jsonl(target.db, io.StringIO(backup_of(source)), new_ids=True)
    message = str(refused.value)
    assert "another writer" not in message and named in message.lower()
    assert [m["content"] for m in target.db.get_memories(limit=None)] == ["the same words"]
    source.close()
    target.close()
