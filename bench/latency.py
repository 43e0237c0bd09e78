#!/usr/bin/env python3
"""Receipt -> run-finished latency through the service, against a bare
`core execute` of the same job and state, side by side in one run.

The service runs in sync mode with the `cli` engine (one `core execute` per
run, as the original did), so one POST /inbox returns when the run has
finished; the baseline is the exact `node core execute` command the engine
would run. The two alternate, so machine noise hits both alike. Prints the
medians and their ratio.

Usage: bench/latency.py [--runs N] [--binary PATH]
"""

import argparse
import json
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORE = "@openfn/core@1.5.1"
ADAPTOR = "@openfn/language-common@3.3.4"
EXPRESSION = "fn(state => { state.data.number = state.data.number * 2; return state; });\n"
PROJECT = f"""
[engine]
core = "{CORE}"
[jobs.double]
adaptor = "{ADAPTOR}"
expression = '''{EXPRESSION}'''
trigger = "t"
[triggers.t]
criteria = {{ number = 2 }}
"""


def start_service(binary, work, packages, mode="cli", name="project"):
    project = work / name
    project.mkdir()
    (project / "project.toml").write_text(PROJECT)
    env = dict(os.environ, PROJECT_DIR=str(project), DATA_DIR=str(work / (name + "-data")),
               PACKAGES_DIR=str(packages), PORT="0", HOST_URL="127.0.0.1",
               ENDPOINT_STYLE="sync", ENGINE_MODE=mode, LOG_LEVEL="warn,microservice::service=info")
    proc = subprocess.Popen([binary, "serve"], env=env, stderr=subprocess.PIPE, text=True)
    found = {}

    def read():
        for line in proc.stderr:
            m = re.search(r"listening on http://(\S+)", line)
            if m:
                found["addr"] = m.group(1)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.time() + 300
    while "addr" not in found:
        if proc.poll() is not None or time.time() > deadline:
            sys.exit("the service did not start")
        time.sleep(0.05)
    return proc, found["addr"]


def time_service(addr):
    body = json.dumps({"number": 2}).encode()
    req = urllib.request.Request(f"http://{addr}/inbox", data=body,
                                 headers={"content-type": "application/json"})
    t = time.perf_counter()
    with urllib.request.urlopen(req) as res:
        answer = json.load(res)
    elapsed = time.perf_counter() - t
    assert res.status == 201 and answer["jobs"][0]["state"]["data"]["number"] == 4, answer
    return elapsed


def time_bare(packages, work):
    def pkg(spec):
        name = spec.rsplit("@", 1)[0]
        return packages / spec.replace("/", "+") / "node_modules" / name
    run = work / "bare"
    run.mkdir(exist_ok=True)
    (run / "expression.js").write_text(EXPRESSION)
    (run / "state.json").write_text(json.dumps({"data": {"number": 2}}))
    cmd = ["node", str(pkg(CORE) / "bin" / "core"), "execute", "-l", str(pkg(ADAPTOR)),
           "-e", str(run / "expression.js"), "-s", str(run / "state.json"), "-o", str(run / "out.json")]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=run)
    elapsed = time.perf_counter() - t
    assert json.loads((run / "out.json").read_text())["data"]["number"] == 4
    return elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--binary", default=str(ROOT / "target" / "release" / "microservice"))
    ap.add_argument("--packages", default=str(ROOT / "target" / "bench-packages"))
    args = ap.parse_args()
    packages = pathlib.Path(args.packages)
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-latency-"))
    proc, addr = start_service(args.binary, work, packages)
    try:
        time_service(addr)  # warm-up: first-run file cache effects
        time_bare(packages, work)
        service, bare = [], []
        for _ in range(args.runs):
            bare.append(time_bare(packages, work))
            service.append(time_service(addr))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    ms = lambda xs: statistics.median(xs) * 1000
    print(f"runs: {args.runs} each, alternating")
    print(f"bare core execute     median {ms(bare):7.1f} ms  (min {min(bare)*1000:.1f}, max {max(bare)*1000:.1f})")
    print(f"through the service   median {ms(service):7.1f} ms  (min {min(service)*1000:.1f}, max {max(service)*1000:.1f})")
    print(f"ratio service / bare: {ms(service) / ms(bare):.3f}")


if __name__ == "__main__":
    main()
