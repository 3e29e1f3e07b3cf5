#!/usr/bin/env python3
"""Instructions per proxied request: the gateway's own cost, counted, not timed.

usage: bench/gateway_instructions.py [--requests 4000] [--connections 4] BIN [BIN...]

On a shared machine wall-clock throughput moves by ±20 % from run to run;
the instructions the gateway executes per request do not. Each build's
gateway runs under valgrind's callgrind (instrumentation off while it
starts), in front of an nginx backend answering a fixed JSON body; after a
warm-up, instrumentation is switched on, exactly REQUESTS keep-alive GETs
are sent over CONNECTIONS connections, and the count is dumped. Prints
instructions per request for each build and the ratio to the first.

Installs nginx with apt-get when missing. Everything runs on 127.0.0.1 and
stops by itself.
"""
import argparse, glob, os, re, shutil, socket, subprocess, sys, tempfile, threading, time

JSON_BODY = '{"sku":"hot","name":"Hot item","price_cents":100,"remaining":42}'


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def nginx_backend(tmp):
    port = free_port()
    conf = os.path.join(tmp, "backend.conf")
    with open(conf, "w") as f:
        f.write(f"""daemon off; worker_processes 1; pid {tmp}/backend.pid; error_log /dev/null crit;
events {{ worker_connections 1024; }}
http {{ access_log off; keepalive_requests 1000000;
  client_body_temp_path {tmp}/cb; proxy_temp_path {tmp}/pt; fastcgi_temp_path {tmp}/ft;
  uwsgi_temp_path {tmp}/ut; scgi_temp_path {tmp}/st;
  server {{ listen 127.0.0.1:{port};
    location / {{ default_type application/json; return 200 '{JSON_BODY}'; }} }} }}
""")
    proc = subprocess.Popen(["nginx", "-c", conf, "-p", tmp], stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, port


def keep_alive_gets(port, count):
    """Sends `count` GETs on one keep-alive connection; returns the count answered 200."""
    ok = 0
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        buffer = b""
        for _ in range(count):
            s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
            while True:
                end = buffer.find(b"\r\n\r\n")
                if end >= 0:
                    head = buffer[:end].decode("latin-1").lower()
                    length = int(re.search(r"content-length: (\d+)", head).group(1))
                    if len(buffer) >= end + 4 + length:
                        ok += head.startswith("http/1.1 200")
                        buffer = buffer[end + 4 + length:]
                        break
                chunk = s.recv(65536)
                if not chunk:
                    return ok
                buffer += chunk
    return ok


def load(port, requests, connections):
    counts = []
    threads = [threading.Thread(target=lambda: counts.append(keep_alive_gets(port, requests // connections)))
               for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts)


def measure(binary, backend, requests, connections, tmp):
    port, admin = free_port(), free_port()
    out = os.path.join(tmp, f"callgrind.{port}")
    gateway = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}.%p",
         binary, "gateway", "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}",
         "--backend", f"b=127.0.0.1:{backend}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, RUST_LOG="warn"))
    try:
        wait_port(port)
        load(port, 200, 2)  # warm-up: connections, pools, first allocations
        subprocess.run(["callgrind_control", "-i", "on", str(gateway.pid)], check=True, capture_output=True)
        answered = load(port, requests, connections)
        subprocess.run(["callgrind_control", "-d", str(gateway.pid)], check=True, capture_output=True)
    finally:
        gateway.terminate()
        gateway.wait(timeout=60)
    return callgrind_total(out), answered


def report(name, total, answered, first, what="requests"):
    """Prints `name`'s instructions per answered request and its ratio to
    the first build's; returns the first's per-request count."""
    per = total / max(answered, 1)
    first = first or per
    print(f"{name}: {answered} {what} answered, {per:,.0f} instructions per request "
          f"({per / first:.3f}x the first)", flush=True)
    return first


def callgrind_total(out):
    """Instructions counted in the dumps written to `out`.PID."""
    total = 0
    for dump in glob.glob(f"{out}.*"):
        with open(dump) as f:
            for line in f:
                # A dump on demand may give `summary: 0` before its totals.
                if line.startswith("summary:") or line.startswith("totals:"):
                    total = max(total, int(line.split()[1]))
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("binaries", nargs="+")
    args = ap.parse_args()
    if not shutil.which("nginx") and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "nginx"], check=False, stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory() as tmp:
        backend, port = nginx_backend(tmp)
        try:
            first = None
            for binary in args.binaries:
                total, answered = measure(binary, port, args.requests, args.connections, tmp)
                first = report(binary, total, answered, first)
        finally:
            backend.terminate()
            backend.wait()


if __name__ == "__main__":
    main()
