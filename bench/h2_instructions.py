#!/usr/bin/env python3
"""Instructions per HTTP/2 request over TLS: the gateway's own cost, and
HAProxy's on the same harness, counted, not timed.

usage: bench/h2_instructions.py [--requests 4000] [--connections 4] [--queued] [--no-haproxy]
                               [--keep-dumps DIR] BIN [BIN...]

Each build's gateway runs under valgrind's callgrind (instrumentation off
while it starts) with one serving thread and a backend limit no run
reaches, TLS with an ECDSA P-256 certificate made here, in front of an
nginx backend answering a fixed JSON body. After a warm-up, instrumentation
is switched on, h2load sends exactly REQUESTS requests (4 connections x 10
streams), and the count is dumped: the whole process, TLS included. Then
HAProxy (`nbthread 1`, no maxconn) is counted the same way. Prints
instructions per request for each and the ratio to the first.

--queued keeps the gateway's default backend limit (adaptive, from 32),
so with --connections 16 (160 streams) most requests wait in its queue
for a slot: what the queue costs, against the same build unlimited.

The machine's noise does not move these counts, so they show what a change
to the HTTP/2 path saves where bench/tls.py's wall-clock ratios cannot.
Installs nginx, haproxy and nghttp2-client when missing. Everything runs on
127.0.0.1 and stops by itself.
"""
import argparse, glob, os, re, shutil, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gateway as g  # noqa: E402
import tls  # noqa: E402
from gateway_instructions import callgrind_total, report  # noqa: E402

ONE_THREAD = "workers = 1\n" + tls.UNLIMITED


def h2load(port, requests, connections=4):
    out = subprocess.run(["h2load", "-n", str(requests), "-c", str(connections), "-m", "10",
                          f"https://127.0.0.1:{port}/"],
                         capture_output=True, text=True).stdout
    found = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
    return int(found.group(1)) if found else 0


def counted(command, port, requests, out, connections=4):
    """Runs `command` under callgrind; the instructions of `requests`
    h2load requests to `port`, and how many succeeded."""
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                             f"--callgrind-out-file={out}.%p", *command],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, RUST_LOG="warn", FLASHGUARD_ADMIN_TOKEN=g.TOKEN))
    try:
        g.wait_port(port, timeout=120)
        h2load(port, 400)  # warm-up: handshakes, pools, first allocations
        subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True, capture_output=True)
        answered = h2load(port, requests, connections)
        subprocess.run(["callgrind_control", "-i", "off", str(proc.pid)], check=True, capture_output=True)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return callgrind_total(out), answered


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--queued", action="store_true",
                    help="the gateway's default backend limit, not unlimited")
    ap.add_argument("--no-haproxy", action="store_true")
    ap.add_argument("--keep-dumps", metavar="DIR",
                    help="copy callgrind's dumps here, for callgrind_annotate")
    ap.add_argument("binaries", nargs="+")
    args = ap.parse_args()
    procs = g.Procs()
    tmp = tempfile.mkdtemp(prefix="flashguard-h2i-")
    try:
        cert, key, both, backend, config = tls.one_thread_harness(
            procs, tmp, "workers = 1\n" if args.queued else ONE_THREAD)
        runs = []
        for n, binary in enumerate(args.binaries):
            port, admin = g.free_port(), g.free_port()
            runs.append((binary, port, [binary, "gateway", "--listen", f"127.0.0.1:{port}",
                                        "--admin-listen", f"127.0.0.1:{admin}", "--backend", f"s1=127.0.0.1:{backend}",
                                        "--tls-cert", cert, "--tls-key", key, "--config", config]))
        if not args.no_haproxy:
            port = g.free_port()
            conf = os.path.join(tmp, "haproxy.cfg")
            with open(conf, "w") as f:
                f.write(g.haproxy_config_text(port, f"  server s1 127.0.0.1:{backend}\n",
                                              bind=tls.haproxy_tls_bind(both),
                                              global_extra=tls.HAPROXY_TLS_GLOBAL, threads=1))
            runs.append(("haproxy", port, ["haproxy", "-f", conf, "-db"]))
        first = None
        for n, (name, port, command) in enumerate(runs):
            total, answered = counted(command, port, args.requests, os.path.join(tmp, f"callgrind-{n}"),
                                      args.connections)
            first = report(name, total, answered, first, "HTTP/2 requests")
            if args.keep_dumps:
                os.makedirs(args.keep_dumps, exist_ok=True)
                for dump in glob.glob(os.path.join(tmp, f"callgrind-{n}.*")):
                    shutil.copy(dump, os.path.join(args.keep_dumps, f"{n}-{os.path.basename(name)}-{os.path.basename(dump)}"))
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
