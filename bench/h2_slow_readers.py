#!/usr/bin/env python3
"""Customers' goodput over HTTP/2 while slow readers hold streams open:
this build against an earlier one, side by side in one run.

usage: FLASHGUARD_BASELINE_BIN=OLD bench/h2_slow_readers.py [--runs 3] [--seconds 6]
                                                           [--attackers 1] [--fixed-limit N] [--cap N]

Each build's gateway terminates TLS (ECDSA P-256) in front of one nginx
backend with the gateway's default limits (a backend's limit starts at 32
and the queue waits 5 s). ATTACKERS connections each open 100 streams for
a 1 MiB answer and read nothing: their window stops the answers, so every
stream sent on holds a connection to the backend until `client_send_ms`
(30 s), and in builds before `[concurrency] max_waiting_on_clients` its
slot too. Then h2load plays the customers (16 connections x 10 streams,
SECONDS) on the small JSON answer. Prints the customers' answers a
second, how many were 503s, and what the gateway says it held: the
backend's in-flight requests (its slots), the answers waiting on their
clients, and the streams that waited in their connection.

--cap N runs this build with `[http2] max_streams_forwarded = N` (16 by
default since the eleventh session; 0 turns it off); the earlier build
runs as it was.

--fixed-limit N gives the backend a fixed limit of N (`adaptive = false`)
instead of the adaptive one, so what the slow readers hold is all that
stands between the customers and the backend.

Everything runs on 127.0.0.1 and stops by itself. Installs nginx and
nghttp2-client when missing.
"""
import argparse, os, re, shutil, socket, ssl, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gateway as g  # noqa: E402
import tls  # noqa: E402

BIG = 1024 * 1024


def backend(procs, tmp):
    """nginx: the JSON answer at /, 1 MiB at /big."""
    with open(os.path.join(tmp, "big"), "wb") as f:
        f.write(b"x" * BIG)
    # nginx's workers run as nobody.
    os.chmod(tmp, 0o755)
    os.chmod(os.path.join(tmp, "big"), 0o644)
    port = g.free_port()
    conf = os.path.join(tmp, "backend.conf")
    with open(conf, "w") as f:
        f.write(f"""daemon off; worker_processes 1; pid {tmp}/backend.pid; error_log /dev/null crit;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000;
  {g.temp_paths(tmp, "backend")}
  server {{ listen 127.0.0.1:{port}; default_type application/json;
    location = /big {{ alias {tmp}/big; }}
    location / {{ return 200 '{g.JSON_BODY}'; }} }} }}
""")
    procs.start(["nginx", "-c", conf, "-p", tmp])
    g.wait_port(port)
    return port


def frame(kind, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def get_block(path, authority):
    """GET https://authority/path in HPACK: indexed :method and :scheme,
    literal :path and :authority with indexed names, never indexed."""
    block = bytes([0x82, 0x87])
    for name_index, value in ((4, path), (1, authority)):
        value = value.encode()
        block += bytes([0x10 | name_index if name_index < 15 else 0x1f, len(value)]) + value
    return block


def slow_reader(port, streams=100):
    """One connection with `streams` GETs for /big that never reads."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    raw = socket.create_connection(("127.0.0.1", port))
    conn = context.wrap_socket(raw, server_hostname="localhost")
    assert conn.selected_alpn_protocol() == "h2"
    out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0)
    block = get_block("/big", f"127.0.0.1:{port}")
    for n in range(streams):
        out += frame(1, 0x4 | 0x1, 2 * n + 1, block)
    conn.sendall(out)
    return conn


def metrics(admin):
    """The backend's requests in flight (one backend), its answers
    waiting on their clients, and the streams that waited in their
    connection."""
    text = g.scrape(admin)
    return (g.metric(text, "gateway_backend_in_flight_requests") or 0,
            g.metric(text, "gateway_backend_answers_waiting_on_clients") or 0,
            g.metric(text, "gateway_h2_streams_deferred_total") or 0)


def customers(port, seconds):
    out = subprocess.run(["h2load", "-D", str(seconds), "-c", "16", "-m", "10", "-t", "1",
                          f"https://127.0.0.1:{port}/"], capture_output=True, text=True).stdout
    status = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    ok, fives = (int(status.group(1)), int(status.group(4))) if status else (0, 0)
    return ok / seconds, fives


def gateway(procs, tmp, backend_port, cert, key, binary, extra=()):
    port, admin = g.free_port(), g.free_port()
    proc = procs.start([binary, "gateway", "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}",
                 "--backend", f"s1=127.0.0.1:{backend_port}", "--tls-cert", cert, "--tls-key", key, *extra],
                env=dict(os.environ, RUST_LOG="error", FLASHGUARD_ADMIN_TOKEN=g.TOKEN))
    g.wait_port(port)
    return proc, port, admin


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--attackers", type=int, default=1)
    ap.add_argument("--fixed-limit", type=int, help="a fixed backend limit instead of the adaptive one")
    ap.add_argument("--cap", type=int, help="this build's [http2] max_streams_forwarded (default: its own default)")
    args = ap.parse_args()
    for tool, package in (("nginx", "nginx"), ("h2load", "nghttp2-client")):
        if shutil.which(tool) is None:
            subprocess.run(["apt-get", "install", "-y", "-q", package], check=True)
    builds = {"this build": g.BIN}
    if g.BASELINE_BIN:
        builds["baseline"] = g.BASELINE_BIN
    procs = g.Procs()
    tmp = tempfile.mkdtemp(prefix="flashguard-slow-readers-")
    results = {name: [] for name in builds}
    try:
        cert, key, _ = tls.certificate(tmp)
        backend_port = backend(procs, tmp)
        configs = {}
        for name in builds:
            text = (f"[http2]\nmax_streams_forwarded = {args.cap}\n"
                    if name == "this build" and args.cap is not None else "")
            if args.fixed_limit:
                text += f"[concurrency]\nadaptive = false\ninitial = {args.fixed_limit}\nmax = {args.fixed_limit}\n"
            path = os.path.join(tmp, f"{name.replace(' ', '-')}.toml")
            with open(path, "w") as f:
                f.write(text)
            configs[name] = ("--config", path)
        for run in range(args.runs):
            for name, binary in builds.items():
                # A gateway of its own each run: slots held by the last
                # run's readers would count against this one.
                proc, port, admin = gateway(procs, tmp, backend_port, cert, key, binary, configs[name])
                clean_rps, _ = customers(port, 2)
                readers = [slow_reader(port) for _ in range(args.attackers)]
                time.sleep(1)  # their streams reach the backend
                held, waiting, deferred = metrics(admin)
                rps, fives = customers(port, args.seconds)
                for reader in readers:
                    reader.close()
                procs.stop(proc)
                results[name].append((rps, fives, held, deferred, clean_rps, waiting))
                print(f"run {run + 1} {name}: customers {rps:.0f}/s ({fives} 503s), alone {clean_rps:.0f}/s; "
                      f"slots held {held:.0f}, answers waiting on clients {waiting:.0f}, "
                      f"streams deferred {deferred:.0f}", flush=True)
        limit = f"a fixed limit of {args.fixed_limit}" if args.fixed_limit else "the adaptive limit"
        print(f"\nmedians of {args.runs} runs, {args.attackers} slow-reading connection(s) of 100 streams each, {limit}")
        for name, rows in results.items():
            med = lambda i: statistics.median(r[i] for r in rows)
            print(f"  {name:11} customers {med(0):.0f}/s (range {min(r[0] for r in rows):.0f}..{max(r[0] for r in rows):.0f}), "
                  f"503s {med(1):.0f}, alone {med(4):.0f}/s, slots held {med(2):.0f}, "
                  f"waiting on clients {med(5):.0f}, deferred {med(3):.0f}")
        if len(results) == 2:
            ratios = [a[0] / b[0] if b[0] else float("inf") for a, b in zip(*results.values())]
            print("  ratio run by run: " + ", ".join(f"{r:.2f}" for r in ratios))
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
