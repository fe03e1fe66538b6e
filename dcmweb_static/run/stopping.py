"""Stopping a run on SIGINT, SIGTERM or SIGHUP: alike, and only at safe points.

While workers run, a signal only sets a flag that the parent checks between results,
so it never lands inside a commit or the pool's own bookkeeping; the parent then stops
the workers (none is left alive), removes the run's staging and raises `Interrupted`,
which carries the summary of every result decided before the stop (for the report).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal (a KeyboardInterrupt, so code that handles Ctrl-C
    handles it); `summary` is the run so far, `exit_code` is 128 + the signal number."""

    def __init__(self, signum: int, summary: Any = None) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.summary = summary

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopRequest:
    """The signal received, if any; `raise_now` makes the handler raise at once (for
    phases without workers, where stopping anywhere is safe)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.raise_now = False

    def check(self) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        if self.raise_now:
            self.check()


@contextmanager
def _handled_by(handler: Any) -> Iterator[None]:
    """`handler` takes SIGINT, SIGTERM and SIGHUP while the block runs, where nobody else
    does: a signal an application handles (or ignores, as under nohup) is left alone."""
    previous: dict[int, Any] = {}
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) in (signal.SIG_DFL, signal.default_int_handler):
            previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, previous_handler in previous.items():
            signal.signal(signum, previous_handler)


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Catch SIGINT, SIGTERM and SIGHUP while the block runs, where nobody else does
    (`_handled_by`), and not outside the main thread, where Python cannot handle signals."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    with _handled_by(request._handle):
        yield request


class StopWait:
    """For a server: the stop signal to wait for (`wait` returns its number)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._event = threading.Event()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        self._event.set()

    def wait(self) -> int:
        while not self._event.wait(0.5):  # a timeout: the handler runs between waits
            pass
        assert self.signum is not None
        return self.signum


@contextmanager
def catch_stop() -> Iterator[StopWait]:
    """SIGINT, SIGTERM and SIGHUP (unless handled or ignored, as in `stop_on_signals`)
    end the wait of the yielded `StopWait` instead of the process; caught from the start
    of the block, so a signal that comes before the wait is not lost."""
    waiter = StopWait()
    with _handled_by(waiter._handle):
        yield waiter
