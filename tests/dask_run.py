"""A conversion on a Dask cluster in a process of its own, for tests/test_dask.py
(`python -m tests.dask_run ADDRESS OUT INPUTS.json [KILL_PID]`): the Dask client stays out
of the pytest process, whose size forked converter workers inherit. With KILL_PID, that
worker is killed (SIGKILL) the first time it is seen holding a batch. Prints a JSON line:
each input's status and reason, the batch the killed worker held, the run's error."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from distributed import Client

from dcmweb_static.run.batch import Converter
from dcmweb_static.run.options import ConvertOptions


def main(address: str, out: str, inputs: str, kill_pid: int | None) -> None:
    files = json.loads(Path(inputs).read_text())
    watcher = Client(address, timeout=60)
    watcher.wait_for_workers(2, timeout=60)
    victim = next((a for a, pid in watcher.run(os.getpid).items() if pid == kill_pid), None)
    killed: list[str] = []

    def on_result(result) -> None:
        if victim is not None and not killed:
            holding = watcher.processing(workers=[victim]).get(victim, ())
            if holding:  # Dask must run this batch again elsewhere
                os.kill(kill_pid, signal.SIGKILL)
                killed.extend(str(key) for key in holding)

    summary = Converter(ConvertOptions(output=Path(out)), scheduler=address,
                        on_result=on_result).run(files)
    watcher.close()
    print(json.dumps({"outcomes": {r.path: [r.status, r.reason] for r in summary.results},
                      "killed": killed, "error": summary.error}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else None)
