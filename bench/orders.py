#!/usr/bin/env python3
"""Hot-item order throughput: the shop over HTTP on PostgreSQL and on SQLite,
side by side with pgbench running the naive one-order transaction and the
50-orders-per-transaction ceiling, at the same concurrency, in one run.

usage: bench/orders.py [--runs 3] [--seconds 10] [--connections 64]
Needs: a release build (the script builds it), wrk, pgbench, PostgreSQL at
FLASHGUARD_BENCH_PG (default postgres://postgres@127.0.0.1:5432/test).
Prints medians of the runs and the ratios; writes bench/results.json.
"""
import argparse, json, os, re, shutil, signal, statistics, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release/flashguard")
LOAD = os.path.join(ROOT, "target/release/examples/order_load")
TOKEN = "bench-token"
PG = os.environ.get("FLASHGUARD_BENCH_PG", "postgres://postgres@127.0.0.1:5432/test")
PG_BASE = PG.rsplit("/", 1)[0]
STOCK = 1_000_000_000


def sh(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw).stdout


def psql(db_url, sql):
    return sh("psql", db_url, "-qtAc", sql)


def recreate_db(name):
    psql(PG, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    psql(PG, f"CREATE DATABASE {name}")
    return f"{PG_BASE}/{name}"


def pgbench(script, connections, seconds):
    db = recreate_db("fg_bench_pgbench")
    psql(db, "CREATE TABLE bench_products (sku text PRIMARY KEY, initial_stock bigint NOT NULL, sold bigint NOT NULL DEFAULT 0,"
             " CHECK (sold <= initial_stock));"
             "CREATE TABLE bench_orders (id bigserial PRIMARY KEY, sku text NOT NULL, customer text NOT NULL,"
             " quantity bigint NOT NULL, created_at timestamptz NOT NULL DEFAULT now());"
             f"INSERT INTO bench_products VALUES ('hot', {STOCK}, 0)")
    out = sh("pgbench", "-n", "-c", str(connections), "-j", "2", "-T", str(seconds), "-f", os.path.join(ROOT, "bench", script), db)
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))
    sold = int(psql(db, "SELECT sold FROM bench_products").strip())
    orders = int(psql(db, "SELECT count(*) FROM bench_orders").strip())
    assert orders == sold, f"pgbench: {orders} orders but {sold} sold"
    return tps


class Shop:
    def __init__(self, db_url):
        env = dict(os.environ, FLASHGUARD_ADMIN_TOKEN=TOKEN, RUST_LOG="warn")
        self.proc = subprocess.Popen([BIN, "shop", "--listen", "127.0.0.1:0", "--db", db_url],
                                     stdout=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline().strip()
        assert line.startswith("listening on "), line
        self.url = line[len("listening on "):]
        deadline = time.time() + 30
        while True:
            try:
                if urllib.request.urlopen(self.url + "/readyz", timeout=2).status == 200:
                    break
            except Exception:
                pass
            if time.time() > deadline:
                raise RuntimeError("shop never became ready")
            time.sleep(0.05)

    def admin(self, method, path, body=None):
        req = urllib.request.Request(self.url + path, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.read().decode()

    def sold(self):
        lines = json.loads(self.admin("GET", "/admin/inventory"))
        return next(l for l in lines if l["sku"] == "hot")["sold"]

    def peak_rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)


def shop_peak(db_url, connections, seconds):
    shop = Shop(db_url)
    try:
        shop.admin("PUT", "/admin/products/hot", {"name": "Hot item", "price_cents": 100, "stock": STOCK})
        before = shop.sold()
        out = sh("wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "-s", os.path.join(ROOT, "bench/order.lua"), shop.url)
        # Let the last batch commit, then count: orders and units sold change
        # in the same transaction, so once quiet they must agree exactly.
        after = shop.sold()
        while True:
            time.sleep(0.3)
            settled = shop.sold()
            if settled == after:
                break
            after = settled
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        exported = shop.admin("GET", "/admin/orders").count("\n")
        # Zero oversell and nothing lost: the store's orders equal units sold, within stock.
        assert exported == after and after <= STOCK, f"export {exported} vs sold {after}"
        return {"orders_per_s": (after - before) / seconds, "non_2xx": int(non2xx.group(1)) if non2xx else 0,
                "peak_rss_mib": shop.peak_rss_mib()}
    finally:
        shop.stop()


def half_peak_latency(db_url, rate, seconds):
    shop = Shop(db_url)
    try:
        shop.admin("PUT", "/admin/products/hot", {"name": "Hot item", "price_cents": 100, "stock": STOCK})
        return json.loads(sh(LOAD, shop.url, str(int(rate)), str(seconds)))
    finally:
        shop.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    args = ap.parse_args()
    missing = [tool for tool in ("wrk", "pgbench", "psql") if not shutil.which(tool)]
    if missing and shutil.which("apt-get"):
        print(f"installing wrk and postgresql-client for {', '.join(missing)}", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk", "postgresql-client"], check=False,
                       stdout=subprocess.DEVNULL)
    for tool in ("wrk", "pgbench", "psql"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is needed (apt-get install wrk postgresql-client)")
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "flashguard", "--example", "order_load"], cwd=ROOT, check=True)
    c, s = args.connections, args.seconds
    runs = {"naive_pgbench": [], "batched_pgbench": [], "shop_postgres": [], "shop_sqlite": [], "rss_postgres": [], "rss_sqlite": []}
    for run in range(args.runs):
        runs["naive_pgbench"].append(pgbench("naive_order.sql", c, s))
        runs["batched_pgbench"].append(pgbench("batched_order.sql", c, s) * 50)
        pg = shop_peak(recreate_db("fg_bench_shop"), c, s)
        runs["shop_postgres"].append(pg["orders_per_s"]); runs["rss_postgres"].append(pg["peak_rss_mib"])
        with tempfile.TemporaryDirectory() as tmp:
            lite = shop_peak(f"sqlite://{tmp}/bench.db", c, s)
        runs["shop_sqlite"].append(lite["orders_per_s"]); runs["rss_sqlite"].append(lite["peak_rss_mib"])
        print(f"run {run + 1}: naive {runs['naive_pgbench'][-1]:.0f}/s  batched {runs['batched_pgbench'][-1]:.0f}/s  "
              f"shop-pg {pg['orders_per_s']:.0f}/s ({pg['non_2xx']} non-2xx)  shop-sqlite {lite['orders_per_s']:.0f}/s "
              f"({lite['non_2xx']} non-2xx)", flush=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    latency = half_peak_latency(recreate_db("fg_bench_shop"), med["shop_postgres"] / 2, s)
    psql(PG, "DROP DATABASE IF EXISTS fg_bench_shop WITH (FORCE)")
    psql(PG, "DROP DATABASE IF EXISTS fg_bench_pgbench WITH (FORCE)")
    report = {"connections": c, "seconds": s, "runs": args.runs, "per_run": runs, "median": med,
              "ratio_shop_pg_to_naive": med["shop_postgres"] / med["naive_pgbench"],
              "fraction_of_batched_ceiling": med["shop_postgres"] / med["batched_pgbench"],
              "ratio_shop_sqlite_to_naive": med["shop_sqlite"] / med["naive_pgbench"],
              "half_peak_postgres": latency}
    with open(os.path.join(ROOT, "bench/results.json"), "w") as out:
        json.dump(report, out, indent=2)
    print()
    print(f"medians of {args.runs} runs, {c} connections, {s} s each (durable orders/s, counted in the store)")
    print(f"  pgbench naive (1 order/tx)        {med['naive_pgbench']:>9.0f}")
    print(f"  pgbench batched (50 orders/tx)    {med['batched_pgbench']:>9.0f}")
    print(f"  shop over HTTP, PostgreSQL        {med['shop_postgres']:>9.0f}   {report['ratio_shop_pg_to_naive']:.1f}x naive, "
          f"{100 * report['fraction_of_batched_ceiling']:.0f}% of batched ceiling   peak RSS {med['rss_postgres']:.0f} MiB")
    print(f"  shop over HTTP, SQLite            {med['shop_sqlite']:>9.0f}   {report['ratio_shop_sqlite_to_naive']:.1f}x naive pgbench   "
          f"peak RSS {med['rss_sqlite']:.0f} MiB")
    print(f"  PostgreSQL shop at half of peak ({latency['rate']:.0f}/s open loop): p50 {latency['p50_ms']:.1f} ms, "
          f"p99 {latency['p99_ms']:.1f} ms, max {latency['max_ms']:.1f} ms, {latency['errors']} errors of {latency['sent']}")


if __name__ == "__main__":
    main()
