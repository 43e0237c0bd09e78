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

With `--postgres`, a throwaway PostgreSQL cluster is started (see
pgcluster.py: durable settings, pg_stat_statements) and the service runs a
third time, durable, with `DATABASE_URL` pointing at it. Around each of its
wrk runs the statistics are reset, and once its backlog has drained (no
receipt pending or leased) the statements it ran are read back per kind:
statements per receipt on the ingest path (the group-commit INSERT) and end
to end (INSERT, lease, ack: every receipt leased and acknowledged; the body
matches no job, so no run starts), WAL bytes and flushes, and the
database's CPU. Then, unless `--job-receipts 0`, a second pair of services
whose job matches the body (`fn(state => state)`), journal and PostgreSQL,
is sent that many receipts each, a few at a time, and timed until every run
finished and every receipt was acknowledged: what a run adds (run records).
The cluster is stopped at the end, on Ctrl-C and on errors too. Goal:
PostgreSQL-backed durable >= 50% of the journal's, at most one statement
per receipt on the ingest path.

Usage: bench/inbox_throughput.py [--duration 5] [--threads 2] [--connections 32]
       [--rounds 2] [--binary PATH] [--bare PATH] [--baseline PATH] [--gzip]
       [--postgres] [--job-receipts 400] [--packages DIR] [--log-level warn]
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

import pgcluster

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
[jobs.bench]
adaptor = "{adaptor}"
expression = "fn(state => state);"
trigger = "{trigger}"
[triggers.never]
criteria = {{ bench_never_matches = true }}
[triggers.always]
criteria = {{ bench = "inbox-throughput" }}
"""
GOALS = {"durable=false": 0.80, "durable=true": 0.25}
PG = "postgres durable=true"
PG_GOAL = 0.5  # of the journal's durable throughput


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

    def wait_ready(self, timeout=300, jobs=()):
        deadline = time.time() + timeout
        while not self.addr:
            if self.proc.poll() is not None or time.time() > deadline:
                sys.exit(f"{self.name} did not start:\n" + "".join(self.lines[-20:]))
            time.sleep(0.05)
        # One request by hand: the answer must be the service's 202.
        answer = post(self.addr)
        assert answer == dict(ACCEPTED, data=list(jobs)), (self.name, answer)

    def metrics(self):
        """`/metrics` summed by metric and label filter: {(name, 'k="v"'): value}."""
        with urllib.request.urlopen(f"http://{self.addr}/metrics", timeout=10) as res:
            text = res.read().decode()
        found = {}
        for m in re.finditer(r"^(\w+)\{([^}]*)\} (\S+)$", text, re.M):
            for part in m.group(2).split(","):
                key = (m.group(1), part)
                found[key] = found.get(key, 0) + float(m.group(3))
        return found

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


def start_service(binary, work, packages, durable, log_level, label="", database_url=None,
                  runs=False, wrapper=(), commits=None):
    """The service with the bench project; `database_url` stores in
    PostgreSQL, `runs` makes its job match the bench body; `wrapper` is a
    command the binary runs under (valgrind, for bench/inbox_instructions.py);
    `commits` sets `[cluster] commits` (group commits in flight)."""
    name = f"{label}durable={'true' if durable else 'false'}"
    root = work / name.replace(" ", "-").replace(",", "")
    project, plugins = root / "project", root / "plugins"
    project.mkdir(parents=True)
    plugins.mkdir()  # empty: only the built-in journal, when durable
    (project / "project.toml").write_text(PROJECT.format(
        core=CORE, adaptor=ADAPTOR, durable="true" if durable else "false",
        trigger="always" if runs else "never")
        + (f"[cluster]\ncommits = {commits}\n" if commits else ""))
    env = dict(os.environ, PROJECT_DIR=str(project), DATA_DIR=str(root / "data"),
               PACKAGES_DIR=str(packages), PLUGINS_DIR=str(plugins), PORT="0",
               HOST_URL="127.0.0.1", ENDPOINT_STYLE="async", LOG_FORMAT="pretty",
               LOG_LEVEL=f"{log_level},microservice::service=info")
    env.pop("DATABASE_URL", None)
    if database_url:
        env["DATABASE_URL"] = database_url
    return Server(name, [*wrapper, binary, "serve"], env=env, cwd=root)


def post(addr, timeout=10):
    """One receipt: the 202's answer."""
    req = urllib.request.Request(f"http://{addr}/inbox", data=BODY.encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as res:
        assert res.status == 202, res.status
        return json.load(res)


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


def wait_for_other_wrk():
    """Another benchmark's wrk on this machine would halve what ours gets."""
    waited = False
    while subprocess.run(["pgrep", "-x", "wrk"], capture_output=True).returncode == 0:
        if not waited:
            print("  (another wrk is running: waiting for it)", flush=True)
            waited = True
        time.sleep(1)


def backlog(cluster, database):
    """Receipts the service stored in PostgreSQL and has not acknowledged."""
    return int(cluster.sql("SELECT count(*) FROM receipts WHERE status IN ('pending', 'leased')",
                           database)[0][0])


def finished_runs(server):
    return sum(v for (name, part), v in server.metrics().items()
               if name == "microservice_runs_total" and part.startswith("status="))


def unacknowledged(server):
    return sum(v for (name, part), v in server.metrics().items()
               if name == "microservice_queue_messages" and part in ('status="pending"', 'status="leased"'))


def run_jobs(server, count, window=None, concurrency=8, timeout=600):
    """Sends `count` receipts whose job runs, `concurrency` at a time, and
    waits until all their runs finished and all were acknowledged."""
    from concurrent.futures import ThreadPoolExecutor
    before = finished_runs(server)
    if window:
        window.open()
    t0 = time.time()
    with ThreadPoolExecutor(concurrency) as pool:
        answers = list(pool.map(lambda _: post(server.addr, timeout=30), range(count)))
    assert all(a["data"] == ["bench"] for a in answers), answers[:3]
    sent = time.time() - t0
    while finished_runs(server) - before < count or unacknowledged(server) > 0:
        if time.time() - t0 > timeout or server.proc.poll() is not None:
            sys.exit(f"{server.name}: the runs did not finish:\n" + "".join(server.lines[-20:]))
        time.sleep(0.05)
    res = {"seconds": time.time() - t0, "sent_s": sent}
    if window:
        res["db"] = window.close(count)
    return res


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
    ap.add_argument("--postgres", action="store_true",
                    help="also the service durable in a throwaway PostgreSQL, with its statements counted")
    ap.add_argument("--commits", default="",
                    help="with --postgres: also run the PostgreSQL service with these [cluster] commits "
                         "(group commits in flight), e.g. 1,2,8, beside the default (4)")
    ap.add_argument("--job-receipts", type=int, default=400,
                    help="with --postgres: receipts per round whose job runs, journal and PostgreSQL (0: none)")
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
    # A SIGTERM stops the servers and the cluster as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))

    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-inbox-"))
    lua = work / "post.lua"
    lua.write_text(LUA)
    gzip_lua = work / "post-gzip.lua"
    gzip_lua.write_text(GZIP_LUA)
    servers = {}
    job_servers = {}
    cluster = None
    # (name, server, wrk script): one wrk run per variant and round.
    variants = []
    windows = []       # the PostgreSQL service's wrk runs, as pgcluster.Window saw them
    job_results = {}   # with --postgres: name -> [run_jobs result]
    idle = None
    try:
        servers["bare hyper"] = Server("bare hyper", [args.bare])
        packages = pathlib.Path(args.packages)
        for durable in (False, True):
            name = f"durable={'true' if durable else 'false'}"
            servers[name] = start_service(args.binary, work, packages, durable, args.log_level)
            if args.baseline:
                servers[f"before {name}"] = start_service(
                    args.baseline, work, packages, durable, args.log_level, "before ")
        if args.postgres:
            cluster = pgcluster.Cluster()
            url = cluster.create_database("bench")
            # After the others: their first start installs the packages.
            servers["durable=true"].wait_ready()
            servers[PG] = start_service(args.binary, work, packages, True, args.log_level,
                                        "postgres ", database_url=url)
            for c in [int(c) for c in args.commits.split(",") if c.strip()]:
                servers[f"postgres commits={c} durable=true"] = start_service(
                    args.binary, work, packages, True, args.log_level, f"postgres commits={c} ",
                    database_url=cluster.create_database(f"bench_c{c}"), commits=c)
        for s in servers.values():
            s.wait_ready()
        if cluster:
            window = pgcluster.Window(cluster, "bench", lambda: backlog(cluster, "bench") == 0)
            # What an idle replica asks the database, for 10 s.
            window.open()
            time.sleep(10)
            idle = window.close(0)
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
                if n == PG:
                    window.open()
                wait_for_other_wrk()
                cpu0 = s.cpu_seconds()
                res = run_wrk(s.addr, script, args)
                res["drain_s"] = s.wait_quiet()  # the durable queue's backlog, if any
                res["cpu_ms_per_req"] = (s.cpu_seconds() - cpu0) * 1000 / max(res["requests"], 1)
                extra = ""
                if n == PG:
                    db = window.close(res["requests"])
                    windows.append(db)
                    ingest, end_to_end = pgcluster.per_receipt(db)
                    stored = db["statements"].get(pgcluster.INGEST, [0, 0])[1]
                    extra = (f"  stored {stored}  statements/receipt: ingest {ingest:.4f}, end to end "
                             f"{end_to_end:.4f}  db cpu {db['db_cpu_s'] * 1e6 / max(res['requests'], 1):.0f} µs/req")
                results[n].append(res)
                print(f"  round {r + 1} {n:22} {res['rps']:10.0f} req/s  p50 {res['p50']:6.2f} ms  "
                      f"p99 {res['p99']:6.2f} ms  non-2xx {res['non2xx']}  "
                      f"server cpu {res['cpu_ms_per_req'] * 1000:.0f} µs/req  "
                      f"quiet after {res['drain_s']:.1f} s" + extra
                      + (f"  socket errors: {res['socket_errors']}" if res["socket_errors"] else ""),
                      flush=True)
        for n, s in servers.items():
            if s.proc.poll() is not None:
                sys.exit(f"{n} died:\n" + "".join(s.lines[-20:]))
        if cluster and args.job_receipts > 0:
            # The wrk phase is over: the job services get the machine.
            for s in servers.values():
                s.stop()
            job_url = cluster.create_database("benchjob")
            job_servers["journal, job"] = start_service(args.binary, work, packages, True, args.log_level,
                                                        "journal job ", runs=True)
            job_servers["postgres, job"] = start_service(args.binary, work, packages, True, args.log_level,
                                                         "postgres job ", database_url=job_url, runs=True)
            job_window = pgcluster.Window(cluster, "benchjob", lambda: backlog(cluster, "benchjob") == 0)
            for s in job_servers.values():
                s.wait_ready(jobs=["bench"])
                while finished_runs(s) < 1 or unacknowledged(s) > 0:  # the readiness receipt's run
                    time.sleep(0.1)
            job_results = {n: [] for n in job_servers}
            print(f"\nreceipts whose job runs: {args.job_receipts} per round, 8 at a time", flush=True)
            for r in range(args.rounds):
                order = list(job_servers) if r % 2 == 0 else list(job_servers)[::-1]
                for n in order:
                    s = job_servers[n]
                    s.wait_quiet()
                    res = run_jobs(s, args.job_receipts, job_window if "postgres" in n else None)
                    job_results[n].append(res)
                    extra = ""
                    if "db" in res:
                        extra = "  statements/receipt: ingest %.4f, end to end %.4f" % pgcluster.per_receipt(res["db"])
                    print(f"  round {r + 1} {n:14} all {args.job_receipts} runs finished and acknowledged "
                          f"in {res['seconds']:.2f} s ({args.job_receipts / res['seconds']:.0f} receipts/s; "
                          f"sending took {res['sent_s']:.2f} s)" + extra, flush=True)
    finally:
        for s in list(servers.values()) + list(job_servers.values()):
            s.stop()
        if cluster:
            cluster.stop()
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
        if n.startswith("postgres"):
            to_journal = med[n] / med["durable=true"]
            verdict = f"{to_journal:.3f} of the journal's: ≥ {PG_GOAL:.0%} {'met' if to_journal >= PG_GOAL else 'NOT met'}"
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
    if args.postgres:
        paired = [x["rps"] / b["rps"] for x, b in zip(results[PG], results["durable=true"])]
        print(f"{PG}: ratio to the journal's durable=true round by round "
              f"{', '.join('%.3f' % r for r in paired)}; median {statistics.median(paired):.3f} "
              f"(goal ≥ {PG_GOAL})")
        print()
        print("\n".join(pgcluster.summary(windows, "PostgreSQL, wrk runs (the body matches no job)")))
        print()
        print("\n".join(pgcluster.idle_summary(idle, "PostgreSQL, one idle replica")))
        if job_results:
            print()
            for n, rs in job_results.items():
                print(f"{n}: {statistics.median(args.job_receipts / x['seconds'] for x in rs):.0f} receipts/s "
                      f"to all runs finished and acknowledged (median of {len(rs)}: "
                      f"{', '.join('%.0f' % (args.job_receipts / x['seconds']) for x in rs)})")
            print()
            print("\n".join(pgcluster.summary([x["db"] for x in job_results["postgres, job"]],
                                              "PostgreSQL, receipts whose job runs (fn(state => state))")))
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
