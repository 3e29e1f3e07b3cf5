#!/usr/bin/env python3
"""CPU time per HTTP/2 request over TLS, flashguard builds against HAProxy,
measured side by side: user and system seconds the proxy's process spent,
read from /proc before and after h2load sends exactly REQUESTS requests.

usage: bench/h2_cpu.py [--requests 100000] [--rounds 5] BIN [BIN...]

Each proxy serves with one thread and no backend limit (no queue on
either side), no CPU cap, TLS with an ECDSA P-256 certificate made here,
in front of an nginx backend answering a fixed JSON body; h2load runs
`-c 16 -m 10`. The proxies take turns within every round. Prints, per
proxy, the median user, system and total microseconds a request and its
requests a second, then each total's ratio to HAProxy's, per round.

Throughput under a CPU quota (bench/tls.py) moves with whatever else the
machine runs; CPU seconds per request move much less, and show where the
time goes: the kernel's part (TCP over loopback, the same for any proxy
with the same system calls) against the proxy's own. Installs nginx,
haproxy and nghttp2-client when missing. Everything runs on 127.0.0.1 and
stops by itself.
"""
import argparse, os, re, shutil, statistics, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gateway as g  # noqa: E402
import tls  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User and system seconds of `pid` so far."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def h2load(port, requests):
    out = subprocess.run(["h2load", "-n", str(requests), "-c", "16", "-m", "10", f"https://127.0.0.1:{port}/"],
                         capture_output=True, text=True).stdout
    done = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
    rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    return (int(done.group(1)) if done else 0), (float(rps.group(1)) if rps else 0.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("binaries", nargs="+")
    args = ap.parse_args()
    procs = g.Procs()
    tmp = tempfile.mkdtemp(prefix="flashguard-h2cpu-")
    try:
        cert, key, both, backend, config = tls.one_thread_harness(procs, tmp, "workers = 1\n" + tls.UNLIMITED)
        proxies = []
        for n, binary in enumerate(args.binaries):
            proc, port = tls.flashguard(procs, tmp, backend, cert, key, extra=["--config", config], binary=binary)
            proxies.append((f"{n}:{os.path.basename(binary)}", proc, port))
        proc, port = tls.haproxy(procs, tmp, backend, both, threads=1)
        proxies.append(("haproxy", proc, port))
        seen = {name: [] for name, _, _ in proxies}
        for round_ in range(args.rounds):
            line = []
            for name, proc, port in proxies:
                h2load(port, 4_000)  # warm-up: handshakes, pools
                user0, sys0 = cpu_seconds(proc.pid)
                answered, rps = h2load(port, args.requests)
                user1, sys1 = cpu_seconds(proc.pid)
                if answered != args.requests:
                    sys.exit(f"{name}: {answered} of {args.requests} answered")
                user, system = (user1 - user0) / answered * 1e6, (sys1 - sys0) / answered * 1e6
                seen[name].append((user, system, rps))
                line.append(f"{name} {user:.2f}+{system:.2f} us {rps:,.0f}/s")
            print(f"round {round_ + 1}: " + "  ".join(line), flush=True)
        print(f"\nmedians of {args.rounds} rounds, {args.requests:,} requests each, one thread, no CPU cap")
        for name, runs in seen.items():
            user = statistics.median(r[0] for r in runs)
            system = statistics.median(r[1] for r in runs)
            total = statistics.median(r[0] + r[1] for r in runs)
            rps = statistics.median(r[2] for r in runs)
            print(f"  {name:24s} user {user:5.2f}  system {system:5.2f}  total {total:5.2f} us/request  {rps:,.0f} req/s")
        base = seen["haproxy"]
        for name, runs in seen.items():
            if name == "haproxy":
                continue
            ratios = sorted((r[0] + r[1]) / (b[0] + b[1]) for r, b in zip(runs, base))
            print(f"  {name} / haproxy, CPU per request: median {statistics.median(ratios):.2f}x "
                  f"(range {ratios[0]:.2f}..{ratios[-1]:.2f})")
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
