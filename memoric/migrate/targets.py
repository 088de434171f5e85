"""Migration targets (`head`, `base`, a name or its number, `+N`, `-N`) and the plans they make.

Pure functions over the chain's names and the applied ones: nothing here touches a database.
"""

from __future__ import annotations

import re

from memoric.errors import MigrationError

# Targets and file names take ASCII digits only: str.isdigit() and \d also accept "²" and "٣".
RELATIVE_TARGET = re.compile(r"([+-])(0*[1-9][0-9]*)")
NUMBER_TARGET = re.compile(r"[0-9]+")
MAX_COUNT_DIGITS = 9
SHOWN_TARGET_CHARS = 60


def cut(text: str) -> str:
    """`text` cut short for an error message when it is very long."""
    return text if len(text) <= SHOWN_TARGET_CHARS else text[: SHOWN_TARGET_CHARS - 3] + "..."


def shown(target) -> str:
    """A target as error messages show it: quoted and escaped (one line), cut short when very long."""
    return repr(cut(target) if isinstance(target, str) else target)


def _position(target: str, names: list[str]) -> int:
    """The index in `names` an absolute target stands for: -1 is base."""
    if target == "head":
        return len(names) - 1
    if target == "base":
        return -1
    matches = [i for i, name in enumerate(names) if name == target or _number_matches(name, target)]
    if len(matches) > 1:
        ambiguous = ", ".join(names[i] for i in matches)
        raise MigrationError(f"migration target {shown(target)} is ambiguous: it matches {ambiguous}")
    if not matches:
        raise _unknown_target(target, names)
    return matches[0]


def _number_matches(name: str, target: str) -> bool:
    """Whether `target` is the number of migration `name` (ASCII digits; leading zeros optional)."""
    return NUMBER_TARGET.fullmatch(target) is not None and target.lstrip("0") == name[:3].lstrip("0")


def _unknown_target(target, names: list[str]) -> MigrationError:
    known = ", ".join(names) if names else "(the chain is empty)"
    return MigrationError(
        f"unknown migration target {shown(target)}: use head, base, +N, -N, a migration name or its number; "
        f"migrations: {known}"
    )


def _relative(target: str, names: list[str]) -> tuple[str, int] | None:
    """('+', N) or ('-', N) for a relative target, None for an absolute one.

    N is ASCII digits; one too large to mean anything stands as a count no chain reaches.
    """
    if not isinstance(target, str) or not target:
        raise _unknown_target(target, names)
    match = RELATIVE_TARGET.fullmatch(target)
    if match is None:
        return None
    digits = match.group(2).lstrip("0")
    return match.group(1), int(digits) if len(digits) <= MAX_COUNT_DIGITS else 10**MAX_COUNT_DIGITS


def upgrade_plan(target: str, names: list[str], done: list[str]) -> list[str]:
    """The migrations `upgrade(target)` applies, in order."""
    pending = [name for name in names if name not in done]
    relative = _relative(target, names)
    if relative is None:
        position = _position(target, names)
        return [name for name in names[: position + 1] if name not in done]
    sign, count = relative
    if sign == "-":
        raise MigrationError(f"upgrade target {shown(target)} goes backwards: use `downgrade {cut(target)}`")
    if count > len(pending):
        raise MigrationError(f"cannot upgrade {cut(target)}: only {len(pending)} migration(s) pending")
    return pending[:count]


def downgrade_plan(target: str, names: list[str], done: list[str]) -> list[str]:
    """The migrations `downgrade(target)` rolls back, latest first."""
    latest_first = list(reversed(done))
    relative = _relative(target, names)
    if relative is None:
        keep = set(names[: _position(target, names) + 1])
        return [name for name in latest_first if name not in keep]
    sign, count = relative
    if sign == "+":
        raise MigrationError(f"downgrade target {shown(target)} goes forwards: use `upgrade {cut(target)}`")
    if count > len(done):
        raise MigrationError(f"cannot downgrade {cut(target)}: only {len(done)} migration(s) applied")
    return latest_first[:count]


def stamp_plan(target: str, names: list[str], done: list[str]) -> tuple[list[str], list[str]]:
    """(names to record as applied, names to forget) so that the history stands at `target`."""
    relative = _relative(target, names)
    if relative is None:
        wanted = names[: _position(target, names) + 1]
        return [n for n in wanted if n not in done], [n for n in done if n not in wanted]
    if relative[0] == "+":
        return upgrade_plan(target, names, done), []
    return [], downgrade_plan(target, names, done)
