#!/usr/bin/env python3
"""The gateway against HAProxy and nginx, measured side by side in one run.

usage: bench/gateway.py [--runs 3] [--seconds 8] [--connections 64] [--skip-failover]

FLASHGUARD_BIN names the build measured (default: this tree, built);
FLASHGUARD_BASELINE_BIN, if set, adds that build's gateway as a fifth target
in every run, so a change is measured against the build before it side by
side (median and range of the per-run ratios).

1. Throughput and latency, alternating in each run: wrk straight to one
   backend, then through flashguard's gateway, HAProxy and nginx (each with
   keep-alive to the backends, same concurrency). First with three nginx
   backends answering a fixed JSON body (the cheapest backend, so each
   proxy's own cost shows), then with three flashguard shops serving a
   product read.
2. Failover: three shops behind each proxy, customers reading and ordering
   (with idempotency keys) at steady concurrency, one shop SIGKILLed in the
   middle. Prints failed requests and the longest run of errors for each.

Installs haproxy, nginx and wrk with apt-get when missing. Everything runs on
127.0.0.1 and stops by itself. Writes bench/gateway-results.json.
"""
import argparse, http.client, json, os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, threading, time, urllib.request, uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# FLASHGUARD_BIN compares another build (A/B); otherwise this tree is built.
BIN = os.environ.get("FLASHGUARD_BIN") or os.path.join(ROOT, "target/release/flashguard")
BASELINE_BIN = os.environ.get("FLASHGUARD_BASELINE_BIN")
TOKEN = "bench-token"
JSON_BODY = '{"sku":"hot","name":"Hot item","price_cents":100,"remaining":42}'


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(admin):
    """The text of a gateway's /metrics, from its admin port."""
    return urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()


def metric(text, name):
    """The first sample of `name` in `text`, whatever its labels; None if
    there is none."""
    found = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)", text, re.M)
    return float(found.group(1)) if found else None


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def http_get(port, path, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body


class Procs:
    """Processes this script started; all stopped by PID at the end."""

    def __init__(self):
        self.procs = []

    def start(self, args, **kw):
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, **kw)
        self.procs.append(proc)
        return proc

    def stop(self, proc, sig=signal.SIGTERM):
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_all(self):
        for proc in reversed(self.procs):
            self.stop(proc)
        self.procs = []


def temp_paths(tmp, name):
    """nginx's temporary folders for one instance, inside `tmp`."""
    kinds = {"client_body": "body", "proxy": "proxy", "fastcgi": "fcgi", "uwsgi": "uwsgi", "scgi": "scgi"}
    return " ".join(f"{kind}_temp_path {tmp}/{name}-{short};" for kind, short in kinds.items())


def nginx_backend(procs, tmp, name):
    port = free_port()
    conf = os.path.join(tmp, f"{name}.conf")
    with open(conf, "w") as f:
        f.write(f"""daemon off; worker_processes 1; pid {tmp}/{name}.pid; error_log /dev/null crit;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000;
  {temp_paths(tmp, name)}
  server {{ listen 127.0.0.1:{port}; default_type application/json;
    location / {{ return 200 '{JSON_BODY}'; }} }} }}
""")
    procs.start(["nginx", "-c", conf, "-p", tmp])
    wait_port(port)
    return port


def shop(procs, db_url, port=None):
    port = port or free_port()
    env = dict(os.environ, FLASHGUARD_ADMIN_TOKEN=TOKEN, RUST_LOG="warn")
    proc = procs.start([BIN, "shop", "--listen", f"127.0.0.1:{port}", "--db", db_url], env=env)
    line = proc.stdout.readline().strip()
    assert line.startswith("listening on "), line
    deadline = time.time() + 30
    while http_get(port, "/readyz")[0] != 200:
        if time.time() > deadline:
            raise RuntimeError("shop never ready")
        time.sleep(0.05)
    return proc, port


def seed(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = json.dumps({"name": "Hot item", "price_cents": 100, "stock": 1_000_000_000})
    conn.request("PUT", "/admin/products/hot", body=body,
                 headers={"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"})
    assert conn.getresponse().status in (200, 201)
    conn.close()


def flashguard_gateway(procs, tmp, backends, binary=BIN):
    port, admin = free_port(), free_port()
    args = [binary, "gateway", "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}"]
    for i, b in enumerate(backends):
        args += ["--backend", f"s{i + 1}=127.0.0.1:{b}"]
    procs.start(args, env=dict(os.environ, RUST_LOG="warn", FLASHGUARD_ADMIN_TOKEN=TOKEN))
    wait_port(port)
    return port


def haproxy_config_text(port, backend, bind="", global_extra="", threads=2):
    """HAProxy's configuration in front of `backend` (its section's lines) on
    `port`, with the same globals and defaults in every benchmark."""
    return f"""global
  maxconn 8000
  nbthread {threads}
{global_extra}defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:{port}{bind}
  default_backend shops
backend shops
{backend}"""


def haproxy_config(procs, tmp, port, backend, bind="", global_extra=""):
    """HAProxy in front of `backend` on `port` (`haproxy_config_text`); its
    process."""
    conf = os.path.join(tmp, f"haproxy-{port}.cfg")
    with open(conf, "w") as f:
        f.write(haproxy_config_text(port, backend, bind, global_extra))
    proc = procs.start(["haproxy", "-f", conf, "-db"])
    wait_port(port)
    return proc


def haproxy(procs, tmp, backends, retries=False):
    port = free_port()
    servers = "".join(f"  server s{i + 1} 127.0.0.1:{b} check\n" for i, b in enumerate(backends))
    extra = "  retry-on all-retryable-errors\n  option redispatch\n  retries 3\n" if retries else ""
    haproxy_config(procs, tmp, port, f"  balance roundrobin\n  option httpchk GET /readyz\n{extra}{servers}")
    return port


def nginx_proxy(procs, tmp, backends):
    port = free_port()
    name = f"proxy-{port}"
    servers = " ".join(f"server 127.0.0.1:{b};" for b in backends)
    conf = os.path.join(tmp, f"{name}.conf")
    with open(conf, "w") as f:
        f.write(f"""daemon off; worker_processes 2; pid {tmp}/{name}.pid; error_log /dev/null crit;
events {{ worker_connections 8192; }}
http {{ access_log off; keepalive_requests 1000000;
  {temp_paths(tmp, name)}
  upstream shops {{ {servers} keepalive 128; }}
  server {{ listen 127.0.0.1:{port};
    location / {{ proxy_pass http://shops; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_next_upstream error timeout http_502 http_503 http_504; }} }} }}
""")
    procs.start(["nginx", "-c", conf, "-p", tmp])
    wait_port(port)
    return port


def wrk(port, path, connections, seconds, scheme="http"):
    out = subprocess.run(["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "--latency",
                          f"{scheme}://127.0.0.1:{port}{path}"], check=True, capture_output=True, text=True).stdout

    def ms(label):
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p50_ms": ms("50"),
            "p99_ms": ms("99"), "errors": (int(errors.group(1)) if errors else 0) +
            (sum(int(g) for g in sock.groups()) if sock else 0)}


def throughput(label, backends, path, runs, connections, seconds, procs, tmp):
    ports = {"direct": backends[0], "flashguard": flashguard_gateway(procs, tmp, backends),
             "haproxy": haproxy(procs, tmp, backends), "nginx": nginx_proxy(procs, tmp, backends)}
    if BASELINE_BIN:
        ports["baseline"] = flashguard_gateway(procs, tmp, backends, BASELINE_BIN)
    for name, port in ports.items():  # warm up pools and checks
        wrk(port, path, connections, 1)
    results = {name: [] for name in ports}
    for run in range(runs):
        for name, port in ports.items():
            results[name].append(wrk(port, path, connections, seconds))
        print(f"  {label} run {run + 1}: " + "  ".join(f"{n} {results[n][-1]['rps']:.0f}/s" for n in ports), flush=True)
    summary = {}
    for name, rows in results.items():
        summary[name] = {k: statistics.median(r[k] for r in rows) for k in ("rps", "p50_ms", "p99_ms", "errors")}
    direct = summary["direct"]["rps"]
    print(f"\n{label}: medians of {runs} runs, {connections} connections, {seconds} s each")
    print(f"  {'':12} {'req/s':>9} {'vs direct':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, row in summary.items():
        print(f"  {name:12} {row['rps']:>9.0f} {row['rps'] / direct:>8.2f}x {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} {row['errors']:>7.0f}")
    fg, hap = summary["flashguard"], summary["haproxy"]
    print(f"  flashguard / haproxy throughput {fg['rps'] / hap['rps']:.2f}x, p99 {fg['p99_ms']:.2f} vs {hap['p99_ms']:.2f} ms;"
          f" flashguard / nginx {fg['rps'] / summary['nginx']['rps']:.2f}x", flush=True)
    ratios = {}
    for other in [n for n in ("haproxy", "baseline") if n in results]:
        per_run = [f["rps"] / o["rps"] for f, o in zip(results["flashguard"], results[other])]
        ratios[other] = {"median": statistics.median(per_run), "min": min(per_run), "max": max(per_run)}
        print(f"  flashguard / {other} per run: median {ratios[other]['median']:.2f}x, "
              f"range {ratios[other]['min']:.2f}x to {ratios[other]['max']:.2f}x", flush=True)
    print(flush=True)
    return {"per_run": results, "median": summary, "ratios": ratios}


def customers(port, workers, outcomes, stop):
    """Each worker alternates a product read and an order with a fresh key."""

    def worker(n):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        i = 0
        while not stop.is_set():
            i += 1
            start = time.time()
            try:
                if i % 2:
                    conn.request("GET", "/api/products/hot")
                else:
                    body = json.dumps({"sku": "hot", "quantity": 1, "customer": f"c{n}"})
                    conn.request("POST", "/api/orders", body=body, headers={
                        "Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex})
                resp = conn.getresponse()
                resp.read()
                ok = resp.status < 500
            except Exception:
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            outcomes.append((start, ok))

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(workers)]
    for t in threads:
        t.start()
    return threads


def failover(name, make_proxy, procs, tmp, seconds=6, workers=16):
    run_procs = Procs()
    db = f"sqlite://{tmp}/failover-{name}.db"
    shops = [shop(run_procs, db) for _ in range(3)]
    seed(shops[0][1])
    port = make_proxy(run_procs, tmp, [p for _, p in shops])
    # Let health checks settle before the sale starts.
    time.sleep(1.0)
    outcomes, stop = [], threading.Event()
    threads = customers(port, workers, outcomes, stop)
    time.sleep(seconds / 3)
    run_procs.stop(shops[1][0], signal.SIGKILL)
    time.sleep(seconds * 2 / 3)
    stop.set()
    for t in threads:
        t.join(timeout=10)
    run_procs.stop_all()
    failed = [t for t, ok in outcomes if not ok]
    gap = (max(failed) - min(failed)) * 1000 if failed else 0.0
    return {"requests": len(outcomes), "failed": len(failed), "error_gap_ms": gap}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--skip-failover", action="store_true")
    args = ap.parse_args()
    missing = [t for t in ("haproxy", "nginx", "wrk") if not shutil.which(t)]
    if missing and shutil.which("apt-get"):
        print(f"installing {' '.join(missing)}", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=False, stdout=subprocess.DEVNULL)
    for tool in ("haproxy", "nginx", "wrk"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is needed (apt-get install haproxy nginx wrk)")
    if not os.environ.get("FLASHGUARD_BIN"):
        subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "flashguard"], cwd=ROOT, check=True)
    report = {}
    procs = Procs()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            backends = [nginx_backend(procs, tmp, f"backend{i}") for i in range(3)]
            report["static_backends"] = throughput("nginx backends, fixed JSON", backends, "/", args.runs,
                                                   args.connections, args.seconds, procs, tmp)
            procs.stop_all()
            db = f"sqlite://{tmp}/bench.db"
            shops = [shop(procs, db)[1] for _ in range(3)]
            seed(shops[0])
            report["shop_backends"] = throughput("flashguard shops, GET /api/products/hot", shops, "/api/products/hot",
                                                 args.runs, args.connections, args.seconds, procs, tmp)
            procs.stop_all()
            if not args.skip_failover:
                proxies = {
                    "flashguard": lambda p, t, b: flashguard_gateway(p, t, b),
                    "haproxy (check, defaults)": lambda p, t, b: haproxy(p, t, b),
                    "haproxy (retry-on all-retryable-errors, redispatch)": lambda p, t, b: haproxy(p, t, b, retries=True),
                    "nginx (proxy_next_upstream)": lambda p, t, b: nginx_proxy(p, t, b),
                }
                report["failover"] = {}
                print("failover: 3 shops, 16 customers reading and ordering, one shop SIGKILLed at 1/3 of the run")
                for i, (name, make) in enumerate(proxies.items()):
                    result = failover(f"p{i}", make, procs, tmp)
                    report["failover"][name] = result
                    print(f"  {name:55} {result['failed']:>5} failed of {result['requests']:>6}, "
                          f"longest error run {result['error_gap_ms']:.0f} ms", flush=True)
        finally:
            procs.stop_all()
    with open(os.path.join(ROOT, "bench/gateway-results.json"), "w") as out:
        json.dump(report, out, indent=2)


if __name__ == "__main__":
    main()
