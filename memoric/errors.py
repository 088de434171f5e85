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


class SummarizerFailed(MemoricError):
    """The summarizer raised, or returned no text, on some threads; everything else of the policy
    run was applied. `counts` is what the run did (as `run_policies` returns it), `failures` a
    list of (user_id, namespace, thread_id, exception), in the order the threads came."""

    def __init__(self, counts: dict, failures: list[tuple]) -> None:
        self.counts = counts
        self.failures = list(failures)
        user_id, _, thread_id, exc = self.failures[0]
        reason = (str(exc).splitlines() or [""])[0][:200]
        super().__init__(
            f"the summarizer failed on {len(self.failures)} thread(s), which stay unsummarized until a "
            f"run succeeds; the rest of the run was applied ({counts}); the first: user {user_id!r}, "
            f"thread {thread_id!r}: {type(exc).__name__}: {reason}"
        )


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
