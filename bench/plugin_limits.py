#!/usr/bin/env python3
"""/inbox beside plugins that take all the CPU they are given: the service
with no plugins (the baseline), with as many notification plugins spinning
until their deadline as the machine has cores (the service's HTTP runtime
has one worker per core), and with one logging plugin busy for a second on
every batch; side by side, rounds alternating.

For each variant, in each round:
 1. throughput: `wrk -t2 -c32` POSTs receipts to /inbox (async, durable =
    false, so no disk in the way) for --duration seconds: req/s, wrk's p99;
 2. latency: a probe alone sends one receipt every 10 ms for --probe
    seconds on a keep-alive connection: p50, p99, worst.
Before the spinners' measurements one receipt matches their job: its run
sends each spinner one notification, on which it spins until its deadline,
set to outlast both measurements; the next variant waits for them to end.
The CPU the plugin threads used (`plugin-call` threads in /proc) is shown
beside the figures: it says the plugins really ran.

Every service logs each receipt at info (the default LOG_LEVEL does), into
a file: that is what feeds the logging plugin its batches.

Goals (issue 16): with the spinners, /inbox p99 under 50 ms and throughput
within 10% of the baseline.

--before PATH adds the spinners and the slow logger run by another build
of the service (say, the one before plugin calls had threads of their own;
--label names it).

Needs wrk (see inbox_throughput.py) and the test plugins built:
  (cd tests/plugins && cargo build --release)

Usage: bench/plugin_limits.py [--rounds 3] [--duration 5] [--probe 5]
       [--binary PATH] [--before PATH] [--plugins DIR] [--packages DIR]
"""

import argparse
import datetime
import http.client
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
import time
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from inbox_throughput import ADAPTOR, CORE, ROOT, ensure_wrk  # noqa: E402

BODY = '{"bench":"plugin-limits"}'
SPIN_BODY = '{"bench_spin":true}'
LUA = f"""
wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"
"""
PROJECT = """
[engine]
core = "{core}"
concurrency = 1
[inbox]
durable = false
[jobs.spin]
adaptor = "{adaptor}"
expression = "fn(state => state);"
trigger = "spin"
[triggers.spin]
criteria = {{ bench_spin = true }}
"""
LOG_LEVEL = "warn,microservice::http::inbox=info,microservice::service=info"
P99_GOAL_MS = 50.0
# Time for the spin receipt's run (a warm worker takes milliseconds) and its
# notifications to start.
SPIN_START_S = 1.5
RATIO_GOAL = 0.90


class Service:
    """The service on a project of its own; its log goes to a file."""

    def __init__(self, name, binary, root, packages, plugins, tables):
        self.name, self.root = name, root
        project, folder = root / "project", root / "plugins"
        project.mkdir(parents=True)
        folder.mkdir()
        for file, source in plugins.items():
            shutil.copy(source, folder / file)
        (project / "project.toml").write_text(
            PROJECT.format(core=CORE, adaptor=ADAPTOR) + tables)
        env = dict(os.environ, PROJECT_DIR=str(project), DATA_DIR=str(root / "data"),
                   PACKAGES_DIR=str(packages), PLUGINS_DIR=str(folder), PORT="0",
                   HOST_URL="127.0.0.1", ENDPOINT_STYLE="async", LOG_FORMAT="pretty",
                   LOG_LEVEL=LOG_LEVEL, NO_COLOR="1")
        self.log = root / "service.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([binary, "serve"], env=env, cwd=root,
                                         stdout=subprocess.DEVNULL, stderr=log)
        self.addr = None
        self.spins = 0

    def wait_ready(self, timeout=300):
        deadline = time.time() + timeout
        while not self.addr:
            m = re.search(r"listening on http://(\S+)", self.log.read_text(errors="replace"))
            if m:
                self.addr = m.group(1)
            elif self.proc.poll() is not None or time.time() > deadline:
                sys.exit(f"{self.name} did not start:\n{self.tail()}")
            else:
                time.sleep(0.05)

    def tail(self, n=20):
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def get_json(self, path):
        with urllib.request.urlopen(f"http://{self.addr}{path}", timeout=30) as res:
            return json.load(res)

    def post(self, body):
        req = urllib.request.Request(f"http://{self.addr}/inbox", data=body.encode(),
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as res:
            return res.status

    def plugin_calls(self, prefix):
        return sum(p["calls"] for p in self.get_json("/api/plugins")
                   if p["name"].startswith(prefix))

    def plugin_cpu(self):
        """CPU seconds of the threads named plugin-call, all together (None
        for a build without such threads)."""
        total, found = 0.0, False
        for task in pathlib.Path(f"/proc/{self.proc.pid}/task").iterdir():
            try:
                if (task / "comm").read_text().strip() != "plugin-call":
                    continue
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            found = True
        return total if found else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def probe(addr, seconds):
    """One receipt every 10 ms on one keep-alive connection; the times in ms."""
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    times, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        conn.request("POST", "/inbox", body=BODY, headers={"content-type": "application/json"})
        res = conn.getresponse()
        res.read()
        if res.status != 202:
            sys.exit(f"the probe got {res.status}")
        times.append((time.monotonic() - t0) * 1000)
        time.sleep(0.01)
    conn.close()
    return times


def pct(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def run_wrk(addr, lua, args):
    """wrk's req/s and p99 (inf when no request was answered in time: a
    build whose plugins hold the HTTP threads)."""
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s",
           "--timeout", "5s", "--latency", "-s", str(lua), f"http://{addr}/inbox"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         timeout=args.duration + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Socket errors: (.*)", out)
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    p99 = float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)] if m else float("inf")
    return {"rps": rps, "p99": p99, "socket_errors": errors.group(1) if errors else ""}


def cores(value):
    return "n/a" if value is None else f"{value:.2f}"


def median_of(results, key):
    values = [x[key] for x in results if x[key] is not None]
    return statistics.median(values) if values else None


def measure(svc, args, lua):
    spinning = svc.name.startswith("spinners")
    if spinning:
        # The run's notification starts every spinner; they spin until their
        # deadline, which outlasts what follows. Nothing here asks the
        # service whether they started: under a build whose plugins hold the
        # HTTP threads, the answer would come only after they stopped.
        svc.post(SPIN_BODY)
        time.sleep(SPIN_START_S)
    cpu0, t0 = svc.plugin_cpu(), time.monotonic()
    res = run_wrk(svc.addr, lua, args)
    cpu1, t1 = svc.plugin_cpu(), time.monotonic()
    time.sleep(0.5)
    cpu2, t2 = svc.plugin_cpu(), time.monotonic()
    res["probe"] = probe(svc.addr, args.probe)
    cpu3, t3 = svc.plugin_cpu(), time.monotonic()
    res["cpu_wrk"] = None if cpu0 is None else (cpu1 - cpu0) / (t1 - t0)
    res["cpu_probe"] = None if cpu2 is None else (cpu3 - cpu2) / (t3 - t2)
    if spinning:
        svc.spins += args.spinners
        deadline = time.time() + args.spin + 120
        while svc.plugin_calls("spin-") < svc.spins:
            if time.time() > deadline:
                sys.exit(f"{svc.name}: the spinners did not reach their deadline\n{svc.tail()}")
            time.sleep(0.2)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="rounds, the variants alternating")
    ap.add_argument("--duration", type=int, default=5, help="seconds of wrk per measurement")
    ap.add_argument("--probe", type=int, default=5, help="seconds of the latency probe")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--connections", type=int, default=32, help="wrk connections")
    ap.add_argument("--spinners", type=int, default=os.cpu_count(),
                    help="spinning notification plugins (default: one per core)")
    ap.add_argument("--binary", default=str(ROOT / "target" / "release" / "microservice"))
    ap.add_argument("--before", help="another build of the service, run with the same plugins")
    ap.add_argument("--label", default="before", help="what to call the --before build")
    ap.add_argument("--plugins", default=str(ROOT / "tests" / "plugins" / "target" / "wasm32-wasip2" / "release"),
                    help="where spin_forever.wasm and slow_log.wasm are")
    ap.add_argument("--packages", default=str(ROOT / "target" / "bench-packages"))
    args = ap.parse_args()
    # Each spin outlasts the run's start, the wrk run, the pause and the probe.
    args.spin = args.duration + args.probe + 10
    wasm = pathlib.Path(args.plugins)
    for path, how in [(args.binary, "cargo build --release --bin microservice"),
                      (wasm / "spin_forever.wasm", "cd tests/plugins && cargo build --release"),
                      (wasm / "slow_log.wasm", "cd tests/plugins && cargo build --release")]:
        if not os.path.exists(path):
            sys.exit(f"{path} is missing: {how}")
    ensure_wrk()

    spinner_files = {f"spin-{i}.wasm": wasm / "spin_forever.wasm" for i in range(1, args.spinners + 1)}
    spinner_tables = "".join(f'\n[plugins.spin-{i}]\ntimeout = "{args.spin}s"\n'
                             for i in range(1, args.spinners + 1))
    logger_files = {"slow-log.wasm": wasm / "slow_log.wasm"}
    logger_tables = '\n[plugins.slow-log]\nconfig = { busy_ms = 1000 }\ntimeout = "3s"\n'
    builds = [("", args.binary)] + ([(f" ({args.label})", args.before)] if args.before else [])
    variants = [("baseline", args.binary, {}, "")]
    for suffix, binary in builds:
        variants.append((f"spinners x{args.spinners}{suffix}", binary, spinner_files, spinner_tables))
        variants.append((f"slow logger{suffix}", binary, logger_files, logger_tables))

    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-plugin-limits-"))
    lua = work / "post.lua"
    lua.write_text(LUA)
    services = []
    try:
        for i, (name, binary, files, tables) in enumerate(variants):
            services.append(Service(name, binary, work / f"s{i}", pathlib.Path(args.packages),
                                    files, tables))
        for s in services:
            s.wait_ready()
        results = {s.name: [] for s in services}
        print(f"{datetime.datetime.now():%Y-%m-%d %H:%M}  {os.cpu_count()} cores shared by wrk and the "
              f"services; wrk -t{args.threads} -c{args.connections} -d{args.duration}s, then a probe "
              f"every 10 ms for {args.probe}s; {args.spinners} spinners with a {args.spin}s deadline; "
              f"{args.rounds} rounds, alternating", flush=True)
        for r in range(args.rounds):
            order = services if r % 2 == 0 else services[::-1]
            for s in order:
                res = measure(s, args, lua)
                results[s.name].append(res)
                print(f"  round {r + 1} {s.name:24} {res['rps']:9.0f} req/s  wrk p99 {res['p99']:7.2f} ms  "
                      f"probe p50 {pct(res['probe'], 0.5):6.2f}  p99 {pct(res['probe'], 0.99):7.2f}  "
                      f"worst {max(res['probe']):8.2f} ms  plugin CPU {cores(res['cpu_wrk'])} / "
                      f"{cores(res['cpu_probe'])} cores"
                      + (f"  socket errors: {res['socket_errors']}" if res["socket_errors"] else ""),
                      flush=True)
        for s in services:
            if s.proc.poll() is not None:
                sys.exit(f"{s.name} died:\n{s.tail()}")
    finally:
        for s in services:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)

    base = statistics.median(x["rps"] for x in results["baseline"])
    print()
    print("| service | req/s (median) | ratio to baseline | wrk p99 | probe p50 | probe p99 | probe worst "
          "| plugin threads' CPU, wrk / probe | goals |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, rs in results.items():
        rps = statistics.median(x["rps"] for x in rs)
        probes = [t for x in rs for t in x["probe"]]
        p99 = pct(probes, 0.99)
        goals = ""
        if name.startswith("spinners"):
            met = p99 < P99_GOAL_MS and rps / base >= RATIO_GOAL
            goals = f"p99 < {P99_GOAL_MS:.0f} ms, ≥ {RATIO_GOAL:.2f}: {'met' if met else 'NOT met'}"
        print(f"| {name} | {rps:.0f} | {rps / base:.3f} | {statistics.median(x['p99'] for x in rs):.2f} ms "
              f"| {pct(probes, 0.5):.2f} ms | {p99:.2f} ms | {max(probes):.1f} ms "
              f"| {cores(median_of(rs, 'cpu_wrk'))} / {cores(median_of(rs, 'cpu_probe'))} cores "
              f"| {goals} |")
    print()
    for name, rs in results.items():
        if name == "baseline":
            continue
        paired = [x["rps"] / b["rps"] for x, b in zip(rs, results["baseline"])]
        print(f"{name}: ratio to the baseline round by round {', '.join('%.3f' % p for p in paired)}; "
              f"median {statistics.median(paired):.3f}")


if __name__ == "__main__":
    main()
