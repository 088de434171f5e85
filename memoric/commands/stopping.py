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
import os
import signal
import threading

from memoric.db import interrupts

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# The dispositions a stop signal has when nobody chose another: these are replaced, others kept.
DEFAULT_HANDLERS = (signal.SIG_DFL, signal.default_int_handler)
CANCEL_AFTER = 0.5  # seconds a stop may go unanswered before the statements under way are cancelled


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
    raised = threading.Event()
    arrived: list[int] = []  # the first stop signal, in the order they arrived (the watcher's)

    def stop(number: int, frame) -> None:
        if not raised.is_set():
            raised.set()
            first = arrived[0] if arrived else number  # Python runs waiting handlers by number
            raise KeyboardInterrupt if first == signal.SIGINT else Stopped(first)

    previous = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    for number, handler in previous.items():
        if handler in DEFAULT_HANDLERS:
            signal.signal(number, stop)
    try:
        with statements_cancelled_on_stop(raised, arrived):
            yield
    finally:
        if not raised.is_set():  # once stopped, the process is on its way out: a default handler would
            for number, handler in previous.items():  # let a second signal kill it first
                signal.signal(number, handler)


@contextlib.contextmanager
def statements_cancelled_on_stop(raised: threading.Event, arrived: list[int]):
    """Within the block, a stop signal that the main thread has not answered (`raised`) within
    CANCEL_AFTER seconds also cancels the statements memoric's PostgreSQL connections are running:
    the main thread is then waiting inside the driver (for another session's lock), where its
    handler does not run until the wait ends. A thread of its own reads the signal's number from
    Python's wakeup file; one the main thread answers at once cancels nothing (its cleanup's
    statements included). The first stop signal's number goes into `arrived`."""
    reading, writing = os.pipe()
    os.set_blocking(writing, False)
    previous = signal.set_wakeup_fd(writing, warn_on_full_buffer=False)
    watcher = threading.Thread(target=_cancel_if_unanswered, args=(reading, raised, arrived), daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous)
        os.close(writing)  # ends the watcher's read, if no stop came


def _cancel_if_unanswered(reading: int, raised: threading.Event, arrived: list[int]) -> None:
    """Read the wakeup file until the block closes it; at the first stop signal, cancel unless
    the main thread answers in time. Later ones are read and left alone: they must not cancel
    the cleanup's statements, and a closed file would make Python complain on stderr."""
    try:
        while received := os.read(reading, 64):
            stops = [number for number in received if number in STOP_SIGNALS]
            if stops and not arrived:
                arrived.append(stops[0])
                if not raised.wait(CANCEL_AFTER):
                    interrupts.cancel_all()
    finally:
        os.close(reading)
