"""How a command stops: Ctrl-C, SIGTERM (`kill`, systemd, Docker) and SIGHUP (a closed terminal).

Each raises an exception in the command, once: Ctrl-C its KeyboardInterrupt, the others `Stopped`.
The command cleans up for all three alike (an import with new ids takes back what it wrote, an
export leaves no temporary file) and `memoric` exits 128 + the signal's number. A second stop
signal while it cleans up or exits is ignored: it would cut the cleanup short, or end the
process with another status than the first signal's. A signal the caller set
to be ignored (`nohup`) stays ignored; SIGKILL still ends the process at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# The dispositions a stop signal has when nobody chose another: these are replaced, others kept.
DEFAULT_HANDLERS = (signal.SIG_DFL, signal.default_int_handler)


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised as Ctrl-C raises KeyboardInterrupt; `signal_number` says which."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number


class Interrupted(KeyboardInterrupt):
    """A stop, with what the command had done by then and how to go on (`memoric` prints it)."""

    def __init__(self, message: str, signal_number: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.signal_number = signal_number


def signal_number(stop: KeyboardInterrupt) -> int:
    """The signal that stopped a command: SIGINT (Ctrl-C) unless the exception names another."""
    return getattr(stop, "signal_number", signal.SIGINT)


def stopped_by(stop: KeyboardInterrupt) -> str:
    """How `memoric` says a command was stopped: "Interrupted" by Ctrl-C, "Stopped by SIGTERM"."""
    number = signal_number(stop)
    return "Interrupted" if number == signal.SIGINT else f"Stopped by {signal.Signals(number).name}"


@contextlib.contextmanager
def stop_signals_raise_once():
    """Within the block, the first stop signal raises (KeyboardInterrupt or `Stopped`), later ones
    are ignored, until the process exits if one was raised; without one, the handlers before
    the block are restored after it. Only the main thread can set them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = False

    def stop(number: int, frame) -> None:
        nonlocal raised
        if not raised:
            raised = True
            raise KeyboardInterrupt if number == signal.SIGINT else Stopped(number)

    previous = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    for number, handler in previous.items():
        if handler in DEFAULT_HANDLERS:
            signal.signal(number, stop)
    try:
        yield
    finally:
        if not raised:  # once stopped, the process is on its way out: a default handler would
            for number, handler in previous.items():  # let a second signal kill it first
                signal.signal(number, handler)
