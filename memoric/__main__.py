"""The `memoric` command (also `python -m memoric`): the CLI, with the process's first and last moments.

Loading the CLI takes a moment (peewee, the drivers); a Ctrl-C then would print a traceback from
the import, so it is answered here as `memoric` answers one during a command: a line, exit 130.
After the command, stop signals are ignored until the process has exited.
"""

from __future__ import annotations

import signal
import sys

INTERRUPTED_EXIT = 128 + signal.SIGINT


def main() -> None:
    """Load the CLI and run it; then ignore stop signals while the interpreter shuts down."""
    memoric = loaded_cli()
    try:
        memoric()
    finally:
        ignore_stop_signals()


def loaded_cli():
    """`memoric.cli.main`, loaded; a Ctrl-C meanwhile is one line and exit 130, even one that
    a module being imported swallows (a bare `except:` around an optional import)."""
    interrupted = []

    def noted(number: int, frame) -> None:
        interrupted.append(number)
        raise KeyboardInterrupt

    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.default_int_handler:  # not one ignored (`nohup`, a background job)
        signal.signal(signal.SIGINT, noted)
    try:
        from memoric.cli import main as memoric
    except KeyboardInterrupt:
        interrupted.append(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted:
        sys.stderr.write("Interrupted.\n")
        raise SystemExit(INTERRUPTED_EXIT)
    return memoric


def ignore_stop_signals() -> None:
    """The command is over: a stop signal now would only change its exit status (Python resets its
    handlers to the default, which ends the process, as it shuts down; an ignored one it keeps)."""
    from memoric.commands.stopping import STOP_SIGNALS  # here: the module loads before any handler

    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN)


if __name__ == "__main__":
    main()
