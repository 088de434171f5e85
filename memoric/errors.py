"""The exceptions memoric raises: one base class, a subclass per kind of failure."""


class MemoricError(Exception):
    """Base class of every error memoric raises on purpose."""


class ValidationError(MemoricError, ValueError):
    """Bad input: the message names the field or value at fault; nothing was written."""


class ConfigError(MemoricError):
    """A bad configuration file, key, value or database URL."""


class MigrationError(MemoricError):
    """An unknown migration target, a failed migration, or a schema that is not at head."""


class LockTimeout(MemoricError):
    """A lock (migration chain, policy run) could not be taken in the time allowed."""


class CommitInDoubt(MemoricError):
    """The connection was lost while a COMMIT was under way: the server may have saved the change
    before its answer was lost, or not. Look before retrying: a save retried blindly may be
    saved twice."""


class PartlyInserted(MemoricError):
    """A bulk insert that failed after some of its batches were committed. `inserted` is how many
    rows were saved: the first ones given (`saved` says which), which a retry must leave out or
    save twice. `in_doubt` rows, those after them, went with a COMMIT whose answer the lost
    connection never brought: whether they were saved is not known."""

    def __init__(self, reason: str, inserted: int, saved: str, in_doubt: int = 0) -> None:
        self.inserted = inserted
        self.saved = saved
        self.in_doubt = in_doubt
        doubt = (
            f"; whether the {in_doubt} rows after those were saved is not known (the connection was "
            "lost during their COMMIT): look for them before retrying"
            if in_doubt
            else ""
        )
        super().__init__(
            f"{reason}; {saved} had been saved before it, a transaction per batch{doubt}: call again "
            "with the rows after those (the same rows again would save those twice)"
        )

    def __reduce__(self):
        return _partly_inserted, (str(self), self.inserted, self.saved, self.in_doubt)


def _partly_inserted(message: str, inserted: int, saved: str, in_doubt: int) -> PartlyInserted:
    """A PartlyInserted unpickled, its message as it was."""
    error = PartlyInserted("", inserted, saved, in_doubt)
    error.args = (message,)
    return error


class SummarizerFailed(MemoricError):
    """The summarizer raised, or returned no text, on some threads; everything else of the policy
    run was applied. `counts` is what the run did (as `run_policies` returns it), `failures` a
    list of (user_id, namespace, thread_id, exception), in the order the threads came, and
    `untried` how many threads it was not asked for, as it kept failing (`gave_up`)."""

    def __init__(self, counts: dict, failures: list[tuple], untried: int = 0) -> None:
        self.counts = counts
        self.failures = list(failures)
        self.untried = untried
        first = ""
        if self.failures:
            user_id, _, thread_id, exc = self.failures[0]
            first = f"; the first: user {user_id!r}, thread {thread_id!r}: {said(exc)}"
        left = f"; it kept failing, so {untried} more thread(s) were not tried" if untried else ""
        super().__init__(
            f"the summarizer failed on {len(self.failures)} thread(s), which stay unsummarized until a "
            f"run succeeds{left}; the rest of the run was applied ({counts}){first}"
        )

    @property
    def gave_up(self) -> bool:
        """Whether threads were left untried: the summarizer looked down."""
        return self.untried > 0

    def __reduce__(self):
        """Rebuilt from plain copies of the failures: the summarizer's own exceptions need not
        survive pickling (a process pool sends this error back)."""
        failures = [(*where, said(exc)) for *where, exc in self.failures]
        return _summarizer_failed, (self.counts, failures, self.untried)


class ReportedFailure(RuntimeError):
    """A summarizer's exception as `SummarizerFailed` reported it (`Type: text`), once pickled."""


def _summarizer_failed(counts: dict, failures: list[tuple], untried: int) -> SummarizerFailed:
    """A SummarizerFailed unpickled: each failure a ReportedFailure of what its exception said."""
    return SummarizerFailed(counts, [(*where, ReportedFailure(text)) for *where, text in failures], untried)


def message_lines(text: str) -> list[str]:
    """The lines of an error's text, broken where its writer broke them (at a newline or a
    carriage return): `str.splitlines` also breaks at characters a stored name may hold (U+0085,
    U+2028, form feed), and the reason after one was lost."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def said(exc: BaseException) -> str:
    """`Type: first line of its text` (at most 200 characters), even when its `__str__` fails;
    a failure reported so before, as it was."""
    if isinstance(exc, ReportedFailure):
        return str(exc)
    try:
        text = str.__str__(str(exc))  # a str subclass's own methods may fail too
    except Exception:
        return f"{type(exc).__name__}: (its text could not be read)"
    first = next((line.strip() for line in message_lines(text) if line.strip()), "")
    return f"{type(exc).__name__}: {first[:200]}"


class DataLossRefused(MigrationError):
    """A downgrade that would drop tables or columns holding data, refused for want of confirmation.

    `losses` maps what would go (`table`, or `table.column`) to the rows (values) it holds.
    """

    def __init__(self, target: str, losses: dict[str, int]) -> None:
        self.target = target
        self.losses = dict(losses)
        super().__init__(
            f"downgrade {target} would drop data: {describe_losses(self.losses)}; nothing was changed "
            "(confirm with confirm_data_loss=True, or --yes on the command line)"
        )


def describe_losses(losses: dict[str, int]) -> str:
    """`memories (24 rows), memories.importance (3 values)`: what a downgrade would drop."""
    parts = []
    for what, count in losses.items():
        unit = "value" if "." in what else "row"
        parts.append(f"{what} ({count} {unit}{'' if count == 1 else 's'})")
    return ", ".join(parts)
