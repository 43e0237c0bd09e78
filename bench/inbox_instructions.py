#!/usr/bin/env python3
"""Instructions per /inbox request, counted by valgrind (callgrind): a
build against a baseline build, each with `[inbox] durable = false` and
`true`, side by side in one run.

Throughput on a shared 2-core machine moves by more than the few percent a
change to the request path costs (issue 18's goal: plain JSON within 3% of
the build before it), so this counts what the machine's load cannot move:
the instructions the service executes per request. Each service runs under
`valgrind --tool=callgrind` with instrumentation off; one client sends warm-up
requests, then callgrind's counters are switched on, `--requests` receipts
are sent one after another on one keep-alive connection (so a durable group
commit always holds one receipt: the same work in both builds), and the
counters are dumped. With `--connections N` they are sent over N
connections at once instead: group commits then hold several receipts, as
under wrk, so what each receipt costs on its own weighs as it does there
(how many a commit holds depends on timing, so this figure moves a little
between runs). Idle timers that fire meanwhile are counted too, and how
often the runtime's threads park and wake between requests depends on
timing: one run of a build can differ from the next by 2-3%, so
`--rounds N` measures each build N times, alternating, and reports
medians with the range of the rounds' ratios. The body is the throughput bench's (it
matches no job); with `--gzip`, this build also gets it gzip-compressed
(the baseline cannot decode that), set against its plain body.

A store that commits (durable) also waits on fsync, which instructions do
not show: the figure is CPU work per request, the throughput bench's
"server CPU per request" without the noise.

Usage: bench/inbox_instructions.py --binary PATH --baseline PATH
       [--requests 2000] [--connections 1] [--rounds 1] [--gzip] [--packages DIR]
       [--keep DIR]
Needs valgrind (apt-get install valgrind).
"""

import argparse
import gzip
import http.client
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import inbox_throughput as bench


def send_on(addr, count, gzipped, connections):
    """`count` receipts over `connections` keep-alive connections at once."""
    if connections <= 1:
        return send(addr, count, gzipped)
    import threading
    share = [count // connections + (i < count % connections) for i in range(connections)]
    threads = [threading.Thread(target=send, args=(addr, n, gzipped)) for n in share]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def send(addr, count, gzipped):
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    body = bench.BODY.encode()
    headers = {"content-type": "application/json"}
    if gzipped:
        body = gzip.compress(body, mtime=0)
        headers["content-encoding"] = "gzip"
    for _ in range(count):
        conn.request("POST", "/inbox", body=body, headers=headers)
        res = conn.getresponse()
        res.read()
        if res.status != 202:
            sys.exit(f"POST /inbox answered {res.status}")
    conn.close()


def callgrind(pid, flag):
    subprocess.run(["callgrind_control", flag, str(pid)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def instructions(out_prefix):
    """Ir of the last dump (callgrind writes one file per dump: `<out>.N`)."""
    dumps = sorted(pathlib.Path(out_prefix).parent.glob(pathlib.Path(out_prefix).name + ".*"),
                   key=lambda p: int(p.suffix[1:]) if p.suffix[1:].isdigit() else -1)
    text = dumps[-1].read_text(errors="replace")
    m = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
    if not m:
        sys.exit(f"no totals in {dumps[-1]}")
    return int(m.group(1))


def measure(binary, label, durable, work, packages, args, gzipped, round_=0):
    out = work / f"{label}-{durable}-{'gzip' if gzipped else 'plain'}-r{round_}.callgrind"
    wrapper = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
               f"--callgrind-out-file={out}", "--quiet"]
    # Started under valgrind from the first instruction (the journal's
    # compile at start-up takes a few seconds more that way; nothing of it
    # is counted).
    svc = bench.start_service(binary, work / out.stem, packages, durable, "warn",
                              wrapper=wrapper)
    svc.wait_ready(timeout=900)
    send(svc.addr, 50, gzipped)
    time.sleep(1)
    callgrind(svc.proc.pid, "--instr=on")
    t0 = time.time()
    send_on(svc.addr, args.requests, gzipped, args.connections)
    if durable:
        svc.wait_quiet(timeout=300)
    callgrind(svc.proc.pid, "--dump")
    elapsed = time.time() - t0
    svc.stop()
    return instructions(out) / args.requests, elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=str(bench.ROOT / "target" / "release" / "microservice"))
    ap.add_argument("--baseline", required=True)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--gzip", action="store_true")
    ap.add_argument("--connections", type=int, default=1,
                    help="send over this many connections at once, so that durable group "
                         "commits hold several receipts, as under wrk (the default, 1, "
                         "makes every commit hold one: the same work in both builds)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="measure each build this many times, alternating; the table gives "
                         "medians (the count moves by a few percent between runs with one "
                         "connection, with how the runtime's threads park and wake)")
    ap.add_argument("--packages", default=str(bench.ROOT / "target" / "bench-packages"))
    ap.add_argument("--keep", metavar="DIR",
                    help="keep the callgrind files in DIR (for callgrind_annotate) instead of "
                         "a temporary directory")
    args = ap.parse_args()
    if not shutil.which("valgrind"):
        sys.exit("valgrind is not installed: apt-get install -y valgrind")
    packages = pathlib.Path(args.packages)
    rows = []
    with tempfile.TemporaryDirectory(prefix="inbox-instructions-") as tmp:
        work = pathlib.Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        for durable in (False, True):
            befores, afters, ratios = [], [], []
            for r in range(args.rounds):
                after, t_after = measure(args.binary, "after", durable, work, packages, args,
                                         False, r)
                before, t_before = measure(args.baseline, "before", durable, work, packages,
                                           args, False, r)
                befores.append(before)
                afters.append(after)
                ratios.append(after / before)
                print(f"durable={str(durable).lower()} round {r + 1}/{args.rounds}: before "
                      f"{before:,.0f} after {after:,.0f} instructions per request "
                      f"({after / before:.3f}); {t_before:.0f} s / {t_after:.0f} s under valgrind",
                      flush=True)
            gz = None
            if args.gzip:
                # The baseline cannot decode a compressed body (that is what
                # the decoding step added): gzip is set against this build's
                # plain body.
                gz, _ = measure(args.binary, "after", durable, work, packages, args, True)
                print(f"durable={str(durable).lower()}: gzip body {gz:,.0f} instructions per "
                      f"request", flush=True)
            rows.append((durable, statistics.median(befores), statistics.median(afters),
                         statistics.median(ratios), min(ratios), max(ratios), gz))
    print()
    print("| `durable` | before (instructions/request) | after | after / before | range of rounds "
          "| gzip body, after | gzip / plain |")
    print("|---|---|---|---|---|---|---|")
    for durable, before, after, ratio, low, high, gz in rows:
        print(f"| {str(durable).lower()} | {before:,.0f} | {after:,.0f} | {ratio:.3f} | "
              f"{low:.3f}–{high:.3f} | "
              + (f"{gz:,.0f} | {gz / after:.3f} |" if gz else "| |"))


if __name__ == "__main__":
    main()
