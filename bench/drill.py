#!/usr/bin/env python3
"""The drill's load generator against wrk, same endpoint, side by side.

usage: bench/drill.py [--runs 3] [--seconds 8]

The target is an nginx process answering the shop API with fixed bodies
(product reads 200, orders 201, an empty export), so neither tool waits on a
real backend and the figure is the generator's own ceiling on this machine.
wrk: 2 threads, 64 connections, GET /api/products/x. The drill: open-loop
customers arriving faster than it can serve them (each browses, then orders:
two requests); its rate is requests answered per second of the run. The
drill's exit status is ignored here (its oracle rightly finds the stub's
orders missing from the empty export). Writes bench/drill-results.json.
"""
import argparse, json, os, re, shutil, socket, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release/flashguard")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stub(tmp):
    port = free_port()
    conf = os.path.join(tmp, "stub.conf")
    with open(conf, "w") as f:
        f.write(f"""daemon off; worker_processes 2; pid {tmp}/stub.pid; error_log /dev/null crit;
events {{ worker_connections 8192; }}
http {{ access_log off; keepalive_requests 1000000; default_type application/json;
  client_body_temp_path {tmp}/b; proxy_temp_path {tmp}/p; fastcgi_temp_path {tmp}/f; uwsgi_temp_path {tmp}/u; scgi_temp_path {tmp}/s;
  server {{ listen 127.0.0.1:{port};
    location = /admin/orders {{ return 200 ''; }}
    location = /admin/inventory {{ return 200 '[]'; }}
    location / {{
      if ($request_method = POST) {{ return 201 '{{"order_id":"stub","sku":"x","quantity":1,"customer":"c"}}'; }}
      return 200 '{{"sku":"x","name":"Stub","price_cents":1,"stock":1,"remaining":1}}'; }} }} }}
""")
    proc = subprocess.Popen(["nginx", "-c", conf, "-p", tmp], stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("stub did not start")


def wrk(port, seconds):
    out = subprocess.run(["wrk", "-t", "2", "-c", "64", "-d", f"{seconds}s", f"http://127.0.0.1:{port}/api/products/x"],
                         check=True, capture_output=True, text=True).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def drill(port, seconds, tmp, rate):
    scenario = os.path.join(tmp, "flood.toml")
    with open(scenario, "w") as f:
        f.write(f"""name = "generator ceiling"
[[item]]
sku = "x"
stock = 1000000000
[[phase]]
duration_s = {seconds}
rate = {rate}
[customer]
patience_s = 2
""")
    report_dir = os.path.join(tmp, "report")
    subprocess.run([BIN, "drill", "--target", f"http://127.0.0.1:{port}", "--admin-token", "t",
                    "--scenario", scenario, "--report-dir", report_dir],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, RUST_LOG="error"))
    with open(os.path.join(report_dir, "report.json")) as f:
        report = json.load(f)
    return report["requests"]["total"] / report["duration_s"], report["arrivals_dropped_by_generator"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--rate", type=int, default=70000, help="customers per second offered (two requests each)")
    args = ap.parse_args()
    missing = [t for t in ("nginx", "wrk") if not shutil.which(t)]
    if missing and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=False, stdout=subprocess.DEVNULL)
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "flashguard"], cwd=ROOT, check=True)
    wrks, drills = [], []
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = stub(tmp)
        try:
            wrk(port, 1)
            for run in range(args.runs):
                wrks.append(wrk(port, args.seconds))
                rate, dropped = drill(port, args.seconds, tmp, args.rate)
                drills.append(rate)
                print(f"run {run + 1}: wrk {wrks[-1]:.0f} req/s, drill {rate:.0f} req/s ({dropped} arrivals dropped)", flush=True)
        finally:
            proc.terminate()
            proc.wait()
    w, d = statistics.median(wrks), statistics.median(drills)
    print(f"\nmedians of {args.runs} runs: wrk {w:.0f} req/s, drill {d:.0f} req/s = {100 * d / w:.0f}% of wrk")
    with open(os.path.join(ROOT, "bench/drill-results.json"), "w") as out:
        json.dump({"wrk": wrks, "drill": drills, "ratio": d / w}, out, indent=2)


if __name__ == "__main__":
    main()
