"""Running servers for the serving tests: `dcmweb serve` (uvicorn in a thread) and a real
nginx from Debian with the block `dcmweb nginx-config` prints (127.0.0.1 only)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from dcmweb_static.serve.app import make_app
from dcmweb_static.serve.nginx import nginx_server_block

from .conftest import require_tool


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


@contextmanager
def serving(app: Any, port: int) -> Iterator[str]:
    """`app` served by uvicorn on 127.0.0.1:`port` (the caller picks the port first, since
    the viewer's configuration may name its origin); yields the origin."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port(port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def dcmweb_serve(root: Path) -> Iterator[str]:
    with serving(make_app(root), free_port()) as origin:
        yield origin


@contextmanager
def nginx(root: Path, workdir: Path) -> Iterator[str]:
    binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if binary is None:
        binary = require_tool("nginx")  # fails on CI, skips elsewhere
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    temp = "\n".join(f"    {kind}_temp_path {workdir}/{kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    user = "user root root;\n" if os.geteuid() == 0 else ""
    config = workdir / "nginx.conf"
    config.write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {workdir}/nginx.pid;\n"
        f"error_log {workdir}/error.log;\nevents {{ worker_connections 64; }}\n"
        f"http {{\n    access_log off;\n{temp}\n"
        + nginx_server_block(root, f"127.0.0.1:{port}") + "}\n")
    process = subprocess.Popen([binary, "-c", str(config), "-p", str(workdir)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
