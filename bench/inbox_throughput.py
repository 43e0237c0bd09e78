#!/usr/bin/env python3
"""Async POST /inbox throughput under wrk: bare hyper vs the service with
[inbox] durable = false vs durable = true, side by side in one run.

All three servers run at once on 127.0.0.1 and wrk is pointed at each in
turn, alternating the order every round, so machine noise hits all alike.
The service's project has one job whose trigger never matches the bench body:
no @openfn/core run starts, but every receipt is parsed and matched and, when
durable, stored (fsync per group commit) before the 202: already leased while
a delivery slot is free, then delivered from memory and acknowledged. After
each durable run the script waits until the service has drained its backlog
(its CPU goes quiet) before the next run, and reports how long that took.

Needs wrk. If it is missing and this runs as root, it is installed with
`apt-get install -y wrk` (after `apt-get update` if the first try fails);
otherwise install it yourself (Debian/Ubuntu: `sudo apt-get install wrk`).

Goals: durable >= 25% of bare hyper, non-durable >= 80%.

With `--baseline PATH`, a second build of the service (say, main's) runs
beside the first, both durable settings, so a change can be measured
against the build before it in the same run; the ratios after/before are
printed per round. With `--gzip`, the service (both settings) is also sent
the same body gzip-compressed (`Content-Encoding: gzip`).

Usage: bench/inbox_throughput.py [--duration 5] [--threads 2] [--connections 32]
       [--rounds 2] [--binary PATH] [--bare PATH] [--baseline PATH] [--gzip]
       [--packages DIR] [--log-level warn]
"""

import argparse
import datetime
import gzip
import json
import os
import pathlib
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORE = "@openfn/core@1.5.1"           # as bench/latency.py: shares its packages
ADAPTOR = "@openfn/language-common@3.3.4"
BODY = '{"bench":"inbox-throughput","n":1,"tags":["a","b"]}'
ACCEPTED = {"meta": {"message": "Data accepted and processing has begun."}, "data": [], "errors": []}
LUA = f"""
wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"
"""
# The same body gzip-compressed, written byte by byte as Lua escapes.
GZIP_BODY = "".join("\\%03d" % b for b in gzip.compress(BODY.encode(), mtime=0))
GZIP_LUA = f"""
wrk.method = "POST"
wrk.body = "{GZIP_BODY}"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Content-Encoding"] = "gzip"
"""
PROJECT = """
[engine]
core = "{core}"
[inbox]
durable = {durable}
[jobs.never]
adaptor = "{adaptor}"
expression = "fn(state => state);"
trigger = "never"
[triggers.never]
criteria = {{ bench_never_matches = true }}
"""
GOALS = {"durable=false": 0.80, "durable=true": 0.25}


def ensure_wrk():
    if shutil.which("wrk"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        sys.exit("wrk is not installed: install it (Debian/Ubuntu: sudo apt-get install -y wrk)")
    print("wrk is missing: apt-get install -y wrk", flush=True)
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if subprocess.run(["apt-get", "install", "-y", "wrk"], **quiet).returncode != 0:
        subprocess.run(["apt-get", "update"], check=True, **quiet)
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, **quiet)


class Server:
    """A process that logs `listening on http://ADDR` on stderr."""

    def __init__(self, name, cmd, env=None, cwd=None):
        self.name = name
        self.lines = []
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.addr = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line)
            m = re.search(r"listening on http://(\S+)", line)
            if m and not self.addr:
                self.addr = m.group(1)

    def wait_ready(self, timeout=300):
        deadline = time.time() + timeout
        while not self.addr:
            if self.proc.poll() is not None or time.time() > deadline:
                sys.exit(f"{self.name} did not start:\n" + "".join(self.lines[-20:]))
            time.sleep(0.05)
        # One request by hand: the answer must be the service's 202.
        req = urllib.request.Request(f"http://{self.addr}/inbox", data=BODY.encode(),
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as res:
            answer = json.load(res)
            assert res.status == 202 and answer == ACCEPTED, (self.name, res.status, answer)

    def cpu_seconds(self):
        """User + system CPU time of the process (all threads), in seconds."""
        fields = pathlib.Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_quiet(self, timeout=120):
        """Waits until the process uses < 2% of a core over 250 ms; returns seconds waited."""
        t0 = time.time()
        while time.time() - t0 < timeout:
            before = self.cpu_seconds()
            time.sleep(0.25)
            if self.cpu_seconds() - before < 0.005:
                return time.time() - t0
        return float("inf")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_service(binary, work, packages, durable, log_level, label=""):
    name = f"{label}durable={'true' if durable else 'false'}"
    root = work / name.replace(" ", "-")
    project, plugins = root / "project", root / "plugins"
    project.mkdir(parents=True)
    plugins.mkdir()  # empty: only the built-in journal, when durable
    (project / "project.toml").write_text(PROJECT.format(
        core=CORE, adaptor=ADAPTOR, durable="true" if durable else "false"))
    env = dict(os.environ, PROJECT_DIR=str(project), DATA_DIR=str(root / "data"),
               PACKAGES_DIR=str(packages), PLUGINS_DIR=str(plugins), PORT="0",
               HOST_URL="127.0.0.1", ENDPOINT_STYLE="async", LOG_FORMAT="pretty",
               LOG_LEVEL=f"{log_level},microservice::service=info")
    return Server(name, [binary, "serve"], env=env, cwd=root)


def run_wrk(addr, lua, args):
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s",
           "--timeout", "5s", "--latency", "-s", str(lua), f"http://{addr}/inbox"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         timeout=args.duration + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)

    def pct(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    return {"rps": rps, "requests": total, "non2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": errors.group(1) if errors else "", "p50": pct(50), "p99": pct(99)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2, help="runs per variant, alternating")
    ap.add_argument("--binary", default=str(ROOT / "target" / "release" / "microservice"))
    ap.add_argument("--bare", default=str(ROOT / "bench" / "bare-hyper" / "target" / "release" / "bare-hyper"))
    ap.add_argument("--baseline", help="another build of the service to run beside --binary")
    ap.add_argument("--gzip", action="store_true", help="also post the body gzip-compressed")
    ap.add_argument("--packages", default=str(ROOT / "target" / "bench-packages"))
    ap.add_argument("--log-level", default="warn",
                    help="the services' LOG_LEVEL (at the default, info, each receipt logs a line)")
    args = ap.parse_args()
    for path, how in [(args.binary, "cargo build --release --bin microservice"),
                      (args.bare, "cargo build --release --manifest-path bench/bare-hyper/Cargo.toml")] + (
                          [(args.baseline, "a release build of the baseline")] if args.baseline else []):
        if not os.access(path, os.X_OK):
            sys.exit(f"{path} is missing: {how}")
    ensure_wrk()

    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-inbox-"))
    lua = work / "post.lua"
    lua.write_text(LUA)
    gzip_lua = work / "post-gzip.lua"
    gzip_lua.write_text(GZIP_LUA)
    servers = {}
    # (name, server, wrk script): one wrk run per variant and round.
    variants = []
    try:
        servers["bare hyper"] = Server("bare hyper", [args.bare])
        packages = pathlib.Path(args.packages)
        for durable in (False, True):
            name = f"durable={'true' if durable else 'false'}"
            servers[name] = start_service(args.binary, work, packages, durable, args.log_level)
            if args.baseline:
                servers[f"before {name}"] = start_service(
                    args.baseline, work, packages, durable, args.log_level, "before ")
        for s in servers.values():
            s.wait_ready()
        variants = [(n, n, lua) for n in servers]
        if args.gzip:
            variants += [(f"gzip {n}", n, gzip_lua) for n in ("durable=false", "durable=true")]
        names = [v[0] for v in variants]
        results = {n: [] for n in names}
        print(f"{datetime.datetime.now():%Y-%m-%d %H:%M}  wrk -t{args.threads} -c{args.connections} "
              f"-d{args.duration}s, POST {len(BODY)}-byte JSON, 127.0.0.1, {os.cpu_count()} cores "
              f"shared by wrk and the server; services at LOG_LEVEL={args.log_level}; "
              f"{args.rounds} rounds, alternating", flush=True)
        for r in range(args.rounds):
            order = variants if r % 2 == 0 else variants[::-1]
            for n, server, script in order:
                s = servers[server]
                s.wait_quiet()
                cpu0 = s.cpu_seconds()
                res = run_wrk(s.addr, script, args)
                res["drain_s"] = s.wait_quiet()  # the durable queue's backlog, if any
                res["cpu_ms_per_req"] = (s.cpu_seconds() - cpu0) * 1000 / max(res["requests"], 1)
                results[n].append(res)
                print(f"  round {r + 1} {n:22} {res['rps']:10.0f} req/s  p50 {res['p50']:6.2f} ms  "
                      f"p99 {res['p99']:6.2f} ms  non-2xx {res['non2xx']}  "
                      f"server cpu {res['cpu_ms_per_req'] * 1000:.0f} µs/req  "
                      f"quiet after {res['drain_s']:.1f} s"
                      + (f"  socket errors: {res['socket_errors']}" if res["socket_errors"] else ""),
                      flush=True)
        for n, s in servers.items():
            if s.proc.poll() is not None:
                sys.exit(f"{n} died:\n" + "".join(s.lines[-20:]))
    finally:
        for s in servers.values():
            s.stop()
        shutil.rmtree(work, ignore_errors=True)

    med = {n: statistics.median(x["rps"] for x in results[n]) for n in names}
    base = med["bare hyper"]
    print()
    print("| server | req/s (median) | runs | ratio to bare | goal | p50 ms | p99 ms | server CPU µs/req | quiet after s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in names:
        rs = results[n]
        goal = GOALS.get(n)
        ratio = med[n] / base
        verdict = "" if goal is None else f"≥ {goal:.0%} {'met' if ratio >= goal else 'NOT met'}"
        print(f"| {n} | {med[n]:.0f} | {', '.join('%.0f' % x['rps'] for x in rs)} | {ratio:.3f} | {verdict} | "
              f"{statistics.median(x['p50'] for x in rs):.2f} | {statistics.median(x['p99'] for x in rs):.2f} | "
              f"{statistics.median(x['cpu_ms_per_req'] for x in rs) * 1000:.0f} | "
              f"{statistics.median(x['drain_s'] for x in rs):.1f} |")
    # Each round's runs are minutes apart at most: their ratio to that
    # round's bare run is less exposed to the machine's drift than the medians.
    print()
    for n in names[1:]:
        paired = [x["rps"] / b["rps"] for x, b in zip(results[n], results["bare hyper"])]
        print(f"{n}: ratio to bare hyper round by round {', '.join('%.3f' % r for r in paired)}; "
              f"median {statistics.median(paired):.3f}")
    if args.baseline:
        print()
        for n in ("durable=false", "durable=true"):
            paired = [a["rps"] / b["rps"] for a, b in zip(results[n], results[f"before {n}"])]
            cpu = [a["cpu_ms_per_req"] / b["cpu_ms_per_req"] for a, b in zip(results[n], results[f"before {n}"])]
            print(f"{n}: after/before {med[n] / med['before ' + n]:.3f} (medians); round by round "
                  f"{', '.join('%.3f' % r for r in paired)}, median {statistics.median(paired):.3f}; "
                  f"server CPU per request after/before, median {statistics.median(cpu):.3f}")
    if args.gzip:
        print()
        for n in ("durable=false", "durable=true"):
            print(f"gzip {n}: {med['gzip ' + n] / med[n]:.3f} of the plain body's throughput (medians)")
    if any(x["non2xx"] for rs in results.values() for x in rs):
        print("WARNING: some answers were not 2xx (see non-2xx above)")


if __name__ == "__main__":
    main()
