"""The `memoric` command: parse arguments, call the library, print. No logic of its own."""

from __future__ import annotations

import click

from memoric import __version__


@click.group()
@click.version_option(__version__, prog_name="memoric")
def main() -> None:
    """memoric: persistent memory for AI agents (SQLite by default, PostgreSQL in production)."""
