"""Ask the kernel to start reading input files before a worker gets to them.

A worker alternates between waiting for a file's bytes and converting them. From a cold
disk that wait is most of a small file's time (a 512 KiB CT slice here: ~2 ms of I/O for
~3.5 ms of CPU), and one reader at a time keeps the disk's queue shallow (315 MB/s for
one `cat`, 550 MB/s for eight). `posix_fadvise(WILLNEED)` queues the reads and returns:
the disk works while the CPU converts, and the kernel reads into the page cache that the
worker's own reads then find. Two moments use it:

- the parent, as it hands a task to the process pool (`prefetch`): the disk then reads a
  window of tasks ahead of the workers, not each task only once a worker starts it;
- the program's start (`read_ahead_of_start`): the ~0.3 s a cold `dcmweb convert` spends
  importing before any worker reads is time the disk would idle; a thread reads the
  first inputs it finds on the command line meanwhile. It is stopped and joined before
  any fork, so no worker inherits it.

Only regular files are opened, and only to ask (never read: the conversion reads and
checks its inputs itself); the name is checked before it is opened, so a FIFO's writer
never sees a reader. Anything that fails is left to the conversion, which reports it.
Without `posix_fadvise` (not Linux) this does nothing. This module imports nothing of the
package: the start-up read-ahead runs before the imports it overlaps.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterable, Iterator, Sequence

#: read ahead at most this much of one file: all of a usual instance, the start of a big
#: one (whose own sequential reads the kernel then reads ahead of)
FILE_BYTES = 8 << 20
#: and at most this much per task: a worker reading its own task ahead (Dask)...
TASK_BYTES = 64 << 20
#: ...or each task of the process pool's window (4 per worker submitted ahead): a window
#: of big files must not fill the memory
WINDOW_TASK_BYTES = 16 << 20
#: the start-up read-ahead: at most this much, and this many files looked at
START_BYTES = 64 << 20
START_FILES = 1024
#: options of `dcmweb convert` whose value is the output, not an input
_OUTPUT_OPTIONS = ("-d", "--dicomweb-dir")

_WILLNEED = getattr(os, "POSIX_FADV_WILLNEED", None)


def prefetch(paths: Iterable[str | os.PathLike[str]], task_bytes: int = TASK_BYTES) -> int:
    """Start reading the files at `paths` (local paths; URLs are skipped) into the page
    cache, in order, up to `task_bytes` in all; returns the bytes asked for."""
    if _WILLNEED is None:
        return 0
    asked = 0
    for path in paths:
        if asked >= task_bytes:
            break
        asked += _advise(path, task_bytes - asked)
    return asked


def _advise(path: str | os.PathLike[str], budget: int) -> int:
    """posix_fadvise(WILLNEED) of the start of one regular file; the bytes asked for."""
    if isinstance(path, str) and "://" in path:
        return 0  # an object store input: nothing local to read ahead
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return 0
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, ValueError):  # gone, unreadable, a bad name
        return 0
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode) or not status.st_size:
            return 0  # (a length of 0 would mean "to the end")
        length = min(status.st_size, FILE_BYTES, budget)
        os.posix_fadvise(fd, 0, length, _WILLNEED)
        return length
    except OSError:
        return 0
    finally:
        os.close(fd)


class _StartReader:
    """The start-up read-ahead's thread, stopped and joined before this process forks."""

    def __init__(self, inputs: list[str], output: str | None) -> None:
        self.inputs, self.output = inputs, output
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="dcmweb-read-ahead",
                                       daemon=True)

    def start(self) -> None:
        os.register_at_fork(before=self.stop_and_join)
        self.thread.start()

    def stop_and_join(self) -> None:
        self.stop.set()
        self.finish()

    def finish(self) -> None:
        """Wait until the thread is done."""
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join()

    def _run(self) -> None:
        asked = 0
        for count, path in enumerate(_walk(self.inputs, self.output)):
            if self.stop.is_set() or asked >= START_BYTES or count >= START_FILES:
                return
            asked += _advise(path, START_BYTES - asked)


def read_ahead_of_start(arguments: Sequence[str]) -> _StartReader | None:
    """For `dcmweb convert` arguments (after the command name): start reading the first
    input files in a thread while the program imports; None if there is nothing to do.
    The inputs are guessed: every argument that names an existing local file or folder,
    the output's value excepted; a wrong guess costs a read ahead, nothing else."""
    if _WILLNEED is None:
        return None
    inputs, output, options_end = [], None, False
    arguments = list(arguments)
    for at, argument in enumerate(arguments):
        if not options_end and argument == "--":
            options_end = True
        elif not options_end and argument in _OUTPUT_OPTIONS:
            output = arguments[at + 1] if at + 1 < len(arguments) else None
        elif not options_end and argument.startswith("--dicomweb-dir="):
            output = argument.partition("=")[2]
        elif (options_end or not argument.startswith("-")) and argument != output \
                and "://" not in argument and os.path.exists(argument):
            inputs.append(argument)
    if not inputs:
        return None
    reader = _StartReader(inputs, output)
    reader.start()
    return reader


def _walk(inputs: list[str], output: str | None) -> Iterator[str]:
    """The files of `inputs` in the conversion's order (`inputs.iter_input_files`:
    files as given, folders walked in sorted order), the output folder left out."""
    excluded = os.path.realpath(output) if output else None
    for item in inputs:
        if not os.path.isdir(item):
            yield item
            continue
        for folder, dirs, files in os.walk(item):
            if excluded is not None and os.path.realpath(folder) == excluded:
                dirs[:] = []
                continue
            dirs.sort()
            for name in sorted(files):
                yield os.path.join(folder, name)
