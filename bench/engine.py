#!/usr/bin/env python3
"""Run latency and throughput of a trivial job: the `worker` engine mode
against the `cli` mode against a bare `core execute`, in one command.

Latency: sequential receipts through POST /inbox in sync mode (one answer =
one finished run), alternating between the modes; p50 and p99. Throughput:
concurrent clients for a fixed time against each mode; runs per second.

Usage: bench/engine.py [--runs N] [--seconds S] [--clients C] [--binary PATH]
"""

import argparse
import pathlib
import shutil
import statistics
import tempfile
import threading
import time

from latency import ROOT, start_service, time_bare, time_service


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] * 1000


def throughput(addr, seconds, clients):
    done, stop = [0] * clients, time.time() + seconds

    def client(i):
        while time.time() < stop:
            time_service(addr)
            done[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.time() - start)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--binary", default=str(ROOT / "target" / "release" / "microservice"))
    ap.add_argument("--packages", default=str(ROOT / "target" / "bench-packages"))
    args = ap.parse_args()
    packages = pathlib.Path(args.packages)
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-engine-"))
    worker, waddr = start_service(args.binary, work, packages, mode="worker", name="worker")
    cli, caddr = start_service(args.binary, work, packages, mode="cli", name="cli")
    try:
        for _ in range(3):  # warm-up: workers load core and the adaptor
            time_service(waddr)
        time_service(caddr)
        time_bare(packages, work)
        lat = {"worker": [], "cli": [], "bare core execute": []}
        for _ in range(args.runs):
            lat["worker"].append(time_service(waddr))
            lat["cli"].append(time_service(caddr))
            lat["bare core execute"].append(time_bare(packages, work))
        tput = {
            "worker": throughput(waddr, args.seconds, args.clients),
            "cli": throughput(caddr, min(args.seconds, 10), min(args.clients, 4)),
        }
    finally:
        for proc in (worker, cli):
            proc.terminate()
            proc.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)
    bare_p50 = pct(lat["bare core execute"], 50)
    print(f"latency, {args.runs} sequential runs each (sync /inbox end to end; bare = the command alone)")
    print(f"{'':20} {'p50 ms':>9} {'p99 ms':>9} {'bare p50 / p50':>15}")
    for name, xs in lat.items():
        print(f"{name:20} {pct(xs, 50):9.1f} {pct(xs, 99):9.1f} {bare_p50 / pct(xs, 50):14.1f}x")
    print(f"throughput ({args.clients} clients for worker, up to 4 for cli; {args.seconds:.0f} s)")
    for name, rps in tput.items():
        print(f"{name:20} {rps:9.1f} runs/s")


if __name__ == "__main__":
    main()
