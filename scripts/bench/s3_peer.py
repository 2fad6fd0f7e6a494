"""One closed-loop S3 phase by a peer client, for scripts/bench/s3-peers.sh.

    python s3_peer.py CLIENT OP CONCURRENCY SECONDS KEYS_FILE SIZE PUT_FILE

CLIENT is boto3 or awscrt, OP get or put. CONCURRENCY workers each keep one
request in flight for SECONDS, on keys picked at random from KEYS_FILE (one
key a line, the first line the bucket): GET reads a whole object, PUT
writes SIZE bytes (the contents of PUT_FILE) over a key. Endpoint and keys
come from the standard AWS_* variables. Prints one JSON line: ops, errors,
bytes, the seconds of the timed window, and the process's CPU seconds
(user+sys, all threads, native ones included) over that same window, so
the interpreter's start and the client's set-up are not counted.

boto3: one client shared by a ThreadPoolExecutor of CONCURRENCY threads,
max_pool_connections = max(CONCURRENCY, 10), checksums only when required
(as Chorus: RGW rejects aws-chunked trailers), no retries.

awscrt: one awscrt.s3.S3Client, CONCURRENCY typed GetObject/PutObject meta
requests kept in flight from their completion callbacks. part_size and
multipart_upload_threshold are set above the object size, so every op is
one HTTP request (no ranged split of a GET, no multipart PUT);
max_active_connections_override = CONCURRENCY (throughput_target_gbps,
left at its default 10, would otherwise size the pool). The GET body is
counted in on_body and dropped; the PUT body is streamed from PUT_FILE by
the CRT itself (send_filepath), as the CRT's own tools do.
"""

import json
import os
import random
import resource
import sys
import threading
import time


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_boto3(op, conc, secs, bucket, keys, size, put_file):
    import boto3
    from botocore.config import Config
    from concurrent.futures import ThreadPoolExecutor

    cfg = Config(
        max_pool_connections=max(conc, 10),
        retries={"max_attempts": 1, "mode": "standard"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": "path"},
    )
    client = boto3.session.Session().client("s3", config=cfg)
    data = open(put_file, "rb").read() if op == "put" else b""
    # One warm-up request per worker, untimed, so the pool is connected
    # (Chorus and the CRT also connect before their first timed op).
    with ThreadPoolExecutor(conc) as ex:
        list(ex.map(lambda k: client.head_object(Bucket=bucket, Key=k),
                    [keys[i % len(keys)] for i in range(conc)]))

    def worker(deadline, rng):
        ops = errors = nbytes = 0
        while time.monotonic() < deadline:
            key = rng.choice(keys)
            try:
                if op == "get":
                    body = client.get_object(Bucket=bucket, Key=key)["Body"]
                    while True:
                        chunk = body.read(1 << 20)
                        if not chunk:
                            break
                        nbytes += len(chunk)
                else:
                    client.put_object(Bucket=bucket, Key=key, Body=data)
                    nbytes += len(data)
                ops += 1
            except Exception as e:  # noqa: BLE001 - counted, shown once
                errors += 1
                if errors == 1:
                    print(f"boto3 {op}: {e}", file=sys.stderr)
        return ops, errors, nbytes

    with ThreadPoolExecutor(conc) as ex:
        cpu0, t0 = cpu_seconds(), time.monotonic()
        deadline = t0 + secs
        futs = [ex.submit(worker, deadline, random.Random(i)) for i in range(conc)]
        res = [f.result() for f in futs]
        t1, cpu1 = time.monotonic(), cpu_seconds()
    return (sum(r[0] for r in res), sum(r[1] for r in res), sum(r[2] for r in res),
            t1 - t0, cpu1 - cpu0)


def run_awscrt(op, conc, secs, bucket, keys, size, put_file):
    from awscrt.auth import AwsCredentialsProvider
    from awscrt.http import HttpHeaders, HttpRequest
    from awscrt.io import ClientBootstrap, DefaultHostResolver, EventLoopGroup
    from awscrt.s3 import (S3Client, S3RequestTlsMode, S3RequestType,
                           create_default_s3_signing_config)

    endpoint = os.environ["AWS_ENDPOINT_URL"].rstrip("/")
    scheme, hostport = endpoint.split("://", 1)
    region = os.environ.get("AWS_REGION", "us-east-1")
    elg = EventLoopGroup()
    bootstrap = ClientBootstrap(elg, DefaultHostResolver(elg))
    creds = AwsCredentialsProvider.new_static(
        os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])
    # Above the object size: one request per op.
    part = max(size, 8 << 20) + (1 << 20)
    tls = S3RequestTlsMode.DISABLED if scheme == "http" else S3RequestTlsMode.ENABLED
    client = S3Client(
        bootstrap=bootstrap, region=region, tls_mode=tls,
        signing_config=create_default_s3_signing_config(
            region=region, credential_provider=creds),
        part_size=part, multipart_upload_threshold=part,
        # Exactly CONCURRENCY connections (else sized from the throughput
        # target, 10 Gbps by default).
        max_active_connections_override=conc,
    )
    # The S3 client signs and sends to the Host header; the port is kept.
    host = hostport

    lock = threading.Lock()
    state = {"ops": 0, "errors": 0, "bytes": 0, "inflight": 0, "stop": False}
    done = threading.Event()
    rng = random.Random(1)
    keep = []  # the live meta requests (the binding needs a reference)

    def start_one():
        key = rng.choice(keys)
        path = f"/{bucket}/{key}"
        headers = HttpHeaders([("host", host)])
        got = [0]
        if op == "get":
            req = HttpRequest("GET", path, headers)

            def on_body(chunk, offset, **kw):
                got[0] += len(chunk)
        else:
            headers.add("content-length", str(size))
            headers.add("content-type", "application/octet-stream")
            req = HttpRequest("PUT", path, headers)
            on_body = None

        def on_done(error=None, status_code=None, **kw):
            with lock:
                if error is None and status_code is not None and status_code < 300:
                    state["ops"] += 1
                    state["bytes"] += got[0] if op == "get" else size
                else:
                    state["errors"] += 1
                    if state["errors"] == 1:
                        print(f"awscrt {op}: {error} {status_code}", file=sys.stderr)
                state["inflight"] -= 1
                again = not state["stop"]
                if again:
                    state["inflight"] += 1
                elif state["inflight"] == 0:
                    done.set()
            if again:
                start_one()

        kw = dict(request=req, on_done=on_done)
        if op == "get":
            kw.update(type=S3RequestType.GET_OBJECT, on_body=on_body)
        else:
            kw.update(type=S3RequestType.PUT_OBJECT, send_filepath=put_file)
        keep.append(client.make_request(**kw))
        if len(keep) > 4 * conc:
            del keep[: len(keep) - 2 * conc]

    cpu0, t0 = cpu_seconds(), time.monotonic()
    with lock:
        state["inflight"] = conc
    for _ in range(conc):
        start_one()
    time.sleep(secs)
    with lock:
        state["stop"] = True
        if state["inflight"] == 0:
            done.set()
    done.wait()
    t1, cpu1 = time.monotonic(), cpu_seconds()
    return state["ops"], state["errors"], state["bytes"], t1 - t0, cpu1 - cpu0


def main():
    client, op, conc, secs, keys_file, size, put_file = sys.argv[1:8]
    conc, secs, size = int(conc), float(secs), int(size)
    lines = open(keys_file).read().split()
    bucket, keys = lines[0], lines[1:]
    fn = {"boto3": run_boto3, "awscrt": run_awscrt}[client]
    ops, errors, nbytes, wall, cpu = fn(op, conc, secs, bucket, keys, size, put_file)
    print(json.dumps({"ops": ops, "errors": errors, "bytes": nbytes,
                      "seconds": wall, "cpu_seconds": cpu}))


if __name__ == "__main__":
    main()
