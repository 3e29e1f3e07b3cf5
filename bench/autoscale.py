#!/usr/bin/env python3
"""`flashguard up` with [autoscale], measured: how long from a load rise to
an added shop serving, and how far ahead of a sale's opening the planned
shops are up.

usage: bench/autoscale.py [--runs 3]

Each run starts `up` with one shop at 0.25 core (a cgroup), the autoscaler
on (1 to 3 shops, steps of 1 s, `planned_shops = 3`, lead 20 s), no demo.

1. Load rise: an item without a sale window; wrk (64 connections, a sale's
   mix: read the product, then order it) starts at T0. Measured: T0 until
   the gateway lists `shop-2` up with requests answered.
2. Pre-scaling: an item whose sale opens 30 s later is put in the
   catalogue, with no load. Measured: how long before the opening the
   gateway has 3 shops up (the lead is 20 s; the autoscaler reads the
   catalogue every 2 s).

Writes bench/autoscale-results.json. Everything on 127.0.0.1, stops by itself.
"""
import argparse, datetime, json, os, re, signal, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway import BIN, TOKEN  # noqa: E402
from overload import LUA  # noqa: E402
from room import admin_json, request  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_up(tmp):
    config = os.path.join(tmp, "stack.toml")
    with open(config, "w") as f:
        f.write(f"""shops = 1
backups = 0
demo = false
database_url = "sqlite://{tmp}/stack.db"
incidents_db = "{tmp}/incidents.sqlite"
logs_dir = "{tmp}/logs"
listen = "127.0.0.1:0"
gateway_admin_listen = "127.0.0.1:0"
control_listen = "127.0.0.1:0"
monitor_listen = "127.0.0.1:0"
shop_cpu = 0.25

[autoscale]
min_shops = 1
max_shops = 3
planned_shops = 3
lead_s = 20
step_ms = 1000
down_window_s = 600
""")
    proc = subprocess.Popen([BIN, "up", "--config", config], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            stdin=subprocess.PIPE, text=True, env=dict(os.environ, RUST_LOG="warn",
                                                                        FLASHGUARD_ADMIN_TOKEN=TOKEN))
    seen = {}
    deadline = time.time() + 60
    while "control" not in seen:
        line = proc.stdout.readline()
        if not line or time.time() > deadline:
            raise RuntimeError("up did not start")
        for key, marker in (("storefront", "storefront on "), ("admin", "gateway admin on "), ("control", "control on ")):
            if marker in line:
                seen[key] = line.split(marker, 1)[1].split()[0]
    port = lambda url: int(url.rsplit(":", 1)[1])
    return proc, port(seen["storefront"]), port(seen["admin"])


def put_item(port, sku, opens_in_s=None):
    body = {"name": sku, "price_cents": 100, "stock": 100_000_000}
    if opens_in_s is not None:
        # Whole seconds: what the catalogue keeps.
        opens = (datetime.datetime.now(datetime.timezone.utc)
                 + datetime.timedelta(seconds=opens_in_s)).replace(microsecond=0)
        body["sale_starts_at"] = opens.strftime("%Y-%m-%dT%H:%M:%SZ")
    status, _, data = request(port, "PUT", f"/admin/products/{sku}",
                              {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"},
                              json.dumps(body))
    assert status in (200, 201), (status, data)
    return opens.timestamp() if opens_in_s is not None else None


def shops_serving(admin, with_requests=False):
    backends = admin_json(admin, "GET", "/admin/backends")
    return [b for b in backends if b["state"] == "up" and (b["requests"] > 0 or not with_requests)]


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def load_rise():
    with tempfile.TemporaryDirectory() as tmp:
        proc, port, admin = start_up(tmp)
        try:
            put_item(port, "hot")
            time.sleep(2)
            assert len(shops_serving(admin)) == 1
            t0 = time.monotonic()
            wrk = subprocess.Popen(["wrk", "-t", "1", "-c", "64", "-d", "40s", "-s", LUA,
                                    f"http://127.0.0.1:{port}/api/orders"],
                                   stdout=subprocess.DEVNULL, env=dict(os.environ, WRK_BROWSE="1"))
            try:
                while time.monotonic() - t0 < 40:
                    if any(b["name"] != "shop-1" for b in shops_serving(admin, with_requests=True)):
                        return time.monotonic() - t0
                    time.sleep(0.1)
                return None
            finally:
                wrk.terminate()
                wrk.wait()
        finally:
            stop(proc)


def prescale():
    with tempfile.TemporaryDirectory() as tmp:
        proc, port, admin = start_up(tmp)
        try:
            opens = put_item(port, "upcoming", opens_in_s=30)
            while time.time() < opens + 5:
                if len(shops_serving(admin)) >= 3:
                    return opens - time.time()
                time.sleep(0.1)
            return None
        finally:
            stop(proc)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not os.environ.get("FLASHGUARD_BIN"):
        subprocess.run(["cargo", "build", "--release", "--bin", "flashguard"], cwd=ROOT, check=True)
    results = {"load_rise_to_serving_s": [], "ready_before_opening_s": []}
    for n in range(args.runs):
        rise = load_rise()
        ahead = prescale()
        results["load_rise_to_serving_s"].append(rise)
        results["ready_before_opening_s"].append(ahead)
        print(f"run {n + 1}: load rise to an added shop serving {rise if rise is None else f'{rise:.1f} s'}; "
              f"3 shops up {ahead if ahead is None else f'{ahead:.1f} s'} before the sale opened (lead 20 s)",
              flush=True)
    for key, values in results.items():
        got = [v for v in values if v is not None]
        if got:
            print(f"{key}: median {statistics.median(got):.1f} s (range {min(got):.1f}..{max(got):.1f}), "
                  f"{len(got)}/{len(values)} runs")
    with open(os.path.join(ROOT, "bench/autoscale-results.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
