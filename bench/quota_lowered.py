#!/usr/bin/env python3
"""A CPU quota lowered under a running gateway, in the middle of a load of
kept-alive connections: what the gateway serves once it is lowered.

usage: bench/quota_lowered.py [--runs 5] [--seconds 15] [--lower-at 3]
                              [--cores 0.5] [--connections 64] [--http2]

The gateway (`workers` left at 0: a serving thread per CPU, as many taking
connections as the quota allows) runs in a cgroup of its own, with no
quota at first, in front of one nginx backend answering a fixed JSON body.
wrk holds --connections kept-alive connections for --seconds; at
--lower-at seconds the group's quota is set to --cores, as a container's
CPU limit is changed in place. The figure is the requests a second the
gateway answered from two seconds after the change to the end (its own
`gateway_request_duration_seconds_count`, read from its admin port).

A thread beyond the lowered quota's share takes no new connection. Whether
it keeps serving the connections it has for as long as their clients stay
(as builds before `Closing` did) or asks them to move (`Connection: close`
on their next answer; wrk reconnects, and the connection goes to a thread
within the share) is what this measures: FLASHGUARD_BIN is the build
measured (default target/release/flashguard), FLASHGUARD_BASELINE_BIN an
earlier one, run by turns with it in every run; the ratio printed is
FLASHGUARD_BIN's over the baseline's, run by run, with the median and the
spread. Also printed: wrk's errors (a connection told to close must cost
no request), its p99 over the whole run, the connections left beyond
thread 0 at the end, and the gateway's CPU use against the lowered quota.
Each run also measures FLASHGUARD_BIN with the quota set before the load
(`capped_from_start`, its threads settled to the quota's share before wrk
connects): the most that moving the connections can reach.

--http2 puts the gateway behind TLS and loads it with h2load (16
connections x 10 streams) instead: a connection beyond the share is told
GOAWAY, and h2load opens another. Its p99 is computed from its
per-request log, and its errors are the requests it counted as failed.

Installs nginx, wrk and nghttp2-client when missing. Everything runs on 127.0.0.1 and
stops by itself. Writes bench/quota-lowered-results.json (with --http2,
bench/quota-lowered-http2-results.json).
"""
import argparse, json, os, re, shutil, statistics, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gateway as g  # noqa: E402  (the processes and helpers of bench/gateway.py)
import tls  # noqa: E402  (the certificate of bench/tls.py)
from scaleout import Groups  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "quota-lowered-results.json")
RESULTS_HTTP2 = os.path.join(ROOT, "bench", "quota-lowered-http2-results.json")


def gateway(procs, binary, backend, tls_files=()):
    port, admin = g.free_port(), g.free_port()
    proc = procs.start([binary, "gateway", "--listen", f"127.0.0.1:{port}",
                        "--admin-listen", f"127.0.0.1:{admin}", "--backend", f"s1=127.0.0.1:{backend}", *tls_files],
                       env=dict(os.environ, RUST_LOG="warn", FLASHGUARD_ADMIN_TOKEN=g.TOKEN))
    line = proc.stdout.readline().strip()
    assert line.startswith("listening on "), line
    g.wait_port(admin)
    return proc, port, admin


def h2load(port, seconds, tmp):
    log = os.path.join(tmp, f"h2load-{port}.log")
    out = subprocess.run(["h2load", "-D", str(seconds), "-c", "16", "-m", "10", "-t", "2", "--log-file", log,
                          f"https://127.0.0.1:{port}/"], check=True, capture_output=True, text=True).stdout
    failed = re.search(r"(\d+) failed", out)
    times = sorted(int(line.split()[2]) for line in open(log) if len(line.split()) >= 3)
    os.remove(log)
    return {"errors": int(failed.group(1)) if failed else -1,
            "p99_ms": times[int(len(times) * 0.99)] / 1000 if times else float("nan")}


def answered(admin):
    return g.metric(g.scrape(admin), "gateway_request_duration_seconds_count")


def beyond_thread_0(admin):
    text = g.scrape(admin)
    total = 0.0
    for line in text.splitlines():
        if line.startswith("gateway_client_connections{") and 'thread="0"' not in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def set_quota(group, cores, v2):
    if v2:
        with open(os.path.join(group, "cpu.max"), "w") as f:
            f.write("max 100000" if cores is None else f"{int(cores * 100_000)} 100000")
    else:
        with open(os.path.join(group, "cpu.cfs_quota_us"), "w") as f:
            f.write("-1" if cores is None else str(int(cores * 100_000)))


def one(name, binary, backend, groups, args, capped_from_start=False):
    procs = g.Procs()
    try:
        proc, port, admin = gateway(procs, binary, backend, args.tls_files)
        group = groups.group(name, 1.0)
        set_quota(group, args.cores if capped_from_start else None, groups.v2)
        groups.place(group, proc.pid)
        if capped_from_start:
            # Until its threads have seen the quota (read every second).
            deadline = time.time() + 10
            while g.metric(g.scrape(admin), "gateway_serving_threads_accepting") != 1 and time.time() < deadline:
                time.sleep(0.1)
        result = {}

        def load():
            if args.http2:
                result["wrk"] = h2load(port, args.seconds, args.tmp)
            else:
                result["wrk"] = g.wrk(port, "/", args.connections, args.seconds)

        wrk = threading.Thread(target=load)
        started = time.time()
        wrk.start()
        time.sleep(args.lower_at)
        set_quota(group, args.cores, groups.v2)
        time.sleep(2)
        t1, c1, cpu1 = time.time(), answered(admin), cpu_seconds(proc.pid)
        time.sleep(max(0.5, started + args.seconds - 0.5 - time.time()))
        t2, c2, cpu2 = time.time(), answered(admin), cpu_seconds(proc.pid)
        left = beyond_thread_0(admin)
        wrk.join()
        return {"rps_lowered": (c2 - c1) / (t2 - t1), "errors": result["wrk"]["errors"],
                "p99_ms": result["wrk"]["p99_ms"], "beyond_thread_0": left,
                "cpu_of_quota": (cpu2 - cpu1) / (t2 - t1) / args.cores}
    finally:
        procs.stop_all()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--seconds", type=int, default=15)
    p.add_argument("--lower-at", type=float, default=3)
    p.add_argument("--cores", type=float, default=0.5)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--http2", action="store_true")
    args = p.parse_args()
    if args.seconds < args.lower_at + 4:
        sys.exit("--seconds must leave at least 4 s after --lower-at")
    for tool, package in (("nginx", "nginx"), ("wrk", "wrk"), ("h2load", "nghttp2-client")):
        if not shutil.which(tool):
            subprocess.run(["apt-get", "install", "-y", "-q", package], check=True)
    builds = {"flashguard": g.BIN}
    if g.BASELINE_BIN:
        builds["baseline"] = g.BASELINE_BIN
    groups = Groups()
    procs = g.Procs()
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            backend = g.nginx_backend(procs, tmp, "backend")
            args.tmp = tmp
            args.tls_files = ()
            if args.http2:
                cert, key, _ = tls.certificate(tmp)
                args.tls_files = ("--tls-cert", cert, "--tls-key", key)
            for run in range(args.runs):
                # By turns: each build first in every other run.
                order = list(builds.items())
                if run % 2:
                    order.reverse()
                row = {"run": run + 1}
                for name, binary in order:
                    row[name] = one(name, binary, backend, groups, args)
                # What the same build serves when its quota was there
                # before the load: what moving the connections can reach.
                row["capped_from_start"] = one("capped_from_start", g.BIN, backend, groups, args, True)
                if "baseline" in row:
                    row["ratio"] = row["flashguard"]["rps_lowered"] / row["baseline"]["rps_lowered"]
                print(json.dumps(row), flush=True)
                rows.append(row)
    finally:
        procs.stop_all()
        groups.remove()
    summary = {"runs": rows, "args": {k: v for k, v in vars(args).items() if k not in ("tmp", "tls_files")}}
    for name in [*builds, "capped_from_start"]:
        rates = [r[name]["rps_lowered"] for r in rows]
        summary[name] = {"rps_lowered_median": statistics.median(rates), "min": min(rates), "max": max(rates),
                         "errors": sum(r[name]["errors"] for r in rows),
                         "beyond_thread_0_at_end": [r[name]["beyond_thread_0"] for r in rows]}
    if "baseline" in builds:
        ratios = [r["ratio"] for r in rows]
        summary["ratio"] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=1))
    with open(RESULTS_HTTP2 if args.http2 else RESULTS, "w") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
