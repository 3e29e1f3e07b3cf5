#!/usr/bin/env python3
"""Alert latency: from a shop dying (its `up` crossing the threshold) to the
TargetDown notification arriving at a webhook, with the default rules and a
1 s collection interval. Target: at most 3 s.

usage: bench/alert_latency.py [--runs 5]
Each run: start a shop and a monitor watching it (with a webhook receiver in
this script), wait until the shop is scraped as up, SIGKILL it, time until
the webhook receives the firing TargetDown. Prints each run and the median;
writes bench/alert-latency-results.json.
"""
import argparse, http.server, json, os, signal, socket, statistics, subprocess, tempfile, threading, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("FLASHGUARD_BIN") or os.path.join(ROOT, "target/release/flashguard")


class Hook(http.server.BaseHTTPRequestHandler):
    arrived = None

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if any(a["labels"].get("alertname") == "TargetDown" and a["status"] == "firing" for a in body["alerts"]):
            if Hook.arrived is None:
                Hook.arrived = time.time()
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def start(args, env=None):
    proc = subprocess.Popen([BIN, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=dict(os.environ, RUST_LOG="error", **(env or {})))
    line = proc.stdout.readline().strip()
    assert line.startswith("listening on "), line
    return proc, line[len("listening on "):]


def get_json(url):
    with urllib.request.urlopen(url, timeout=2) as r:
        return json.load(r)


def scraped_up(monitor_url, target):
    """Waits (20 s at most) until the monitor has scraped `target` as up."""
    deadline = time.time() + 20
    while True:
        up = get_json(f"{monitor_url}/api/query?metric=up&target={target}")
        if up and up[0]["points"][0][1] == 1.0:
            return
        assert time.time() < deadline, f"{target} never scraped as up"
        time.sleep(0.05)


def one_run(tmp, hook_url):
    Hook.arrived = None
    shop, shop_url = start(["shop", "--listen", "127.0.0.1:0", "--db", f"sqlite://{tmp}/s{time.time()}.db"])
    monitor, monitor_url = start(["monitor", "--listen", "127.0.0.1:0", "--webhook", hook_url,
                                  "--target", f"shop={shop_url}"])
    try:
        scraped_up(monitor_url, "shop")
        killed = time.time()
        shop.send_signal(signal.SIGKILL)
        shop.wait()
        while Hook.arrived is None:
            assert time.time() - killed < 30, "no notification within 30 s"
            time.sleep(0.01)
        return Hook.arrived - killed
    finally:
        for p in (monitor, shop):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "flashguard"], cwd=ROOT, check=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook_url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    latencies = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(args.runs):
            latencies.append(one_run(tmp, hook_url))
            print(f"run {n + 1}: {latencies[-1]:.2f} s from SIGKILL to the webhook", flush=True)
    server.shutdown()
    print(f"\nmedian {statistics.median(latencies):.2f} s, max {max(latencies):.2f} s (target: at most 3 s)")
    with open(os.path.join(ROOT, "bench/alert-latency-results.json"), "w") as out:
        json.dump({"seconds": latencies}, out)


if __name__ == "__main__":
    main()
