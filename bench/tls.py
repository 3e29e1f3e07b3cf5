#!/usr/bin/env python3
"""HTTPS at the edge: flashguard's gateway against HAProxy 2.6 (OpenSSL) and
nginx, measured side by side in one run, each proxy under the same CPU
quota so the clients have the rest of the machine.

usage: bench/tls.py [--runs 3] [--seconds 6] [--cores 0.5] [--slices 2]
                    [--only TEST] [--proxies NAME,...] [--one-thread]

Each proxy terminates TLS with the same ECDSA P-256 certificate (made here
with openssl) in front of one nginx backend answering a fixed JSON body,
and runs in a cgroup of its own capped at --cores. In each run, every
test cuts --seconds into --slices slices (2 by default) and measures the
proxies one after another for a slice each, in order, then in the
reverse order, by turns (the hello flood floods for all of --seconds,
once each way); a proxy's figure for the run is the mean of its slices
(its p99 the mean of their p99s, its errors their sum, its peak RSS the
highest). Measured one way only, each proxy ran at its own place in the
run every time (HAProxy always just after flashguard), and whatever the
machine did over the run (its load moves while a run goes on: HAProxy
alone moved from 20,900 to 34,800 requests a second within one set) fell
on one side of a pair more than the other; both ways round, a drift that
runs steadily through the run falls equally on both, and no proxy always
follows the same one. More slices pair each proxy's seconds more closely
with the others': this machine's speed moves from one second to the next
(in adjacent 2 s windows, flashguard's figure over HAProxy's ran from
0.90 to 1.43), and
ten slices of 2 s average that out where two of 10 s leave it to chance.
--proxies starts and measures only the proxies named (and the ratios
among them). The tests:

1. New TLS handshakes per second: `openssl s_time -new` (full handshakes,
   TLS 1.3) and `-reuse` (resumed sessions), three clients at once.
2. Requests per second and p99 over TLS keep-alive connections: wrk over
   https (HTTP/1.1), 64 connections.
3. HTTP/2: h2load, 16 connections x 10 streams, measured after a warm-up
   of 300 ms (its connecting left out); p99 computed from its
   per-request log. Against HAProxy's and nginx's HTTP/2.
4. A flood of TLS client hellos beyond capacity (`hello_flood`): the
   keep-alive test alone, then again while examples/hello_flood offers
   --flood-rate new connections a second (default 20,000), each sending a
   ClientHello and waiting for the answer, which costs the proxy a full
   handshake's key exchange and signature and the sender almost nothing.
   Prints the share of keep-alive requests a second the connected
   customers kept (`kept`), their p99 under the flood, the hellos the
   proxy answered a second, and its peak RSS.

Besides each proxy's defaults, two like-for-like pairs: flashguard's
gateway queues what is beyond 64 requests at once per backend, so HAProxy
runs once more with `maxconn 64` on its server (`haproxy-maxconn`), and
flashguard once more with a backend limit no test reaches
(`flashguard-unlimited`). The ratios printed: flashguard against HAProxy
and nginx as they come, flashguard-unlimited against HAProxy, flashguard
against haproxy-maxconn. flashguard's default follows its CPU quota (at
half a core one serving thread takes connections), so `flashguard-2w`
(`workers = 2`) is flashguard thread for thread with HAProxy's and
nginx's two. --one-thread adds flashguard (`flashguard-1w`, and
`flashguard-1w-unlimited`) and HAProxy (`haproxy-1t`) with one serving
thread each, and their ratios.

Every test prints each proxy's CPU use against its quota
(`proxy_cpu_of_quota`, from /proc: the cgroup may be v1 without cpuacct):
near 1.0 means the proxy, not the clients, was the limit.

FLASHGUARD_BIN names the build (default target/release/flashguard);
FLASHGUARD_BASELINE_BIN, when set, adds an earlier build
(`flashguard-baseline`) to every run and the ratio of the two.
Installs haproxy, nginx, wrk and nghttp2-client when missing. Everything
runs on 127.0.0.1 and stops by itself. Writes bench/tls-results.json
(with --only TEST, bench/tls-TEST-results.json).
"""
import argparse, json, os, re, shutil, statistics, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gateway as g  # noqa: E402  (the proxies and helpers of bench/gateway.py)
from scaleout import Groups  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def certificate(tmp):
    """An ECDSA P-256 CA and a leaf for 127.0.0.1; paths of the leaf's
    chain, key, and both in one file (HAProxy's form)."""
    run = lambda *args: subprocess.run(args, check=True, capture_output=True, cwd=tmp)
    run("openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key")
    run("openssl", "req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=bench CA", "-days", "2", "-out", "ca.pem")
    run("openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "leaf.key")
    run("openssl", "req", "-new", "-key", "leaf.key", "-subj", "/CN=localhost", "-out", "leaf.csr")
    with open(os.path.join(tmp, "ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    run("openssl", "x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "1", "-extfile", "ext", "-out", "leaf.pem")
    cert, key = os.path.join(tmp, "leaf.pem"), os.path.join(tmp, "leaf.key")
    both = os.path.join(tmp, "both.pem")
    with open(both, "w") as f:
        f.write(open(cert).read() + open(key).read())
    return cert, key, both


# flashguard's gateway gives each backend at most 64 requests at once by
# default and queues the rest (`[concurrency]`); HAProxy's default server
# takes any number. Each default is measured, and each side is also
# measured configured as the other: HAProxy with `maxconn` (it queues as
# flashguard does), flashguard with a limit no run reaches.
QUEUED_AT = 64
UNLIMITED = "[concurrency]\nadaptive = false\ninitial = 1024\nmax = 1024\n"
PAIRS = (("flashguard", "haproxy"), ("flashguard", "nginx"),
         ("flashguard-unlimited", "haproxy"), ("flashguard", "haproxy-maxconn"),
         ("flashguard-2w", "haproxy"))
# Each proxy is moved into its group after it started. flashguard's
# default (`workers = 0`) starts a serving thread per CPU and lets as many
# take new connections as its quota allows, followed while it runs: at
# half a core, one (since the twelfth session; before, it kept the two it
# picked at start). `flashguard-2w` (`workers = 2`) keeps two accepting,
# as HAProxy (`nbthread 2`) and nginx (2 workers) run: thread for thread.
TWO_THREADS = "workers = 2\n"
# --one-thread: one serving thread each, flashguard configured so.
ONE_THREAD = "workers = 1\n"
ONE_THREAD_PAIRS = (("flashguard-1w", "haproxy"), ("flashguard-1w", "haproxy-1t"),
                    ("flashguard-1w-unlimited", "haproxy-1t"), ("flashguard-1w", "haproxy-maxconn"),
                    ("flashguard-1w", "flashguard"))


def flashguard(procs, tmp, backend, cert, key, extra=(), binary=None):
    port, admin = g.free_port(), g.free_port()
    proc = procs.start([binary or g.BIN, "gateway", "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}",
                        "--backend", f"s1=127.0.0.1:{backend}", "--tls-cert", cert, "--tls-key", key, *extra],
                       env=dict(os.environ, RUST_LOG="warn", FLASHGUARD_ADMIN_TOKEN=g.TOKEN))
    g.wait_port(port)
    return proc, port


def one_thread_harness(procs, tmp, config_text):
    """What the one-thread HTTP/2 counts share (bench/h2_instructions.py,
    bench/h2_cpu.py): nginx, haproxy and h2load installed when missing, a
    certificate, an nginx backend, and a gateway config of `config_text`.
    Returns the certificate, key, both in one file, the backend's port
    and the config's path."""
    for tool, package in (("nginx", "nginx"), ("haproxy", "haproxy"), ("h2load", "nghttp2-client")):
        if shutil.which(tool) is None:
            subprocess.run(["apt-get", "install", "-y", "-q", package], check=True)
    cert, key, both = certificate(tmp)
    backend = g.nginx_backend(procs, tmp, "backend")
    config = os.path.join(tmp, "one-thread.toml")
    with open(config, "w") as f:
        f.write(config_text)
    return cert, key, both, backend, config


# HAProxy terminating TLS: its bind options and globals.
HAPROXY_TLS_GLOBAL = "  ssl-default-bind-options ssl-min-ver TLSv1.2\n"


def haproxy_tls_bind(both):
    return f" ssl crt {both} alpn h2,http/1.1"


def haproxy(procs, tmp, backend, both, server_options="", threads=2):
    port = g.free_port()
    conf = os.path.join(tmp, f"haproxy-{port}.cfg")
    with open(conf, "w") as f:
        f.write(g.haproxy_config_text(port, f"  server s1 127.0.0.1:{backend}{server_options}\n",
                                      bind=haproxy_tls_bind(both), global_extra=HAPROXY_TLS_GLOBAL,
                                      threads=threads))
    proc = procs.start(["haproxy", "-f", conf, "-db"])
    g.wait_port(port)
    return proc, port


def nginx(procs, tmp, backend, cert, key):
    port = g.free_port()
    name = f"tls-{port}"
    conf = os.path.join(tmp, f"{name}.conf")
    with open(conf, "w") as f:
        f.write(f"""daemon off; worker_processes 2; pid {tmp}/{name}.pid; error_log /dev/null crit;
events {{ worker_connections 8192; }}
http {{ access_log off; keepalive_requests 1000000;
  {g.temp_paths(tmp, name)}
  upstream shops {{ server 127.0.0.1:{backend}; keepalive 128; }}
  server {{ listen 127.0.0.1:{port} ssl http2;
    ssl_certificate {cert}; ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:10m;
    location / {{ proxy_pass http://shops; proxy_http_version 1.1; proxy_set_header Connection ""; }} }} }}
""")
    proc = procs.start(["nginx", "-c", conf, "-p", tmp])
    g.wait_port(port)
    # nginx's workers are its children: the group takes the master, and
    # the workers it forks after are placed with it below.
    return proc, port


# What each test's ratios compare: handshakes a second, the share of
# keep-alive throughput kept under the flood, requests a second.
KEY_OF = {"handshakes_full": "per_s", "handshakes_resumed": "per_s", "hello_flood": "kept"}


def cpu_seconds(pids):
    """CPU time used so far by `pids` (all their threads), from /proc."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def handshakes(port, seconds, reuse, clients=3):
    """Handshakes per second from `clients` openssl s_time processes."""
    mode = "-reuse" if reuse else "-new"
    runs = [subprocess.Popen(["openssl", "s_time", "-connect", f"127.0.0.1:{port}", mode, "-time", str(seconds)],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for _ in range(clients)]
    total = 0
    for proc in runs:
        out = proc.communicate()[0]
        # "N connections in T real seconds": the last such line is the run.
        found = re.findall(r"(\d+) connections in [\d.]+ real seconds", out)
        total += int(found[-1]) if found else 0
    return {"per_s": total / seconds}


def wrk_https(port, seconds, connections=64):
    return g.wrk(port, "/", connections, seconds, scheme="https")


def h2load(port, seconds, tmp):
    log = os.path.join(tmp, f"h2load-{port}.log")
    # Connecting (16 TLS handshakes) is left out of the measured time:
    # with short slices it would be a share of it, and a proxy's
    # handshakes are not what this test measures.
    out = subprocess.run(["h2load", "-D", f"{seconds:g}", "--warm-up-time", "300ms", "-c", "16", "-m", "10", "-t", "2",
                          "--log-file", log, f"https://127.0.0.1:{port}/"], check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    status = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    errors = sum(int(x) for x in status.groups()[1:]) if status else 0
    times = sorted(int(line.split()[2]) for line in open(log) if len(line.split()) >= 3)
    p99 = times[int(len(times) * 0.99)] / 1000 if times else float("nan")
    os.remove(log)
    return {"rps": rps, "p99_ms": p99, "errors": errors, "protocol": "h2" if "h2" in out else "?"}


FLOOD = os.path.join(ROOT, "target/release/examples/hello_flood")


def rss_mb(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
        except (OSError, StopIteration):
            pass
    return total / 1024


def hello_flood(port, pids, seconds, rate):
    """Keep-alive alone, then under a flood of client hellos at `rate`."""
    alone = wrk_https(port, seconds)
    flood = subprocess.Popen([FLOOD, f"127.0.0.1:{port}", str(rate), str(seconds + 2)],
                             stdout=subprocess.PIPE, text=True)
    peak = [rss_mb(pids)]
    sampling = threading.Event()

    def sample():
        while not sampling.wait(0.2):
            peak[0] = max(peak[0], rss_mb(pids))
    sampler = threading.Thread(target=sample)
    sampler.start()
    time.sleep(1)  # the flood under way
    flooded = wrk_https(port, seconds)
    counts = json.loads(flood.communicate()[0])
    sampling.set()
    sampler.join()
    return {"kept": flooded["rps"] / alone["rps"], "rps": flooded["rps"], "rps_alone": alone["rps"],
            "p99_ms": flooded["p99_ms"], "errors": flooded["errors"], "hellos_answered_per_s": counts["answered"],
            "hellos_offered_per_s": counts["offered"], "rss_peak_mb": peak[0]}


def of_slices(slices):
    """A proxy's row for a run from its slices (see the module doc)."""
    row = {}
    for key, value in slices[0].items():
        values = [s[key] for s in slices]
        if key == "errors":
            row[key] = sum(values)
        elif key == "rss_peak_mb":
            row[key] = max(values)
        elif isinstance(value, (int, float)):
            row[key] = sum(values) / len(values)
        else:
            row[key] = value
    return row


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--cores", type=float, default=0.5)
    parser.add_argument("--flood-rate", type=int, default=20_000)
    parser.add_argument("--one-thread", action="store_true",
                        help="add flashguard and HAProxy with one serving thread each")
    parser.add_argument("--slices", type=int, default=2,
                        help="slices each test's --seconds is cut into, in order then in reverse order by turns")
    parser.add_argument("--proxies", help="measure only these (comma-separated names; default all)")
    parser.add_argument("--only", help="one test: handshakes_full, handshakes_resumed, https_keepalive, http2 "
                                       "or hello_flood")
    args = parser.parse_args()
    if args.slices < 2 or args.slices % 2:
        sys.exit("--slices must be even and at least 2: as many slices in each order")
    for tool, package in (("haproxy", "haproxy"), ("nginx", "nginx"), ("wrk", "wrk"), ("h2load", "nghttp2-client")):
        if shutil.which(tool) is None:
            subprocess.run(["apt-get", "install", "-y", "-q", package], check=True)
    if not os.path.exists(g.BIN) or not os.path.exists(FLOOD):
        subprocess.run(["cargo", "build", "--release", "--bin", "flashguard", "--example", "hello_flood"],
                       cwd=ROOT, check=True)
    procs, groups = g.Procs(), Groups()
    tmp = tempfile.mkdtemp(prefix="flashguard-tls-")
    try:
        cert, key, both = certificate(tmp)
        backend = g.nginx_backend(procs, tmp, "backend")
        unlimited = os.path.join(tmp, "unlimited.toml")
        with open(unlimited, "w") as f:
            f.write(UNLIMITED)
        two_threads = os.path.join(tmp, "two-threads.toml")
        with open(two_threads, "w") as f:
            f.write(TWO_THREADS)
        # What each proxy is started by: only those measured are started.
        starters = {
            "flashguard": lambda: flashguard(procs, tmp, backend, cert, key),
            "haproxy": lambda: haproxy(procs, tmp, backend, both),
            "nginx": lambda: nginx(procs, tmp, backend, cert, key),
            "flashguard-unlimited": lambda: flashguard(procs, tmp, backend, cert, key, ["--config", unlimited]),
            "haproxy-maxconn": lambda: haproxy(procs, tmp, backend, both, f" maxconn {QUEUED_AT}"),
            "flashguard-2w": lambda: flashguard(procs, tmp, backend, cert, key, ["--config", two_threads])}
        pairs = PAIRS
        if args.one_thread:
            for name, text in (("flashguard-1w", ONE_THREAD), ("flashguard-1w-unlimited", ONE_THREAD + UNLIMITED)):
                path = os.path.join(tmp, f"{name}.toml")
                with open(path, "w") as f:
                    f.write(text)
                starters[name] = lambda path=path: flashguard(procs, tmp, backend, cert, key, ["--config", path])
            starters["haproxy-1t"] = lambda: haproxy(procs, tmp, backend, both, threads=1)
            pairs = pairs + ONE_THREAD_PAIRS
        if g.BASELINE_BIN:
            # An earlier build, side by side in the same run.
            starters["flashguard-baseline"] = lambda: flashguard(procs, tmp, backend, cert, key, binary=g.BASELINE_BIN)
            pairs = pairs + (("flashguard", "flashguard-baseline"),)
        wanted = args.proxies.split(",") if args.proxies else list(starters)
        unknown = [name for name in wanted if name not in starters]
        if unknown:
            sys.exit(f"--proxies: no proxy named {', '.join(unknown)}; known: {', '.join(starters)}")
        started = {name: start() for name, start in starters.items() if name in wanted}
        pairs = tuple(pair for pair in pairs if pair[0] in started and pair[1] in started)
        ports, pids = {}, {}
        for name, (proc, port) in started.items():
            group = groups.group(name, args.cores)
            Groups.place(group, proc.pid)
            # nginx's workers were forked before the move: place them too.
            children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
            for child in children:
                Groups.place(group, int(child))
            pids[name] = [proc.pid] + [int(child) for child in children]
            ports[name] = port
        for port in ports.values():  # warm up
            wrk_https(port, 1)
        slice_seconds = args.seconds / args.slices
        # openssl s_time and wrk take whole seconds; h2load takes any.
        whole_seconds = max(1, round(slice_seconds))
        tests = {
            "handshakes_full": lambda n, p: handshakes(p, whole_seconds, False),
            "handshakes_resumed": lambda n, p: handshakes(p, whole_seconds, True),
            "https_keepalive": lambda n, p: wrk_https(p, whole_seconds),
            "http2": lambda n, p: h2load(p, slice_seconds, tmp),
            # A steady flood needs its time: each way floods for all of
            # --seconds (a 3 s flood is mostly its start).
            "hello_flood": lambda n, p: hello_flood(p, pids[n], args.seconds, args.flood_rate),
        }
        if args.only:
            tests = {args.only: tests[args.only]}
        results = {test: {name: [] for name in ports} for test in tests}
        for run in range(args.runs):
            for test, measure in tests.items():
                slices = {name: [] for name in ports}
                # The flood floods for all of --seconds, once each way.
                turns = 2 if test == "hello_flood" else args.slices
                for turn in range(turns):
                    order = list(ports) if turn % 2 == 0 else list(reversed(ports))
                    for name in order:
                        before, started = cpu_seconds(pids[name]), time.time()
                        row = measure(name, ports[name])
                        row["proxy_cpu_of_quota"] = (cpu_seconds(pids[name]) - before) / (time.time() - started) / args.cores
                        slices[name].append(row)
                for name in ports:
                    results[test][name].append(of_slices(slices[name]))
                key_of = KEY_OF.get(test, "rps")
                print(f"run {run + 1} {test}: " + "  ".join(
                    f"{n} " + (f"{results[test][n][-1][key_of]:.2f} kept" if key_of == "kept"
                               else f"{results[test][n][-1][key_of]:.0f}/s") for n in ports), flush=True)
        summary = {}
        print(f"\nmedians of {args.runs} runs, each proxy capped at {args.cores} core, ECDSA P-256")
        for test, by_proxy in results.items():
            key_of = KEY_OF.get(test, "rps")
            summary[test] = {}
            print(f"\n{test}")
            for name, rows in by_proxy.items():
                row = {k: statistics.median(r[k] for r in rows) for k in rows[0] if isinstance(rows[0][k], (int, float))}
                row["range"] = [min(r[key_of] for r in rows), max(r[key_of] for r in rows)]
                summary[test][name] = row
                print(f"  {name:20} " + "  ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
            for ours, other in pairs:
                per_run = [f[key_of] / o[key_of] if o[key_of] else float("inf")
                           for f, o in zip(by_proxy[ours], by_proxy[other])]
                summary[test][f"{ours}/{other}"] = {"median": statistics.median(per_run),
                                                    "min": min(per_run), "max": max(per_run)}
                print(f"  {ours} / {other}: median {statistics.median(per_run):.2f}x "
                      f"(range {min(per_run):.2f}..{max(per_run):.2f})")
        # A run of one test keeps the full run's file.
        name = f"tls-{args.only}-results.json" if args.only else "tls-results.json"
        with open(os.path.join(ROOT, "bench", name), "w") as f:
            json.dump({"cores": args.cores, "runs": args.runs, "seconds": args.seconds,
                       "per_run": results, "summary": summary}, f, indent=1)
    finally:
        procs.stop_all()
        groups.remove()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
