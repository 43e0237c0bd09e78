#!/usr/bin/env python3
"""How long a receipt can wait while the durable inbox is under sustained
load and its journal is compacted: the service with [inbox] durable = true,
then (the baseline) with durable = false, each under the same load.

Load: `wrk -t2 -c32` POSTs receipts for --duration seconds (default 130,
long enough for the compactions that run a minute and two minutes after
start). Beside it a probe sends one receipt every 10 ms on a connection of
its own and times each answer. At about 20-30k receipts a second the
journal grows by 100-200 MB a minute and each compaction rewrites it, so
the probe's worst answer shows what a rewrite costs the inbox. With no
journal, the baseline's worst answer is what the machine's own noise costs.

Needs wrk (see inbox_throughput.py). Traffic goes to 127.0.0.1 only.

Usage: bench/compaction_stall.py [--duration 130] [--binary PATH] [--packages DIR]
"""

import argparse
import http.client
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from inbox_throughput import LUA, ROOT, ensure_wrk, run_wrk, start_service  # noqa: E402

SLOW_S = 0.2


def probe(addr, stop, out):
    host, port = addr.rsplit(":", 1)
    start = time.monotonic()
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            conn.request("POST", "/inbox", body='{"probe":1}',
                         headers={"content-type": "application/json"})
            res = conn.getresponse()
            res.read()
            status = res.status
            conn.close()
        except OSError as e:
            status = type(e).__name__
        out.append((time.monotonic() - t0, status, t0 - start))
        time.sleep(0.01)


def journal_bytes(root):
    f = root / "data" / "journal" / "messages.journal"
    return f.stat().st_size if f.exists() else 0


def measure(name, server, root, args, lua):
    samples, stop = [], threading.Event()
    prober = threading.Thread(target=probe, args=(server.addr, stop, samples))
    peak = [0]

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], journal_bytes(root))
            time.sleep(1)

    watcher = threading.Thread(target=watch)
    prober.start()
    watcher.start()
    try:
        res = run_wrk(server.addr, lua, args)
    finally:
        stop.set()
        prober.join()
        watcher.join()
    times = sorted(t for t, _, _ in samples)
    bad = [s for _, s, _ in samples if s != 202]
    slow_at = [f"{at:.0f}s:{t * 1000:.0f}ms" for t, _, at in samples if t > SLOW_S]
    row = {
        "name": name, "rps": res["rps"], "timeouts": res["socket_errors"] or "none",
        "non2xx": res["non2xx"], "probes": len(times),
        "p50": statistics.median(times) * 1000,
        "p99": times[int(len(times) * 0.99)] * 1000,
        "worst": times[-1] * 1000, "slow": sum(t > SLOW_S for t in times),
        "probe_errors": len(bad), "journal_mb": peak[0] / 1e6,
    }
    print(f"  {name}: {row['rps']:.0f} req/s, probe p50 {row['p50']:.1f} ms, p99 {row['p99']:.1f} ms, "
          f"worst {row['worst']:.0f} ms, {row['slow']} over {SLOW_S * 1000:.0f} ms, "
          f"journal peak {row['journal_mb']:.0f} MB", flush=True)
    if slow_at:
        print(f"    slow probes (seconds into the run: answer time): {', '.join(slow_at)}", flush=True)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=130, help="seconds of load per variant")
    ap.add_argument("--binary", default=str(ROOT / "target" / "release" / "microservice"))
    ap.add_argument("--packages", default=str(ROOT / "target" / "bench-packages"))
    args = ap.parse_args()
    if not os.access(args.binary, os.X_OK):
        sys.exit(f"{args.binary} is missing: cargo build --release --bin microservice")
    ensure_wrk()
    # What run_wrk reads besides the duration.
    args.threads, args.connections = 2, 32
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-stall-"))
    lua = work / "post.lua"
    lua.write_text(LUA)
    rows = []
    try:
        print(f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC  wrk -t2 -c32 -d{args.duration}s "
              f"plus a probe every 10 ms, one variant after the other", flush=True)
        for durable in (True, False):
            server = start_service(args.binary, work, pathlib.Path(args.packages), durable, "warn")
            try:
                server.wait_ready()
                name = f"durable={'true' if durable else 'false'}"
                rows.append(measure(name, server, work / name, args, lua))
            finally:
                server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print("| service | req/s | probe p50 ms | probe p99 ms | worst probe ms | probes over 200 ms | wrk socket errors | journal peak MB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['worst']:.0f} | "
              f"{r['slow']} of {r['probes']} | {r['timeouts']} | {r['journal_mb']:.0f} |")
    if any(r["non2xx"] or r["probe_errors"] for r in rows):
        print("WARNING: some answers were not 202")


if __name__ == "__main__":
    main()
