"""An S3-compatible HTTP server on 127.0.0.1 for the tests, in a process of its own
(`python -m tests.s3server PORT BUCKET`): moto's ThreadedMotoServer with BUCKET made and
given a public-read policy (`s3:GetObject` for `*`, as a static website). It prints
`ready` and serves until its stdin closes. A process of its own keeps moto and boto3
out of the pytest process, whose size forked converter workers inherit."""

from __future__ import annotations

import json
import sys

from moto.server import ThreadedMotoServer


def main(port: int, bucket: str) -> None:
    import boto3

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
        print("ready", flush=True)
        sys.stdin.read()  # until the test closes it
    finally:
        server.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
