"""A throwaway PostgreSQL cluster for the benchmarks, and what it counts.

`initdb` into a temporary folder, `postgres` on a free port of 127.0.0.1,
stopped (fast shutdown) and removed by `stop()`; the server also gets
SIGQUIT (an immediate shutdown) if the process that started it dies
without stopping it. Debian's binaries in /usr/lib/postgresql/<version>/bin
(the newest), or `PG_BIN`. Run as root, the server runs as the `postgres`
user, as in tests/e2e/postgres.rs (PostgreSQL refuses root).

Unlike the tests' clusters, this one keeps PostgreSQL's durable defaults
(`fsync`, `synchronous_commit`, `full_page_writes` on): a commit is flushed
to the WAL before it returns, as the journal syncs before the 202.
`pg_stat_statements` is preloaded and `pg_stat_wal` counts WAL flushes, so
a benchmark can read what each statement cost.

Never used by the service's own tests, and never pointed at a database of
value: `reset()` clears the cluster's statistics.
"""

import ctypes
import os
import pathlib
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

# The statements of the PostgreSQL store, by what they do (first match).
# pg_stat_statements shows constants as parameters ($n).
LABELS = [
    (r"INSERT INTO receipts", "receipts: group-commit INSERT"),
    (r"WITH due AS", "receipts: lease UPDATE … SKIP LOCKED"),
    (r"UPDATE receipts SET status = \S+, finished_at_ms", "receipts: ack UPDATE"),
    (r"UPDATE receipts SET status = \S+, attempts", "receipts: lease late (duplicate keys)"),
    (r"UPDATE receipts SET status = \S+, not_before_ms", "receipts: nack (retry)"),
    (r"UPDATE receipts SET status = \S+, last_error", "receipts: dead letter"),
    (r"DELETE FROM receipts", "receipts: compaction DELETE"),
    (r"SELECT \(SELECT count\(\*\) FROM receipts", "receipts: queue gauges (/metrics)"),
    (r"INSERT INTO runs", "runs: start_run INSERT"),
    (r"UPDATE runs SET status = \$2", "runs: finish_run UPDATE"),
    (r"SELECT COALESCE\(\s*\(SELECT state FROM runs", "runs: job state read"),
    (r"INSERT INTO replicas", "replicas: heartbeat"),
    (r"SELECT EXISTS \(SELECT 1 FROM replicas", "replicas: anyone gone?"),
    (r"WITH gone AS", "replicas: hand on the gone"),
    (r"^(BEGIN|START TRANSACTION)", "BEGIN"),
    (r"^COMMIT", "COMMIT"),
]


def label(query):
    for pattern, name in LABELS:
        if re.search(pattern, query):
            return name
    return query[:70]


def bin_dir():
    if os.environ.get("PG_BIN"):
        return pathlib.Path(os.environ["PG_BIN"])
    found = sorted(pathlib.Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if not found:
        raise SystemExit("no PostgreSQL binaries in /usr/lib/postgresql/*/bin (apt-get install "
                         "postgresql, or set PG_BIN)")
    return found[-1].parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    # PR_SET_PDEATHSIG = 1: SIGQUIT when the process that started it dies.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGQUIT)


class Cluster:
    def __init__(self, settings=()):
        self.bin = bin_dir()
        self.owner = None
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                raise SystemExit("running as root, PostgreSQL needs a `postgres` user "
                                 "(Debian's postgresql package creates it)")
            self.owner = (user.pw_uid, user.pw_gid)
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="bench-pg-"))
        as_owner = {}
        if self.owner:
            os.chown(self.dir, *self.owner)
            as_owner = dict(user=self.owner[0], group=self.owner[1], extra_groups=[])
        self.port = free_port()
        self.proc = None
        out = subprocess.run([self.bin / "initdb", "-A", "trust", "-U", "postgres", "-E", "UTF8",
                              "-D", self.dir / "data"], capture_output=True, text=True, **as_owner)
        if out.returncode != 0:
            self.stop()
            raise SystemExit(f"initdb failed:\n{out.stderr}")
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": self.port,
            "unix_socket_directories": f"'{self.dir}'",
            "shared_preload_libraries": "'pg_stat_statements'",
            "pg_stat_statements.track_utility": "on",
            "max_connections": 200,
        }
        conf.update(dict(settings))
        with open(self.dir / "data" / "postgresql.conf", "a") as f:
            f.writelines(f"{k} = {v}\n" for k, v in conf.items())
        self.log = open(self.dir / "log", "w")
        if self.owner:
            os.chown(self.dir / "log", *self.owner)
        self.proc = subprocess.Popen([self.bin / "postgres", "-D", self.dir / "data"],
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
                                     preexec_fn=_die_with_parent, **as_owner)
        deadline = time.time() + 60
        while subprocess.run([self.bin / "pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port)]
                             ).returncode != 0:
            if self.proc.poll() is not None or time.time() > deadline:
                log = (self.dir / "log").read_text()
                self.stop()
                raise SystemExit(f"postgres did not start:\n{log}")
            time.sleep(0.1)
        self.sql("CREATE EXTENSION pg_stat_statements")

    def url(self, user="postgres", database="postgres"):
        return f"postgres://{user}@127.0.0.1:{self.port}/{database}?sslmode=disable"

    def sql(self, query, database="postgres"):
        """Rows of `query` (run by psql as the superuser) as lists of strings."""
        out = subprocess.run([self.bin / "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At",
                              "-F", "\x1f", "-d", self.url(database=database), "-c", query],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"psql: {out.stderr.strip()}\n{query}")
        return [line.split("\x1f") for line in out.stdout.splitlines()]

    def create_database(self, name):
        """A login role and a database it owns, both `name`: statements are
        counted per role, so the benchmark's own queries (as `postgres`)
        never mix with the service's."""
        self.sql(f"CREATE ROLE {name} LOGIN")
        self.sql(f"CREATE DATABASE {name} OWNER {name}")
        return self.url(user=name, database=name)

    def reset(self):
        """Zeroes pg_stat_statements and the WAL counters."""
        self.sql("SELECT pg_stat_statements_reset(), pg_stat_reset_shared('wal')")

    def counts(self, role):
        """Since `reset()`: per statement label of `role`, [calls, rows,
        total ms]; and the cluster's WAL counters (records, bytes, flushes)."""
        by = {}
        rows = self.sql(
            "SELECT regexp_replace(s.query, '\\s+', ' ', 'g'), s.calls, s.rows, s.total_exec_time "
            f"FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname = '{role}'")
        for query, calls, nrows, ms in rows:
            c = by.setdefault(label(query), [0, 0, 0.0])
            c[0] += int(calls)
            c[1] += int(nrows)
            c[2] += float(ms)
        records, wal_bytes, syncs = self.sql("SELECT wal_records, wal_bytes, wal_sync FROM pg_stat_wal")[0]
        return by, {"records": int(records), "bytes": int(wal_bytes), "syncs": int(syncs)}

    def wal_position(self):
        """The WAL's insert position, in bytes."""
        hi, lo = self.sql("SELECT pg_current_wal_lsn()")[0][0].split("/")
        return (int(hi, 16) << 32) + int(lo, 16)

    def cpu_seconds(self):
        """User + system CPU time of the server and all its processes."""
        if not self.proc:
            return 0.0
        total = 0
        for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            pid = int(stat.parent.name)
            if pid == self.proc.pid or int(fields[1]) == self.proc.pid:
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # a fast shutdown
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


# Statements that are not the receipts' cost: the replica's own heartbeat
# (per second, whatever the load) and the benchmark's reading of /metrics.
BACKGROUND = ("replicas: heartbeat", "replicas: hand on the gone")
BENCH_OWN = ("receipts: queue gauges (/metrics)",)
INGEST = "receipts: group-commit INSERT"


class Window:
    """What the service's database (`role`) did between `open()` and
    `close()`. Both wait until `drained()` (no receipt pending or leased)
    and then 1.1 s: an idle backend reports its WAL counters within 1 s."""

    def __init__(self, cluster, role, drained):
        self.cluster, self.role, self.drained = cluster, role, drained

    def _settle(self, timeout=300):
        deadline = time.time() + timeout
        while not self.drained() and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(1.1)

    def open(self):
        self._settle()
        self.cluster.reset()
        self.wal0 = self.cluster.wal_position()
        self.cpu0 = self.cluster.cpu_seconds()
        self.t0 = time.time()

    def close(self, receipts):
        self._settle()
        by, wal = self.cluster.counts(self.role)
        return {"statements": by, "receipts": receipts, "seconds": time.time() - self.t0,
                "wal_bytes": self.cluster.wal_position() - self.wal0, "wal_syncs": wal["syncs"],
                "db_cpu_s": self.cluster.cpu_seconds() - self.cpu0}


def per_receipt(w):
    """Statements per receipt: (ingest, end to end) of one window."""
    n = max(w["receipts"], 1)
    by = w["statements"]
    ingest = by.get(INGEST, [0])[0] / n
    end_to_end = sum(c[0] for k, c in by.items() if k not in BACKGROUND + BENCH_OWN) / n
    return ingest, end_to_end


def summary(windows, title):
    """Markdown lines: medians over `windows` of what each kind of
    statement cost per receipt."""
    import statistics
    med = statistics.median
    labels = sorted({k for w in windows for k in w["statements"] if k not in BENCH_OWN},
                    key=lambda k: (k in BACKGROUND, -max(w["statements"].get(k, [0])[0] for w in windows)))
    lines = [f"{title}: {len(windows)} windows, {sum(w['receipts'] for w in windows)} receipts",
             "", "| statement | calls per receipt | rows per call | mean ms per call |", "|---|---|---|---|"]
    for k in labels:
        cs = [w["statements"].get(k, [0, 0, 0.0]) for w in windows]
        calls = med(c[0] / max(w["receipts"], 1) for c, w in zip(cs, windows))
        rows = sum(c[1] for c in cs) / max(sum(c[0] for c in cs), 1)
        ms = sum(c[2] for c in cs) / max(sum(c[0] for c in cs), 1)
        if k in BACKGROUND:
            per_s = med(c[0] / w["seconds"] for c, w in zip(cs, windows))
            lines.append(f"| {k} (background) | {per_s:.2f} per second | {rows:.1f} | {ms:.3f} |")
        else:
            lines.append(f"| {k} | {calls:.4f} | {rows:.1f} | {ms:.3f} |")
    pr = [per_receipt(w) for w in windows]
    n = [max(w["receipts"], 1) for w in windows]
    lines += ["",
              f"ingest path: {med(p[0] for p in pr):.4f} statements per receipt "
              f"({', '.join('%.4f' % p[0] for p in pr)}); "
              f"{med(1 / p[0] for p in pr if p[0]):.1f} receipts per INSERT" if any(p[0] for p in pr) else
              "ingest path: no INSERT",
              f"end to end (receipt to acknowledgement, heartbeats left out): "
              f"{med(p[1] for p in pr):.4f} statements per receipt ({', '.join('%.4f' % p[1] for p in pr)})",
              f"WAL: {med(w['wal_bytes'] / k for w, k in zip(windows, n)):.0f} bytes and "
              f"{med(w['wal_syncs'] / k for w, k in zip(windows, n)):.4f} flushes per receipt; "
              f"database CPU {med(w['db_cpu_s'] * 1e6 / k for w, k in zip(windows, n)):.0f} µs per receipt"]
    return lines


def idle_summary(w, title):
    """Markdown lines: what an idle replica asks per second."""
    s = w["seconds"]
    calls = ", ".join(f"{k} {c[0] / s:.2f}" for k, c in sorted(w["statements"].items(), key=lambda kc: -kc[1][0])
                      if k not in BENCH_OWN)
    return [f"{title} ({s:.1f} s), statements per second: {calls}; WAL {w['wal_bytes'] / s:.0f} bytes and "
            f"{w['wal_syncs'] / s:.2f} flushes per second; database CPU {w['db_cpu_s'] * 1e3 / s:.1f} ms per second"]
