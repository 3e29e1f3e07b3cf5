#!/usr/bin/env python3
"""Whether a gateway under a CPU quota cuts a healthy backend's limit for
its own stalls, builds side by side.

usage: bench/limit_under_quota.py [--runs 3] [--seconds 6] [--cores 0.5] BIN [BIN...]

Each build's gateway runs with its default [concurrency] (adaptive, 32 to
64) and two serving threads, moved after it started into a cgroup of its
own capped at --cores (as bench/tls.py places it), TLS with an ECDSA P-256
certificate, in front of an nginx backend answering a fixed JSON body in
microseconds: a backend that never slows, so any fall of its limit is the
gateway misreading itself. h2load offers 16 connections x 10 streams for
--seconds while the backend's `gateway_backend_concurrency_limit` is read
from /metrics every 100 ms. The builds take turns within every run.

Prints per build and run: requests a second, the share of samples with
the limit below its maximum and below half of it, the lowest, and the
stalls the gateway counted (`gateway_serving_stalls_total`, 0 for a
build without it). Then the medians. Everything runs on 127.0.0.1 and
stops by itself; installs nginx and nghttp2-client when missing.
"""
import argparse, os, shutil, statistics, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gateway as g  # noqa: E402
import tls  # noqa: E402
from scaleout import Groups  # noqa: E402

MAX_LIMIT = 64  # the default [concurrency] max


def measure(port, admin, seconds, tmp):
    """h2load for `seconds`; the limit's samples while requests were in
    flight, and the stalls counted meanwhile."""
    samples, done = [], threading.Event()
    stalls_before = g.metric(g.scrape(admin), "gateway_serving_stalls_total") or 0

    def sample():
        while not done.is_set():
            text = g.scrape(admin)
            if (g.metric(text, "gateway_backend_in_flight_requests") or 0) > 0:
                samples.append(g.metric(text, "gateway_backend_concurrency_limit"))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        row = tls.h2load(port, seconds, tmp)
    finally:
        done.set()
        sampler.join()
    stalls = (g.metric(g.scrape(admin), "gateway_serving_stalls_total") or 0) - stalls_before
    return {"rps": row["rps"], "samples": len(samples),
            "below_max": sum(s < MAX_LIMIT for s in samples) / max(len(samples), 1),
            "below_half": sum(s < MAX_LIMIT / 2 for s in samples) / max(len(samples), 1),
            "lowest": min(samples, default=float("nan")), "stalls": stalls}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--cores", type=float, default=0.5)
    ap.add_argument("binaries", nargs="+")
    args = ap.parse_args()
    for tool, package in (("nginx", "nginx"), ("h2load", "nghttp2-client")):
        if shutil.which(tool) is None:
            subprocess.run(["apt-get", "install", "-y", "-q", package], check=True)
    procs, groups = g.Procs(), Groups()
    tmp = tempfile.mkdtemp(prefix="flashguard-quota-")
    try:
        cert, key, _ = tls.certificate(tmp)
        backend = g.nginx_backend(procs, tmp, "backend")
        gateways = []
        for n, binary in enumerate(args.binaries):
            port, admin = g.free_port(), g.free_port()
            proc = procs.start([binary, "gateway", "--listen", f"127.0.0.1:{port}", "--admin-listen",
                                f"127.0.0.1:{admin}", "--backend", f"s1=127.0.0.1:{backend}",
                                "--tls-cert", cert, "--tls-key", key],
                               env=dict(os.environ, RUST_LOG="warn", FLASHGUARD_ADMIN_TOKEN=g.TOKEN))
            g.wait_port(port)
            Groups.place(groups.group(f"gateway-{n}", args.cores), proc.pid)
            tls.wrk_https(port, 1)  # warm-up
            gateways.append((binary, port, admin))
        rows = {binary: [] for binary in args.binaries}
        for run in range(args.runs):
            for binary, port, admin in gateways:
                row = measure(port, admin, args.seconds, tmp)
                rows[binary].append(row)
                print(f"run {run + 1} {binary}: {row['rps']:.0f}/s, limit below {MAX_LIMIT} in "
                      f"{row['below_max']:.0%} of {row['samples']} samples, below {MAX_LIMIT // 2} in "
                      f"{row['below_half']:.0%}, lowest {row['lowest']:.0f}, {row['stalls']:.0f} stalls", flush=True)
        print(f"\nmedians of {args.runs} runs, each gateway capped at {args.cores} core")
        for binary, runs in rows.items():
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(f"  {binary}: {med['rps']:.0f}/s, limit below {MAX_LIMIT} in {med['below_max']:.0%} "
                  f"of samples, below {MAX_LIMIT // 2} in {med['below_half']:.0%}, lowest "
                  f"{min(r['lowest'] for r in runs):.0f} (of all runs), {med['stalls']:.0f} stalls a run")
    finally:
        procs.stop_all()
        groups.remove()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
