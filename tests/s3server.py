"""An S3-compatible HTTP server on 127.0.0.1 for the tests, in a process of its own
(`python -m tests.s3server PORT BUCKET [ORIGIN]`): moto's ThreadedMotoServer with BUCKET
made and given a public-read policy (`s3:GetObject` for `*`, as a static website) and,
with ORIGIN, the CORS rule docs/deployment.md gives for a viewer there. It prints
`ready` and serves until its stdin closes. A process of its own keeps moto and boto3
out of the pytest process, whose size forked converter workers inherit; `s3_server`
starts it from a test. Its stderr is moto's request log (werkzeug's, one line a request:
`"GET /BUCKET/KEY HTTP/1.1" 200`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}


@contextmanager
def s3_server(bucket: str, log: IO[str] | None = None, cors_origin: str = ""
              ) -> Iterator[str]:
    """This module's server in a process of its own, its request log written to `log`
    (dropped without), the bucket's CORS rule allowing `cors_origin` if given; yields its
    endpoint `http://127.0.0.1:PORT`."""
    from .servers import free_port  # not in the server's process: it imports the app

    port = free_port()
    command = [sys.executable, "-m", "tests.s3server", str(port), bucket]
    server = subprocess.Popen([*command, *([cors_origin] if cors_origin else [])], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=log if log is not None else subprocess.DEVNULL,
                              text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        yield f"http://127.0.0.1:{port}"
    finally:
        assert server.stdin is not None
        server.stdin.close()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def cli_convert(inputs: list, target: str, endpoint: str, tmp: Path, *extra: str) -> dict:
    """Run the real `dcmweb convert` with the endpoint from the standard AWS configuration
    (AWS_ENDPOINT_URL); returns its run report."""
    report = tmp / f"report-{len(list(tmp.glob('report-*')))}.json"
    env = {**os.environ, **CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}
    done = subprocess.run([sys.executable, "-m", "dcmweb_static.cli", "convert",
                           *map(str, inputs), "-d", target, "-j", "2", "-q",
                           "--report", str(report), *extra],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(report.read_text())


#: the CORS rule of docs/deployment.md ("A viewer on another origin needs CORS")
def cors_rule(origin: str) -> dict:
    return {"AllowedOrigins": [origin], "AllowedMethods": ["GET", "HEAD"],
            "AllowedHeaders": ["*"],
            "ExposeHeaders": ["Content-Type", "Content-Encoding", "Content-Length", "ETag"],
            "MaxAgeSeconds": 3600}


def main(port: int, bucket: str, cors_origin: str = "") -> None:
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}",
                              aws_access_key_id="testing", aws_secret_access_key="testing",
                              region_name="us-east-1")
        client.create_bucket(Bucket=bucket)
        client.put_bucket_policy(Bucket=bucket, Policy=json.dumps({
            "Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/*"}]}))
        if cors_origin:
            client.put_bucket_cors(Bucket=bucket, CORSConfiguration={
                "CORSRules": [cors_rule(cors_origin)]})
        print("ready", flush=True)
        sys.stdin.read()  # until the test closes it
    finally:
        server.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]), *sys.argv[2:4])
