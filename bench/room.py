#!/usr/bin/env python3
"""The waiting room, measured: what a waiting customer costs the gateway,
in CPU and in memory, and whether the room lets people in at the rate it
was told to.

usage: bench/room.py [--rounds 3] [--seconds 8] [--connections 64]
                     [--admit 100] [--window 60] [--skip-admission]

1. Answers per second, alternating in each round (wrk, keep-alive): the
   gateway proxying a product read to a backend (nginx answering a fixed
   JSON body, the cheapest backend, so the gateway's own cost shows),
   against the same gateway answering a waiting customer itself (the
   ticket checked, the position computed, 429 JSON with Retry-After), and
   a first visit (a ticket signed and the newcomer counted into the line).
   The ratio to proxied requests is what matters: a waiting customer's
   poll must be cheaper than letting the customer in.
2. Memory per million waiting: the gateway's RSS before and after
   `POST /admin/room/rehearse {"customers": 1000000}`, three times (the
   same arrivals the gateway sees from a million clients: each ticket
   issued, signed and counted into the line, from a million networks).
3. Admission against the bound, over a minute: `adaptive = false`,
   `admit_per_s = --admit`, demand half again as large from the drill's
   customers (each keeps its ticket, comes back at Retry-After, then
   shops), one shop behind the gateway. The gateway's own
   `gateway_room_admitted_total` is read at the start and the end of the
   window (the line is long all the while): admitted per second ÷ the
   bound should be within ±5 %.

Installs nginx and wrk with apt-get when missing. Everything runs on
127.0.0.1 and stops by itself. Writes bench/room-results.json.
"""
import argparse, http.client, json, os, re, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway import BIN, TOKEN, Procs, free_port, nginx_backend, shop, wait_port  # noqa: E402
from overload import rss_bytes  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "bench-room-key-0123456789abcdef0123456789"


def gateway(procs, tmp, backend, room=None):
    port, admin = free_port(), free_port()
    args = [BIN, "gateway", "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}",
            "--backend", f"b1=127.0.0.1:{backend}", "--trust-proxy", "127.0.0.1"]
    if room is not None:
        conf = os.path.join(tmp, f"gateway-{port}.toml")
        with open(conf, "w") as f:
            f.write("[waiting_room]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in room.items()))
        args += ["--config", conf]
    proc = procs.start(args, env=dict(os.environ, RUST_LOG="warn", FLASHGUARD_ADMIN_TOKEN=TOKEN))
    line = proc.stdout.readline().strip()
    assert line.startswith("listening on "), line
    wait_port(admin)
    return proc, port, admin


def request(port, method, path, headers=None, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), data


def admin_json(admin, method, path, body=None):
    status, _, data = request(admin, method, path, {"Authorization": "Bearer " + TOKEN,
                                                     "Content-Type": "application/json"},
                              json.dumps(body) if body is not None else None)
    assert status == 200, (status, data)
    return json.loads(data)


def metric(admin, name):
    _, _, data = request(admin, "GET", "/metrics")
    for line in data.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wrk(port, path, connections, seconds, headers=()):
    args = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--latency"]
    for h in headers:
        args += ["-H", h]
    out = subprocess.run(args + [f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rate, int(non2xx.group(1)) if non2xx else 0


def waiting_ticket(port):
    """The first customer is let in (the cap is one active session); the
    second waits for as long as the benchmark runs."""
    accept = {"Accept": "application/json"}
    # The first customer comes back until let in (at one a second it may
    # wait a turn), and so holds the one session.
    first = request(port, "GET", "/products/hot", accept)
    deadline = time.time() + 10
    while first[0] == 429:
        assert time.time() < deadline, first
        time.sleep(0.2)
        first = request(port, "GET", "/products/hot", dict(accept, **{"flashguard-ticket": first[1]["flashguard-ticket"]}))
    second = request(port, "GET", "/products/hot", accept)
    assert second[0] == 429, second
    ticket = second[1]["flashguard-ticket"]
    again = request(port, "GET", "/products/hot", dict(accept, **{"flashguard-ticket": ticket}))
    assert again[0] == 429 and json.loads(again[2])["position"] >= 1, (first[0], again)
    return ticket


def answers(args, procs, tmp):
    backend = nginx_backend(procs, tmp, "backend")
    _, proxied_port, _ = gateway(procs, tmp, backend)
    holding = {"activation": "always", "key": KEY, "adaptive": False, "admit_per_s": 1.0,
               "min_admit_per_s": 1.0, "max_active": 1, "tickets_per_client_per_min": 0,
               "paths": ["/products/*"]}
    _, room_port, room_admin = gateway(procs, tmp, backend, holding)
    ticket = waiting_ticket(room_port)
    json_accept = "Accept: application/json"
    rows = {"proxied": [], "waiting": [], "first_visit": []}
    for r in range(args.rounds):
        rows["proxied"].append(wrk(proxied_port, "/products/hot", args.connections, args.seconds)[0])
        rate, non2xx = wrk(room_port, "/products/hot", args.connections, args.seconds,
                           [json_accept, f"flashguard-ticket: {ticket}"])
        assert non2xx > 0.99 * rate * args.seconds, "the waiting customer was let in"
        rows["waiting"].append(rate)
        rows["first_visit"].append(wrk(room_port, "/products/hot", args.connections, args.seconds,
                                       [json_accept])[0])
        print(f"  round {r + 1}: proxied {rows['proxied'][-1]:,.0f}/s, waiting {rows['waiting'][-1]:,.0f}/s, "
              f"first visit {rows['first_visit'][-1]:,.0f}/s", flush=True)
    ratios = {k: [v / p for v, p in zip(rows[k], rows["proxied"])] for k in ("waiting", "first_visit")}
    return {"per_s": rows, "ratio_to_proxied": ratios,
            "in_line_after": admin_json(room_admin, "GET", "/admin/room").get("waiting")}


def memory(procs, tmp):
    backend = nginx_backend(procs, tmp, "memory-backend")
    room = {"activation": "always", "key": KEY, "adaptive": False, "admit_per_s": 1.0,
            "min_admit_per_s": 1.0, "max_active": 1}
    proc, _, admin = gateway(procs, tmp, backend, room)
    time.sleep(0.5)
    rss = [rss_bytes(proc.pid)]
    for _ in range(3):
        answer = admin_json(admin, "POST", "/admin/room/rehearse", {"customers": 1_000_000})
        rss.append(rss_bytes(proc.pid))
        print(f"  +1,000,000 customers: RSS {rss[-1] / 2**20:.1f} MiB ({answer})", flush=True)
    steps = [b - a for a, b in zip(rss, rss[1:])]
    return {"rss_bytes": rss, "per_million_bytes": steps, "waiting": admin_json(admin, "GET", "/admin/room").get("waiting")}


SCENARIO = """name = "admission at the bound"
availability_floor = 0.0

[[item]]
sku = "bench-room"
stock = 100000000
limit_per_customer = 1

[[phase]]
duration_s = {duration}
rate = {rate}

[customer]
synthetic_addresses = true
waiting_patience_s = 300
"""


def admission(args, procs, tmp):
    db = os.path.join(tmp, "shop.sqlite")
    _, shop_port = shop(procs, f"sqlite://{db}?mode=rwc")
    room = {"activation": "always", "key": KEY, "adaptive": False, "admit_per_s": float(args.admit),
            "min_admit_per_s": 1.0, "max_active": 1_000_000,
            "paths": ["/", "/products/*", "/orders/*", "/api/orders*", "/api/products/*"]}
    proc, port, admin = gateway(procs, tmp, shop_port, room)
    scenario = os.path.join(tmp, "admission.toml")
    warm = 10
    with open(scenario, "w") as f:
        f.write(SCENARIO.format(duration=warm + args.window + 5, rate=args.admit * 1.5))
    drill = subprocess.Popen([BIN, "drill", "--target", f"http://127.0.0.1:{port}", "--scenario", scenario,
                              "--admin-token", TOKEN, "--report-dir", os.path.join(tmp, "admission-report"),
                              "--connections", "2048"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=dict(os.environ, RUST_LOG="warn"))
    try:
        # The drill sets its item up first; the window starts once the
        # line has formed.
        deadline = time.time() + 60
        while metric(admin, "gateway_room_waiting") < args.admit:
            if time.time() > deadline or drill.poll() is not None:
                raise RuntimeError("the line never formed")
            time.sleep(0.2)
        time.sleep(warm / 2)
        t0, a0 = time.monotonic(), metric(admin, "gateway_room_admitted_total")
        waiting = []
        while time.monotonic() - t0 < args.window:
            time.sleep(1)
            waiting.append(metric(admin, "gateway_room_waiting"))
        t1, a1 = time.monotonic(), metric(admin, "gateway_room_admitted_total")
        rate = (a1 - a0) / (t1 - t0)
    finally:
        drill.terminate()
        drill.wait()
    print(f"  admitted {rate:.1f}/s against a bound of {args.admit}/s over {t1 - t0:.0f} s "
          f"(line {min(waiting):.0f}..{max(waiting):.0f})", flush=True)
    return {"bound_per_s": args.admit, "admitted_per_s": rate, "ratio": rate / args.admit,
            "window_s": t1 - t0, "line_min": min(waiting), "line_max": max(waiting)}


def spread(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--admit", type=int, default=100)
    parser.add_argument("--window", type=int, default=60)
    parser.add_argument("--skip-admission", action="store_true")
    args = parser.parse_args()
    missing = [p for p in ("nginx", "wrk") if not shutil.which(p)]
    if missing:
        subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True)
    if not os.environ.get("FLASHGUARD_BIN"):
        subprocess.run(["cargo", "build", "--release", "--bin", "flashguard"], cwd=ROOT, check=True)
    results = {}
    procs = Procs()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            print("1. answers per second: proxied, a waiting customer, a first visit", flush=True)
            results["answers"] = answers(args, procs, tmp)
            procs.stop_all()
            print("2. memory per million customers waiting", flush=True)
            results["memory"] = memory(procs, tmp)
            procs.stop_all()
            if not args.skip_admission:
                print(f"3. admission at a bound of {args.admit}/s over {args.window} s", flush=True)
                results["admission"] = admission(args, procs, tmp)
        finally:
            procs.stop_all()
    a = results["answers"]
    print("\nsummary")
    for kind in ("proxied", "waiting", "first_visit"):
        s = spread(a["per_s"][kind])
        line = f"  {kind:12} {s['median']:>9,.0f}/s (range {s['min']:,.0f}..{s['max']:,.0f})"
        if kind != "proxied":
            r = spread(a["ratio_to_proxied"][kind])
            line += f"  ×{r['median']:.2f} of proxied (range {r['min']:.2f}..{r['max']:.2f})"
        print(line)
    m = results["memory"]["per_million_bytes"]
    print(f"  memory per million waiting: median {statistics.median(m) / 2**20:.2f} MiB "
          f"(steps {', '.join(f'{b / 2**20:.2f}' for b in m)} MiB)")
    if "admission" in results:
        ad = results["admission"]
        print(f"  admitted {ad['admitted_per_s']:.1f}/s vs bound {ad['bound_per_s']}/s: "
              f"×{ad['ratio']:.3f} over {ad['window_s']:.0f} s")
    with open(os.path.join(ROOT, "bench/room-results.json"), "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
