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
