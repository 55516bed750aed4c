#!/usr/bin/env python3
"""Time from process start to the first 200 answer on GET /healthz.

    startup.py [--runs N] -- COMMAND [ARG...]

Each run picks a free port, sets PORT in the environment and replaces "{port}"
in the arguments, starts COMMAND (stdout and stderr discarded), then connects to
127.0.0.1:PORT every 100 microseconds until the connection is accepted and
GET /healthz answers 200. The time is taken from just before the process is
spawned to the end of that answer; the process is then stopped with SIGTERM.
Prints one JSON line: {"runs":[ms,...],"median_ms":...,"min_ms":...,"max_ms":...}.
"""
import json
import os
import socket
import statistics
import subprocess
import sys
import time

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
POLL_SLEEP = 0.0001
TIMEOUT = 10.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ask(port):
    """The status of GET /healthz, or None while nothing listens."""
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", port))
    except ConnectionRefusedError:
        s.close()
        return None
    try:
        s.sendall(REQUEST)
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        parts = data.split(b" ", 2)
        return int(parts[1]) if len(parts) > 1 else 0
    finally:
        s.close()


def once(command):
    port = free_port()
    argv = [a.replace("{port}", str(port)) for a in command]
    env = dict(os.environ, PORT=str(port))
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            status = ask(port)
            if status == 200:
                return (time.perf_counter() - start) * 1000.0
            if proc.poll() is not None:
                sys.exit(f"startup: {argv[0]} exited with status {proc.returncode}")
            if time.perf_counter() - start > TIMEOUT:
                sys.exit(f"startup: no 200 on /healthz within {TIMEOUT:.0f} s (last status {status})")
            time.sleep(POLL_SLEEP)
    finally:
        proc.terminate()
        proc.wait()


def main():
    args = sys.argv[1:]
    runs = 20
    if args[:1] == ["--runs"]:
        runs = int(args[1])
        args = args[2:]
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        sys.exit(__doc__)
    once(args)  # page the binary into the cache; not counted
    times = [once(args) for _ in range(runs)]
    print(json.dumps({
        "runs": [round(t, 2) for t in times],
        "median_ms": round(statistics.median(times), 2),
        "min_ms": round(min(times), 2),
        "max_ms": round(max(times), 2),
    }))


if __name__ == "__main__":
    main()
