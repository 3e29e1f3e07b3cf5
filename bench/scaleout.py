#!/usr/bin/env python3
"""A hot item with one shop and with three, through the gateway, on both
stores, side by side in one run: three shops balanced as before
(`sku_affinity = false`) and with each item's orders routed to its owner
(`sku_affinity = true`, the default).

usage: bench/scaleout.py [--rounds 3] [--seconds 8] [--connections 64] [--stores sqlite,postgres]
                         [--no-affinity]

wrk (64 connections) orders one item with fresh idempotency keys
(bench/overload.lua) through flashguard's gateway. For each cell: orders/s,
p50/p99, and from the shops' own metrics the mean order batch size (orders
per transaction of the group commit) and the transactions per second, per
shop: what shows why three shops are slower than one when each forms its
own small batches and they fight over one row (PostgreSQL) or one file
lock (SQLite).

PostgreSQL from FLASHGUARD_BENCH_PG (default postgres://postgres@127.0.0.1:5432/test;
a fresh database per cell). Writes bench/scaleout-results.json.
"""
import argparse, http.client, json, os, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway import BIN, TOKEN, Procs, free_port, seed, shop, wait_port  # noqa: E402
from overload import wrk  # noqa: E402

PG = os.environ.get("FLASHGUARD_BENCH_PG", "postgres://postgres@127.0.0.1:5432/test")


def recreate_pg(name):
    base = PG.rsplit("/", 1)[0]
    for sql in (f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}"):
        subprocess.run(["psql", PG, "-qc", sql], check=True, capture_output=True)
    return f"{base}/{name}"


def metrics(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    values = {}
    for line in text.splitlines():
        if line.startswith("shop_order_batch_size_sum") or line.startswith("shop_order_batch_size_count"):
            name, value = line.rsplit(" ", 1)
            values[name.split("{")[0]] = float(value)
    return values


def gateway(procs, tmp, ports, affinity):
    port, admin = free_port(), free_port()
    args = [BIN, "gateway", "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}"]
    conf = os.path.join(tmp, f"gateway-{port}.toml")
    with open(conf, "w") as f:
        f.write(f"[balance]\nsku_affinity = {'true' if affinity else 'false'}\n")
    args += ["--config", conf]
    for i, p in enumerate(ports):
        args += ["--backend", f"shop-{i + 1}=127.0.0.1:{p}"]
    procs.start(args, env=dict(os.environ, RUST_LOG="warn", FLASHGUARD_ADMIN_TOKEN=TOKEN))
    wait_port(port)
    return port


def cell(store, shops, affinity, args, tmp, n):
    procs = Procs()
    try:
        if store == "sqlite":
            db = f"sqlite://{tmp}/scaleout-{n}.db"
        else:
            db = recreate_pg(f"fg_bench_scaleout_{n}")
        ports = []
        for _ in range(shops):
            _, port = shop(procs, db)
            ports.append(port)
        seed(ports[0])
        port = gateway(procs, tmp, ports, affinity)
        before = [metrics(p) for p in ports]
        result = wrk(port, args.connections, args.seconds)
        after = [metrics(p) for p in ports]
        per_shop = []
        for b, a in zip(before, after):
            count = a.get("shop_order_batch_size_count", 0) - b.get("shop_order_batch_size_count", 0)
            total = a.get("shop_order_batch_size_sum", 0) - b.get("shop_order_batch_size_sum", 0)
            per_shop.append({"transactions_per_s": count / args.seconds,
                             "mean_batch": total / count if count else 0.0})
        result["per_shop"] = per_shop
        return result
    finally:
        procs.stop_all()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--no-affinity", action="store_true", help="leave out 3 shops with sku_affinity")
    args = parser.parse_args()
    if not os.environ.get("FLASHGUARD_BIN"):
        subprocess.run(["cargo", "build", "--release", "--bin", "flashguard"],
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), check=True)
    layouts = [(1, True), (3, False)] + ([] if args.no_affinity else [(3, True)])
    results = {}
    n = 0
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for store in args.stores.split(","):
                for shops, affinity in layouts:
                    n += 1
                    routing = "" if shops == 1 else (" by owner" if affinity else " balanced")
                    label = f"{store} {shops} shop{'s' if shops > 1 else ''}{routing}"
                    got = cell(store, shops, affinity, args, tmp, n)
                    results.setdefault(label, []).append(got)
                    batches = ", ".join(f"{s['transactions_per_s']:.0f} tx/s × {s['mean_batch']:.1f}" for s in got["per_shop"])
                    print(f"round {r + 1} {label:28} {got['goodput']:8,.0f} orders/s  p50 {got['p50_ms']:6.1f} ms  "
                          f"p99 {got['p99_ms']:7.1f} ms  errors {got['errors']}  shops: {batches}", flush=True)
    print(f"\nmedians of {args.rounds} rounds (range)")
    for label, runs in results.items():
        goodput = [r["goodput"] for r in runs]
        p99 = [r["p99_ms"] for r in runs]
        # Over the shops that committed orders (by owner, one does).
        batch = [statistics.mean([s["mean_batch"] for s in r["per_shop"] if s["transactions_per_s"] > 0] or [0.0])
                 for r in runs]
        print(f"  {label:28} {statistics.median(goodput):8,.0f} orders/s ({min(goodput):,.0f}..{max(goodput):,.0f})  "
              f"p99 {statistics.median(p99):7.1f} ms ({min(p99):.1f}..{max(p99):.1f})  "
              f"mean batch {statistics.median(batch):.1f}")
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "scaleout-results.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
