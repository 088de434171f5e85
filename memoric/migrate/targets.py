"""Migration targets and the plans they make, over memoric's chain and an application's.

The chains form one order, memoric's migrations then the application's. A target is `head`,
`base`, a migration name or its number, `+N` or `-N`, optionally prefixed with a chain:
`memoric:TARGET` or `app:TARGET`. Without a prefix, `head`, `base`, `+N` and `-N` count in the
whole order and a name or number is looked up in both chains (an error naming both when it is
in both). With a prefix, the name, number, `head` or `base` is that chain's, and `+N`/`-N`
count that chain's migrations; a plan still takes everything before its position in the order,
so upgrading the application's chain first applies memoric's pending migrations, and rolling
back memoric's first rolls back the application's. Pure functions: nothing here touches a
database.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from memoric.errors import MigrationError

MEMORIC, APP = "memoric", "app"
CHAIN_PREFIX = re.compile(rf"({MEMORIC}|{APP}):(.*)", re.DOTALL)
# Targets and file names take ASCII digits only: str.isdigit() and \d also accept "²" and "٣".
RELATIVE_TARGET = re.compile(r"([+-])(0*[1-9][0-9]*)")
NUMBER_TARGET = re.compile(r"[0-9]+")
MAX_COUNT_DIGITS = 9
SHOWN_TARGET_CHARS = 60
NO_APP_CHAIN = (
    "no application migrations directory is configured: set `migrations: {app_dir: DIRECTORY}` in the "
    "config file, MEMORIC_APP_MIGRATIONS=DIRECTORY in the environment, or pass `memoric --app-dir DIRECTORY`"
)


class Step(NamedTuple):
    """One migration of one chain."""

    chain: str
    name: str

    @property
    def label(self) -> str:
        """How it is shown and can be named: memoric's by name, the application's as `app:NAME`."""
        return self.name if self.chain == MEMORIC else f"{self.chain}:{self.name}"


def cut(text: str) -> str:
    """`text` cut short for an error message when it is very long."""
    return text if len(text) <= SHOWN_TARGET_CHARS else text[: SHOWN_TARGET_CHARS - 3] + "..."


def shown(target) -> str:
    """A target as error messages show it: quoted and escaped (one line), cut short when very long."""
    return repr(cut(target) if isinstance(target, str) else target)


def labels(steps) -> str:
    return ", ".join(step.label for step in steps)


class Order:
    """The migrations of the chains in one order, and the applied ones: the plans of targets."""

    def __init__(self, chains: dict[str, list[str]], done: list[Step]) -> None:
        self.chains = list(chains)
        self.steps = [Step(chain, name) for chain, names in chains.items() for name in names]
        self.done = done

    def pending(self) -> list[Step]:
        return [step for step in self.steps if step not in self.done]

    def upgrade(self, target: str, *, out_of_order: bool = False) -> list[Step]:
        """The migrations `upgrade(target)` applies, in order; with `out_of_order`, also those
        behind an applied migration or sharing a number (`in_line`)."""
        chain, rest = self._split(target)
        pending = self.pending()
        relative = self._relative(target, chain, rest)
        if relative is None:
            position = self._position(target, chain, rest)
            plan = [step for step in self.steps[: position + 1] if step not in self.done]
            plan = plan if out_of_order else self.in_line(plan)
            passed = [step for step in self._scope(chain)[position + 1 :] if step and step in self.done]
            if passed:
                raise MigrationError(
                    f"upgrade target {shown(target)} is behind the database, which has {passed[0].label} "
                    f"applied: use `downgrade {cut(target)}` to roll back"
                )
            return plan
        sign, count = relative
        if sign == "-":
            raise MigrationError(
                f"upgrade target {shown(target)} goes backwards: use `downgrade {cut(target)}`"
            )
        plan = self._through(pending, chain, count, f"cannot upgrade {cut(target)}", "pending")
        return plan if out_of_order else self.in_line(plan)

    def in_line(self, plan: list[Step]) -> list[Step]:
        """`plan`, when each of its migrations extends its chain's line: MigrationError for one
        that sorts before an applied migration (applied now, it would run after it) or that
        shares its number with another (two branches each added one; their order is a guess)."""
        for step in plan:
            siblings = [other for other in self.steps if other.chain == step.chain and other != step]
            later = [other for other in siblings if other.name > step.name and other in self.done]
            if later:
                raise MigrationError(
                    f"{step.label} is pending but sorts before {later[0].label}, which is applied: "
                    "the chain gained a migration behind its head (a merge of two branches?); "
                    "renumber it after the last applied migration, or, where databases applied the "
                    "two branches' migrations in different orders, apply it with `upgrade --out-of-order`"
                )
            twins = [other for other in siblings if other.name[:3] == step.name[:3]]
            if twins:
                raise MigrationError(
                    f"{step.label} and {labels(twins)} share the number {step.name[:3]}: two branches "
                    "each added a migration; renumber one so the chain runs in an order you chose "
                    "(or apply them in the order of their names with `upgrade --out-of-order`)"
                )
        return plan

    def downgrade(self, target: str) -> list[Step]:
        """The migrations `downgrade(target)` rolls back, latest first."""
        chain, rest = self._split(target)
        latest_first = list(reversed(self.done))
        relative = self._relative(target, chain, rest)
        if relative is None:
            position = self._position(target, chain, rest)
            short = [step for step in self._scope(chain)[: position + 1] if step and step not in self.done]
            if short:
                raise MigrationError(
                    f"downgrade target {shown(target)} is ahead of the database, which lacks "
                    f"{short[0].label}: use `upgrade {cut(target)}` to apply it"
                )
            keep = set(self.steps[: position + 1])
            return [step for step in latest_first if step not in keep]
        sign, count = relative
        if sign == "+":
            raise MigrationError(
                f"downgrade target {shown(target)} goes forwards: use `upgrade {cut(target)}`"
            )
        return self._through(latest_first, chain, count, f"cannot downgrade {cut(target)}", "applied")

    def stamp(self, target: str) -> tuple[list[Step], list[Step]]:
        """(migrations to record as applied, migrations to forget) so the history stands at `target`."""
        chain, rest = self._split(target)
        relative = self._relative(target, chain, rest)
        if relative is None:
            wanted = self.steps[: self._position(target, chain, rest) + 1]
            return [s for s in wanted if s not in self.done], [s for s in self.done if s not in wanted]
        if relative[0] == "+":
            return self.upgrade(target), []
        return [], self.downgrade(target)

    # --- reading a target ---

    def _split(self, target) -> tuple[str | None, str]:
        """(the chain a target names, or None; the target without that prefix)."""
        if not isinstance(target, str) or not target:
            raise self._unknown(target, None)
        match = CHAIN_PREFIX.fullmatch(target)
        if match is None:
            return None, target
        chain, rest = match.groups()
        if chain not in self.chains:
            raise MigrationError(
                f"migration target {shown(target)} names the {chain} chain, but {NO_APP_CHAIN}"
            )
        return chain, rest

    def _relative(self, target: str, chain: str | None, rest: str) -> tuple[str, int] | None:
        """('+', N) or ('-', N) for a relative target, None for an absolute one.

        N is ASCII digits; one too large to mean anything stands as a count no chain reaches.
        """
        if not rest:
            raise self._unknown(target, chain)
        match = RELATIVE_TARGET.fullmatch(rest)
        if match is None:
            return None
        digits = match.group(2).lstrip("0")
        return match.group(1), int(digits) if len(digits) <= MAX_COUNT_DIGITS else 10**MAX_COUNT_DIGITS

    def _position(self, target: str, chain: str | None, rest: str) -> int:
        """The index in the order an absolute target stands for: -1 is base."""
        indexes = [i for i, step in enumerate(self.steps) if chain in (None, step.chain)]
        start = self._start(chain)
        if rest == "head":
            return indexes[-1] if indexes else start - 1
        if rest == "base":
            return start - 1
        matches = [
            i for i in indexes if self.steps[i].name == rest or _number_matches(self.steps[i].name, rest)
        ]
        if len(matches) > 1:
            hint = " (prefix it with memoric: or app:)" if chain is None and len(self.chains) > 1 else ""
            raise MigrationError(
                f"migration target {shown(target)} is ambiguous: it matches "
                f"{labels(self.steps[i] for i in matches)}{hint}"
            )
        if not matches:
            raise self._unknown(target, chain)
        return matches[0]

    def _scope(self, chain: str | None) -> list[Step | None]:
        """The order, with the steps of chains other than `chain` (if it names one) blanked out:
        indexes stay the order's, and a target of one chain judges that chain alone."""
        return [step if chain in (None, step.chain) else None for step in self.steps]

    def _start(self, chain: str | None) -> int:
        """The index where `chain`'s migrations begin in the order (0 for the whole order)."""
        if chain is None:
            return 0
        before = self.chains[: self.chains.index(chain)]
        return sum(1 for step in self.steps if step.chain in before)

    def _through(self, steps: list[Step], chain: str | None, count: int, what: str, state: str) -> list[Step]:
        """`steps` up to and including the `count`-th of `chain` (of any chain when None)."""
        counted = [step for step in steps if chain in (None, step.chain)]
        if count > len(counted):
            where = f" in the {chain} chain" if chain else ""
            raise MigrationError(f"{what}: only {len(counted)} migration(s) {state}{where}")
        return steps[: steps.index(counted[count - 1]) + 1]

    def _unknown(self, target, chain: str | None) -> MigrationError:
        steps = [step for step in self.steps if chain in (None, step.chain)]
        known = labels(steps) if steps else "(the chain is empty)"
        prefixes = ", optionally prefixed with memoric: or app:" if len(self.chains) > 1 else ""
        return MigrationError(
            f"unknown migration target {shown(target)}: use head, base, +N, -N, a migration name or its "
            f"number{prefixes}; migrations: {known}"
        )


def _number_matches(name: str, target: str) -> bool:
    """Whether `target` is the number of migration `name` (ASCII digits; leading zeros optional)."""
    return NUMBER_TARGET.fullmatch(target) is not None and target.lstrip("0") == name[:3].lstrip("0")
