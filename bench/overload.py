#!/usr/bin/env python3
"""More customers than the shops can serve: goodput, errors and memory at
64, 1,000, 4,000 and 10,000 concurrent hot-item orders, through flashguard's
gateway and through HAProxy with `maxconn` per server and a queue,
alternating in one run.

usage: bench/overload.py [--rounds 3] [--seconds 10] [--levels 64,1000,4000,10000]

Three flashguard shops share one SQLite file (the default stack), a hot item
with stock to spare. wrk sends one order per request with a fresh
idempotency key (bench/overload.lua counts every status, and the 503s that
carry Retry-After). wrk is pinned to CPU 0, the shops and the proxy to CPU
1, so the comparison measures the servers, not wrk's cost growing with its
connections; wrk's timeout is 10 s, so a queued request is not counted as a
failure.

HAProxy 2.6: `maxconn 32` per server, `timeout queue 10s`, one thread (one
core). Its global maxconn is sized to the open-file hard limit, which is
20,000 here (HAProxy needs about two descriptors per connection and refuses
to start when it cannot raise its limit): HAPROXY_MAXCONN below. Connections
beyond it wait in the kernel's accept queue (somaxconn 4,096).

Per cell: orders acknowledged per second (goodput), answers that were not
201 (the deliberate ones, 503 with Retry-After, apart), wrk's socket
errors, p50/p99 of all answers (wrk, from the intended send), the proxy's
and the shops' highest RSS, and for flashguard whether the gateway marked a
living shop down. Writes bench/overload-results.json.

Installs haproxy and wrk with apt-get when missing. Everything runs on
127.0.0.1 and stops by itself.
"""
import argparse, http.client, json, os, resource, shutil, signal, statistics, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway import BIN, TOKEN, Procs, free_port, seed, shop, wait_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LUA = os.path.join(ROOT, "bench/overload.lua")
HAPROXY_MAXCONN = 9000
SERVER_CPU, WRK_CPU = "1", "0"


def pinned(cpu, args):
    return ["taskset", "-c", cpu, *args]


def rss_bytes(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class PeakRss:
    """The highest RSS of some processes while it runs."""

    def __init__(self, pids):
        self.pids, self.peak, self.stop = pids, {p: 0 for p in pids}, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            for pid in self.pids:
                self.peak[pid] = max(self.peak[pid], rss_bytes(pid))
            time.sleep(0.2)

    def finish(self):
        self.stop.set()
        self.thread.join()
        return self.peak


def flashguard(procs, backends):
    port, admin = free_port(), free_port()
    args = [BIN, "gateway", "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}"]
    for i, b in enumerate(backends):
        args += ["--backend", f"s{i + 1}=127.0.0.1:{b}"]
    proc = procs.start(pinned(SERVER_CPU, args), env=dict(os.environ, RUST_LOG="warn", FLASHGUARD_ADMIN_TOKEN=TOKEN))
    wait_port(port)
    return proc, port, admin


def haproxy(procs, tmp, backends):
    port = free_port()
    conf = os.path.join(tmp, f"haproxy-{port}.cfg")
    servers = "\n".join(f"  server s{i + 1} 127.0.0.1:{b} maxconn 32 check" for i, b in enumerate(backends))
    with open(conf, "w") as f:
        f.write(f"""global
  maxconn {HAPROXY_MAXCONN}
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  timeout queue 10s
  http-reuse always
frontend fe
  bind 127.0.0.1:{port}
  maxconn {HAPROXY_MAXCONN}
  default_backend shops
backend shops
  balance roundrobin
  option httpchk GET /readyz
{servers}
""")
    proc = procs.start(pinned(SERVER_CPU, ["haproxy", "-f", conf, "-db"]))
    wait_port(port)
    return proc, port, None


def wrk(port, connections, seconds, launcher=None, env=None):
    """`launcher` wraps wrk's command line (default: pinned to WRK_CPU);
    `env` adds variables (WRK_BROWSE=1: a sale's mix)."""
    args = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s", "--latency",
            "-s", LUA, f"http://127.0.0.1:{port}/api/orders"]
    command = launcher(args) if launcher else pinned(WRK_CPU, args)
    out = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, **(env or {}))).stdout
    lines = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in out.splitlines()
             if line.split(" ", 1)[0] in ("STATUSES", "RETRY_AFTER", "LATENCY_US", "SOCKET_ERRORS")}
    statuses = {int(k): v for k, v in json.loads(lines.get("STATUSES", "{}")).items()}
    p50, p99, _ = (int(v) for v in lines["LATENCY_US"].split())
    socket_errors = sum(int(v) for v in lines["SOCKET_ERRORS"].split())
    created = statuses.get(201, 0)
    retry_after = int(lines.get("RETRY_AFTER", "0"))
    other = sum(v for k, v in statuses.items() if k != 201)
    return {"goodput": created / seconds, "created": created, "statuses": statuses,
            "deliberate_503": retry_after, "errors": other - retry_after + socket_errors,
            "socket_errors": socket_errors, "p50_ms": p50 / 1000, "p99_ms": p99 / 1000}


def downs(admin):
    """State changes to down the gateway recorded (every shop lives here)."""
    conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=10)
    conn.request("GET", "/admin/events", headers={"Authorization": "Bearer " + TOKEN})
    events = json.loads(conn.getresponse().read())
    conn.close()
    return sum(1 for e in events if e["state"] == "down")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--levels", default="64,1000,4000,10000")
    args = ap.parse_args()
    levels = [int(n) for n in args.levels.split(",")]
    missing = [t for t in ("haproxy", "wrk", "taskset") if not shutil.which(t)]
    if missing and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=False, stdout=subprocess.DEVNULL)
    if os.cpu_count() < 2:
        sys.exit("two CPUs are needed: one for wrk, one for the servers")
    if not os.environ.get("FLASHGUARD_BIN"):
        subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "flashguard"], cwd=ROOT, check=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"open files: {hard}; HAProxy maxconn {HAPROXY_MAXCONN}; wrk on CPU {WRK_CPU}, servers on CPU {SERVER_CPU}")
    cells = {(proxy, n): [] for proxy in ("flashguard", "haproxy") for n in levels}
    shop_rss = []
    procs = Procs()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            db = f"sqlite://{tmp}/overload.db"
            shops = []
            for _ in range(3):
                proc, port = shop(procs, db)
                shops.append((proc, port))
            seed(shops[0][1])
            # The shops to CPU 1 with the proxies.
            for proc, _ in shops:
                subprocess.run(["taskset", "-a", "-p", "-c", SERVER_CPU, str(proc.pid)], capture_output=True, check=True)
            ports = [p for _, p in shops]
            for round_no in range(args.rounds):
                order = ("flashguard", "haproxy") if round_no % 2 == 0 else ("haproxy", "flashguard")
                for proxy in order:
                    run_procs = Procs()
                    proc, port, admin = (flashguard(run_procs, ports) if proxy == "flashguard"
                                         else haproxy(run_procs, tmp, ports))
                    wrk(port, 64, 2)  # warm-up
                    for n in levels:
                        peak = PeakRss([proc.pid] + [p.pid for p, _ in shops])
                        downs_before = downs(admin) if admin else 0
                        cell = wrk(port, n, args.seconds)
                        rss = peak.finish()
                        cell["proxy_rss_mb"] = rss[proc.pid] / 2**20
                        cell["shops_rss_mb"] = max(rss[p.pid] for p, _ in shops) / 2**20
                        cell["living_shops_marked_down"] = (downs(admin) - downs_before) if admin else None
                        cells[(proxy, n)].append(cell)
                        print(f"  round {round_no + 1} {proxy:10} {n:>6} customers: {cell['goodput']:>7.0f} orders/s  "
                              f"non-201 {sum(v for k, v in cell['statuses'].items() if k != 201):>7} "
                              f"(503+Retry-After {cell['deliberate_503']}, other errors {cell['errors']})  "
                              f"p50 {cell['p50_ms']:.0f} ms  p99 {cell['p99_ms']:.0f} ms  "
                              f"RSS proxy {cell['proxy_rss_mb']:.0f} MB, shops {cell['shops_rss_mb']:.0f} MB"
                              + (f"  shops marked down {cell['living_shops_marked_down']}" if admin else ""),
                              flush=True)
                        time.sleep(1)
                    run_procs.stop_all()
        finally:
            procs.stop_all()
    print(f"\nmedians of {args.rounds} rounds, {args.seconds} s each")
    print(f"  {'':10} {'customers':>9} {'orders/s':>9} {'non-201':>8} {'503+RA':>7} {'errors':>7} "
          f"{'p50 ms':>7} {'p99 ms':>7} {'RSS MB':>7} {'shops MB':>8} {'downs':>5}")
    summary = {}
    for (proxy, n), rows in cells.items():
        med = lambda key: statistics.median(r[key] for r in rows)
        non201 = statistics.median(sum(v for k, v in r["statuses"].items() if k != 201) for r in rows)
        downs_total = sum(r["living_shops_marked_down"] or 0 for r in rows) if proxy == "flashguard" else None
        summary[f"{proxy}/{n}"] = {"goodput": med("goodput"), "non_201": non201, "deliberate_503": med("deliberate_503"),
                                   "errors": med("errors"), "p50_ms": med("p50_ms"), "p99_ms": med("p99_ms"),
                                   "proxy_rss_mb": med("proxy_rss_mb"), "shops_rss_mb": med("shops_rss_mb"),
                                   "living_shops_marked_down": downs_total}
        s = summary[f"{proxy}/{n}"]
        print(f"  {proxy:10} {n:>9} {s['goodput']:>9.0f} {s['non_201']:>8.0f} {s['deliberate_503']:>7.0f} "
              f"{s['errors']:>7.0f} {s['p50_ms']:>7.0f} {s['p99_ms']:>7.0f} {s['proxy_rss_mb']:>7.0f} "
              f"{s['shops_rss_mb']:>8.0f} {'' if downs_total is None else downs_total:>5}")
    for proxy in ("flashguard", "haproxy"):
        best = max(summary[f"{proxy}/{n}"]["goodput"] for n in levels)
        held = {n: summary[f"{proxy}/{n}"]["goodput"] / best for n in levels if n >= 4000}
        print(f"  {proxy}: best goodput {best:.0f} orders/s; held at "
              + ", ".join(f"{n}: {share:.0%}" for n, share in held.items()))
    with open(os.path.join(ROOT, "bench/overload-results.json"), "w") as out:
        json.dump({"summary": summary, "cells": {f"{p}/{n}": rows for (p, n), rows in cells.items()}}, out, indent=2)


if __name__ == "__main__":
    main()
