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
