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

`--capped` measures instead shops as units of capacity: 1, 2, 3 and 4 shops
(one SQLite file, orders by owner) with a CPU quota of `--shop-cpu` cores
each (a cgroup, v1 `cpu` here; as `up`'s `shop_cpu` does), the gateway and
wrk capped too (`--gateway-cpu`, `--load-cpu`) so the shops' share of the
machine is defined, on a sale's mix: each customer reads the product, then
orders it. Customers served per second = orders acknowledged per second.
Writes bench/scaleout-capped-results.json.
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


def cpu_mount():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] == "cgroup" and "cpu" in fields[sep + 3].split(","):
                return fields[4]
            if fields[sep + 1] == "cgroup2":
                with open(os.path.join(fields[4], "cgroup.controllers")) as c:
                    if "cpu" in c.read().split():
                        return fields[4]
    return None


class Groups:
    """CPU groups for this run's processes, removed at the end."""

    def __init__(self):
        mount = cpu_mount()
        if mount is None:
            sys.exit("--capped needs a writable cpu cgroup controller")
        self.v2 = os.path.exists(os.path.join(mount, "cgroup.controllers"))
        self.root = os.path.join(mount, f"flashguard-bench-{os.getpid()}")
        os.makedirs(self.root, exist_ok=True)
        if self.v2:
            for d in (mount, self.root):
                with open(os.path.join(d, "cgroup.subtree_control"), "w") as f:
                    f.write("+cpu")

    def group(self, name, cores):
        path = os.path.join(self.root, name)
        os.makedirs(path, exist_ok=True)
        quota = int(cores * 100_000)
        if self.v2:
            with open(os.path.join(path, "cpu.max"), "w") as f:
                f.write(f"{quota} 100000")
        else:
            with open(os.path.join(path, "cpu.cfs_period_us"), "w") as f:
                f.write("100000")
            with open(os.path.join(path, "cpu.cfs_quota_us"), "w") as f:
                f.write(str(quota))
        return path

    @staticmethod
    def place(path, pid):
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write(str(pid))

    def remove(self):
        for name in os.listdir(self.root):
            if os.path.isdir(os.path.join(self.root, name)):
                for _ in range(50):
                    try:
                        os.rmdir(os.path.join(self.root, name))
                        break
                    except OSError:
                        time.sleep(0.05)
        os.rmdir(self.root)


def capped_cell(shops, args, tmp, groups, n):
    procs = Procs()
    try:
        db = f"sqlite://{tmp}/capped-{n}.db"
        ports = []
        for i in range(shops):
            proc, port = shop(procs, db)
            groups.place(groups.group(f"shop-{i + 1}", args.shop_cpu), proc.pid)
            ports.append(port)
        seed(ports[0])
        port = gateway(procs, tmp, ports, True)
        groups.place(groups.group("gateway", args.gateway_cpu), procs.procs[-1].pid)
        load = groups.group("load", args.load_cpu)
        launcher = lambda command: ["sh", "-c", f'echo $$ > {load}/cgroup.procs && exec "$@"', "sh", *command]
        got = wrk(port, args.connections, args.seconds, launcher=launcher, env={"WRK_BROWSE": "1"})
        # Half the answers are the product read's 200s: not errors here.
        got["errors"] -= got["statuses"].get(200, 0)
        return got
    finally:
        procs.stop_all()


def capped(args):
    groups = Groups()
    results = {}
    n = 0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.rounds):
                for shops in (1, 2, 3, 4):
                    n += 1
                    got = capped_cell(shops, args, tmp, groups, n)
                    results.setdefault(shops, []).append(got)
                    print(f"round {r + 1} {shops} shop{'s' if shops > 1 else ' '} at {args.shop_cpu} core: "
                          f"{got['goodput']:7,.0f} customers/s  p50 {got['p50_ms']:6.1f} ms  p99 {got['p99_ms']:7.1f} ms  "
                          f"errors {got['errors']}", flush=True)
    finally:
        groups.remove()
    print(f"\nmedians of {args.rounds} rounds (range); per round against one shop")
    for shops, runs in results.items():
        goodput = [r["goodput"] for r in runs]
        ratios = [g / o["goodput"] for g, o in zip(goodput, results[1])]
        print(f"  {shops} shop{'s' if shops > 1 else ' '} {statistics.median(goodput):7,.0f} customers/s "
              f"({min(goodput):,.0f}..{max(goodput):,.0f})  ×{statistics.median(ratios):.2f} "
              f"({min(ratios):.2f}..{max(ratios):.2f})  p99 {statistics.median(r['p99_ms'] for r in runs):.1f} ms")
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "scaleout-capped-results.json"), "w") as f:
        json.dump(results, f, indent=1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--no-affinity", action="store_true", help="leave out 3 shops with sku_affinity")
    parser.add_argument("--capped", action="store_true", help="1 to 4 CPU-capped shops on a sale's mix")
    parser.add_argument("--shop-cpu", type=float, default=0.25)
    parser.add_argument("--gateway-cpu", type=float, default=0.5)
    parser.add_argument("--load-cpu", type=float, default=0.5)
    args = parser.parse_args()
    if not os.environ.get("FLASHGUARD_BIN"):
        subprocess.run(["cargo", "build", "--release", "--bin", "flashguard"],
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), check=True)
    if args.capped:
        return capped(args)
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
