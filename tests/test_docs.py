"""The documentation keeps up with the code: every CLI command and option is in docs/cli.md,
and every link of the README and between the docs pages leads somewhere. No database needed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import click
import pytest

from memoric.cli import main

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CLI_DOC = DOCS / "cli.md"
README = ROOT / "README.md"
CHANGELOG = ROOT / "CHANGELOG.md"

FENCE = re.compile(r"^(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def prose_lines(text: str) -> list[str]:
    """The lines of a markdown text outside fenced code blocks (those are left as empty lines)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            lines.append("")
            continue
        lines.append("" if fenced else line)
    return lines


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = heading.strip().lower()
    kept = "".join(char for char in text if char in " -_" or unicodedata.category(char)[0] in ("L", "N"))
    return kept.replace(" ", "-")


def headings(path: Path) -> list[tuple[int, str, int]]:
    """(level, text, line index) of every heading of a markdown file, code blocks skipped."""
    found = []
    for index, line in enumerate(prose_lines(path.read_text(encoding="utf-8"))):
        match = HEADING.match(line)
        if match:
            found.append((len(match.group(1)), match.group(2), index))
    return found


def anchors(path: Path) -> set[str]:
    """The anchors of a markdown file's headings, repeated ones numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    result = set()
    for _, text, _ in headings(path):
        base = slug(text)
        count = seen.get(base, 0)
        result.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return result


def links(path: Path) -> list[str]:
    """Every link target of a markdown file outside code blocks."""
    return [target for line in prose_lines(path.read_text(encoding="utf-8")) for target in LINK.findall(line)]


def relative_links(path: Path) -> list[str]:
    """The link targets that point into the repository (no scheme, no mail address)."""
    return [target for target in links(path) if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]


def unresolved(path: Path) -> list[str]:
    """The relative links of `path` whose file, or whose anchor in that file, does not exist."""
    broken = []
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        if not destination.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target} (no such heading)")
    return broken


# --- the CLI reference ----------------------------------------------------------------------


def commands(command: click.Command = main, names: tuple[str, ...] = ("memoric",)):
    """(command path, command) of `command` and of every command under it.

    A command registered under a name other than its own (an alias such as `db-migrate`) is
    yielded under that name too, but its subcommands only under the command's own name.
    """
    yield names, command
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            sub = command.commands[name]
            if sub.name == name:
                yield from commands(sub, (*names, name))
            else:
                yield (*names, name), sub


def long_flags(command: click.Command) -> list[str]:
    """The `--long` flags of a command's options (`--help` aside), `--no-x` forms included."""
    flags = []
    for param in command.params:
        if isinstance(param, click.Option):
            flags += [opt for opt in (*param.opts, *param.secondary_opts) if opt.startswith("--")]
    return [flag for flag in flags if flag != "--help"]


def command_sections(path: Path) -> dict[str, str]:
    """Heading text (backticks removed) -> its prose up to the next heading of its level or higher.

    Code blocks do not count: an option shown only in an example is not documented.
    """
    lines = prose_lines(path.read_text(encoding="utf-8"))
    found = headings(path)
    sections = {}
    for position, (level, text, start) in enumerate(found):
        end = next((index for lvl, _, index in found[position + 1 :] if lvl <= level), len(lines))
        sections[text.replace("`", "").strip()] = "\n".join(lines[start + 1 : end])
    return sections


def undocumented(section: str, command: click.Command) -> list[str]:
    """The long flags of `command` that `section` does not mention."""
    return [flag for flag in long_flags(command) if not re.search(rf"{re.escape(flag)}(?![\w-])", section)]


COMMANDS = [(" ".join(names), command) for names, command in commands()]


def test_the_walk_finds_every_command_of_the_cli():
    names = {name for name, _ in COMMANDS}
    assert {"memoric", "memoric recall", "memoric migrate upgrade", "memoric db-migrate"} <= names
    assert "memoric db-migrate upgrade" not in names  # the alias's subcommands are migrate's


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_every_command_has_a_section_in_the_cli_reference(name, command):
    documented = sorted(command_sections(CLI_DOC))
    assert name in documented, f"docs/cli.md has no heading `{name}`"


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_every_option_is_in_its_commands_section(name, command):
    missing = undocumented(command_sections(CLI_DOC).get(name, ""), command)
    assert not missing, f"docs/cli.md, section `{name}`, does not mention {missing}"


def test_a_missing_command_or_option_is_noticed(tmp_path):
    text = CLI_DOC.read_text(encoding="utf-8")
    doc = tmp_path / "cli.md"
    doc.write_text(
        text.replace("--dry-run", "--dry").replace("### `memoric migrate stamp`", "### stamp"),
        encoding="utf-8",
    )
    sections = command_sections(doc)
    assert undocumented(sections["memoric run-policies"], main.commands["run-policies"]) == ["--dry-run"]
    assert "memoric migrate stamp" not in sections


# --- links ------------------------------------------------------------------------------------

PAGES = sorted(DOCS.glob("*.md"))


def test_the_readme_links_every_docs_page_and_each_exists():
    linked = {(README.parent / target.partition("#")[0]).resolve() for target in relative_links(README)}
    docs_links = [target for target in relative_links(README) if target.startswith("docs/")]
    assert docs_links, "the README links no docs page"
    assert unresolved(README) == []
    assert [page.name for page in PAGES if page.resolve() not in linked] == []


@pytest.mark.parametrize("page", [*PAGES, CHANGELOG], ids=lambda page: page.name)
def test_every_relative_link_of_a_docs_page_resolves(page):
    assert unresolved(page) == []


def test_a_broken_link_is_noticed(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other\n\n## A `code` heading: yes\n", encoding="utf-8")
    page.write_text(
        "[ok](other.md#a-code-heading-yes) [file](missing.md) [anchor](other.md#nowhere)\n"
        "```\n[in code](ignored.md)\n```\n",
        encoding="utf-8",
    )
    assert [entry.split(" ")[0] for entry in unresolved(page)] == ["missing.md", "other.md#nowhere"]


def test_the_readme_tour_prints_what_the_readme_shows(tmp_path):
    text = README.read_text(encoding="utf-8")
    tour = next(block for block in re.findall(r"```python\n(.*?)```", text, re.S) if "Memoric(" in block)
    shown = re.search(r"```\n(filter: .*?)```", text, re.S).group(1)
    env = {**os.environ, "MEMORIC_SQLITE_WARNING": "0"}
    env.pop("MEMORIC_DATABASE_URL", None)
    ran = subprocess.run([sys.executable, "-c", tour], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == shown
