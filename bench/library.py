#!/usr/bin/env python3
"""GET /api/library latency with 10,000 run records and 200 library files.

Makes a project with two shared jobs and 200 files in its library folder,
starts the service once so that it creates its store, writes 10,000 run
records into it (over 120 days, so about three quarters fall in the 90-day
window), starts it again and asks each query in turn over one keep-alive
connection. Prints p50 and p99 per query; the issue's goal is p99 < 20 ms
on the release build.

Usage: bench/library.py [--requests N] [--binary PATH] [--packages DIR]
"""

import argparse
import datetime
import http.client
import json
import os
import pathlib
import random
import shutil
import sqlite3
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from inbox_throughput import ROOT, Server  # noqa: E402

PROJECT = """
[engine]
mode = "cli"
[jobs.steady]
adaptor = "@openfn/language-common@3.3.4"
trigger = "go"
library = true
expression = "each('$.data.items[*]', fn(state => state));"
[jobs.flaky]
adaptor = "@openfn/language-common@3.3.4"
trigger = "go"
library = true
expression = "fn(state => { if (state.data.fail) { throw new Error('no'); } return state; })"
[triggers.go]
criteria = { kind = "never-sent" }
"""
HELPERS = ["each", "fn", "merge", "field", "dataValue", "sourceValue", "combine", "fields"]
QUERIES = [
    "/api/library",
    "/api/library?adaptor=common&helper=each&version=%5E3&limit=10",
    "/api/library?q=row&limit=100",
]


def make_project(work):
    project = work / "project"
    (project / "library").mkdir(parents=True)
    (project / "project.toml").write_text(PROJECT)
    for i in range(200):
        outer, inner = HELPERS[i % len(HELPERS)], HELPERS[(i * 3 + 1) % len(HELPERS)]
        (project / "library" / f"job{i:03}.js").write_text(
            f"// adaptor: @openfn/language-common@3.{i % 4}.{i % 7}\n"
            f"each('$.data.rows[*]', {outer}(state => {{ const n = `row ${{state.data?.id ?? {i}}}`; "
            f"return {inner}(s => s)(state); }}));\nfn(async s => ({{ ...s, k{i}: {i} }}));\n")
    return project


def start(binary, project, data, packages):
    env = dict(os.environ, PROJECT_DIR=str(project), DATA_DIR=str(data), PACKAGES_DIR=str(packages),
               PORT="0", HOST_URL="127.0.0.1", LOG_LEVEL="warn,microservice::service=info")
    env.pop("DATABASE_URL", None)
    env.pop("ADMIN_API_KEY", None)
    server = Server("library", [binary, "serve"], env=env)
    deadline = time.time() + 300
    while not server.addr:
        if server.proc.poll() is not None or time.time() > deadline:
            sys.exit("the service did not start:\n" + "".join(server.lines[-20:]))
        time.sleep(0.05)
    return server.proc, server.addr


def write_runs(db, n=10_000):
    now = datetime.datetime.now(datetime.timezone.utc)
    rows = []
    for i in range(n):
        job = ["steady", "flaky"][i % 2]
        t = now - datetime.timedelta(minutes=random.randint(1, 60 * 24 * 120))
        at = t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03}Z"
        ok = random.random() < (0.95 if job == "steady" else 0.6)
        rows.append((f"bench{i:06}", job, "go", "success" if ok else "failure", at, at, 100))
    c = sqlite3.connect(db)
    c.executemany("INSERT INTO runs (id, job, trigger, status, started_at, finished_at, duration_ms)"
                  " VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    c.commit()
    c.close()


def measure(addr, path, n):
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port))
    times = []
    for _ in range(n):
        t = time.perf_counter()
        conn.request("GET", path)
        res = conn.getresponse()
        body = res.read()
        times.append((time.perf_counter() - t) * 1000)
        assert res.status == 200, body
    times.sort()
    return len(json.loads(body)), times[len(times) // 2], times[int(len(times) * 0.99)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--binary", default=str(ROOT / "target" / "release" / "microservice"))
    ap.add_argument("--packages", default=str(ROOT / "target" / "bench-packages"))
    args = ap.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-library-"))
    try:
        project, data = make_project(work), work / "data"
        proc, _ = start(args.binary, project, data, args.packages)
        proc.terminate()
        proc.wait(timeout=60)
        write_runs(data / "microservice.db")
        proc, addr = start(args.binary, project, data, args.packages)
        try:
            measure(addr, QUERIES[0], 20)  # warm-up
            print(f"{args.requests} requests each, one connection; 10,000 runs, 200 library files")
            for path in QUERIES:
                count, p50, p99 = measure(addr, path, args.requests)
                print(f"{path:70} {count:4} entries  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms")
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
