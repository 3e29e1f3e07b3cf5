#!/usr/bin/env python3
"""`flashguard rehearse --scenario beyond-capacity --baseline`, several
times: flashguard (three CPU-capped shops, the gateway, its waiting room)
against the original outage's architecture (one shop with the same quota,
no gateway, no queue), each run sized from the capacity it measured.

usage: bench/beyond_capacity.py [--runs 3] [--scale 1.0] [--autoscale]

Prints, for each run and as medians with their range: the measured
capacity, the surge, availability, errors, orders acknowledged, customers
who gave up, the waiting room's figures (customers waited, wait p50/p90/
max, ETA ratio p50/p90, requests of customers let in held back), the
served customers' p99, and the invariants.
Writes bench/beyond-capacity-results.json.

With --autoscale: `rehearse --scenario beyond-capacity --autoscale` (two
shops, the autoscaler between two and four, a third planned for the sale;
the sale opens 7 s in and closes with the surge), no baseline. Prints the
same figures and, from the shops serving at the gateway each second, how
far ahead of the opening the planned shop served (the pre-scale lead),
when the most shops served, and how long after the close the stack was
back at two. Writes bench/autoscaled-rehearsal-results.json.
"""
import argparse, json, os, re, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("FLASHGUARD_BIN") or os.path.join(ROOT, "target/release/flashguard")


def figures(report):
    room = report["waiting_room"]
    return {
        "passed": report["passed"],
        "availability": report["availability"],
        "errors": report["requests"]["errors"],
        "requests": report["requests"]["total"],
        "orders": report["orders_acknowledged"],
        "gave_up": report["customers_gave_up"],
        "waited": room["customers_waited"],
        "wait_p50_s": room["wait_s"]["p50"],
        "wait_p90_s": room["wait_s"]["p90"],
        "wait_max_s": room["wait_s"]["max"],
        "eta_ratio_p50": room["eta_ratio"]["p50"],
        "eta_ratio_p90": room["eta_ratio"]["p90"],
        "served_p99_ms": report["served_latency_ms"]["p99"],
        # Requests of customers let in that the room held back (every shop
        # full); absent from reports of builds before it.
        "held_back": room.get("held_back", 0),
        "oversold": report["invariants"]["oversold_units"],
        "lost": report["invariants"]["lost_orders"],
        "fairness_overtakes": report["invariants"]["fairness_overtakes"],
        "bypassed": report["invariants"]["bypassed_orders"],
        "unanswered": report["invariants"]["unanswered_customers"],
    }


def scaling(report):
    """The shops serving over time against the sale window."""
    sale = report["sales"][0]
    opens, closes = sale["opens_s"], sale["closes_s"]
    serving = [(p["second"], p["shops_serving"]) for p in report["parts"]]
    most = max(n for _, n in serving)
    planned = next((at for at, n in serving if n >= 3), None)
    peak = next((at for at, n in serving if n == most), None)
    back = next((at for at, n in serving if at > closes and n <= 2), None)
    return {
        "prescale_lead_s": None if planned is None else opens - planned,
        "most_shops": most,
        "most_shops_after_opening_s": None if peak is None else peak - opens,
        "back_to_two_after_close_s": None if back is None else back - closes,
    }


def rehearse(scale, flag, reports):
    """Runs `rehearse --scenario beyond-capacity FLAG` and returns its
    `reports` (paths under the report folder) read, with the run's facts."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        out = subprocess.run([BIN, "rehearse", "--scenario", "beyond-capacity", flag,
                              "--scale", str(scale), "--report-dir", tmp],
                             capture_output=True, text=True, env=dict(os.environ, RUST_LOG="warn"))
        took = time.monotonic() - started
        if not all(os.path.exists(os.path.join(tmp, r)) for r in reports):
            sys.exit(f"rehearse ended with {out.returncode} before its reports were written:\n"
                     f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
        measured = re.search(r"the shops serve (\d+) customers/s: (\d+) a second", out.stdout)
        read = []
        for r in reports:
            with open(os.path.join(tmp, r)) as f:
                read.append(json.load(f))
    return read, {"exit": out.returncode, "seconds": took,
                  "capacity_per_s": int(measured.group(1)) if measured else None,
                  "surge_per_s": int(measured.group(2)) if measured else None}


def autoscaled(scale):
    (report,), run = rehearse(scale, "--autoscale", ["report.json"])
    return dict(run, flashguard=dict(figures(report), **scaling(report)))


def one(scale):
    (ours, baseline), run = rehearse(scale, "--baseline", ["report.json", "baseline/report.json"])
    return dict(run, flashguard=figures(ours), baseline=figures(baseline))


def spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    m = statistics.median(values)
    fmt = (lambda v: f"{v:.4f}") if max(values) <= 1.0 and min(values) >= 0 and any(
        isinstance(v, float) for v in values) else (lambda v: f"{v:,.1f}" if isinstance(v, float) else f"{v:,}")
    return f"{fmt(m)} ({fmt(min(values))}..{fmt(max(values))})"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--autoscale", action="store_true")
    args = parser.parse_args()
    if not os.environ.get("FLASHGUARD_BIN"):
        subprocess.run(["cargo", "build", "--release", "--bin", "flashguard"], cwd=ROOT, check=True)
    if args.autoscale:
        return main_autoscaled(args)
    runs = []
    for n in range(args.runs):
        run = one(args.scale)
        runs.append(run)
        f, b = run["flashguard"], run["baseline"]
        print(f"run {n + 1}: {run['seconds']:.0f} s, capacity {run['capacity_per_s']}/s, surge {run['surge_per_s']}/s; "
              f"flashguard {'PASSED' if f['passed'] else 'FAILED'} availability {f['availability']:.4f} errors {f['errors']} "
              f"orders {f['orders']} waited {f['waited']}; baseline {'PASSED' if b['passed'] else 'FAILED'} "
              f"availability {b['availability']:.4f} errors {b['errors']} orders {b['orders']} gave up {b['gave_up']}",
              flush=True)
    print(f"\nmedians of {len(runs)} runs (range)")
    print(f"  {'':22} {'flashguard':>32} {'baseline':>32}")
    for key in ("seconds", "capacity_per_s", "surge_per_s"):
        print(f"  {key:22} {spread([r[key] for r in runs]):>32}")
    for key in runs[0]["flashguard"]:
        if key == "passed":
            ours = sum(r["flashguard"]["passed"] for r in runs)
            base = sum(r["baseline"]["passed"] for r in runs)
            print(f"  {'passed':22} {f'{ours}/{len(runs)}':>32} {f'{base}/{len(runs)}':>32}")
            continue
        print(f"  {key:22} {spread([r['flashguard'][key] for r in runs]):>32} "
              f"{spread([r['baseline'][key] for r in runs]):>32}")
    with open(os.path.join(ROOT, "bench/beyond-capacity-results.json"), "w") as f:
        json.dump(runs, f, indent=1)
    sys.exit(0 if all(r["flashguard"]["passed"] for r in runs) else 1)


def main_autoscaled(args):
    runs = []
    for n in range(args.runs):
        run = autoscaled(args.scale)
        runs.append(run)
        f = run["flashguard"]
        print(f"run {n + 1}: {run['seconds']:.0f} s, capacity {run['capacity_per_s']}/s, surge {run['surge_per_s']}/s; "
              f"{'PASSED' if f['passed'] else 'FAILED'} errors {f['errors']} orders {f['orders']} "
              f"wait p50 {f['wait_p50_s']:.1f} s; pre-scale lead {f['prescale_lead_s']} s, "
              f"{f['most_shops']} shops {f['most_shops_after_opening_s']} s after opening, "
              f"back to 2 {f['back_to_two_after_close_s']} s after close", flush=True)
    print(f"\nmedians of {len(runs)} runs (range)")
    for key in ("seconds", "capacity_per_s", "surge_per_s"):
        print(f"  {key:28} {spread([r[key] for r in runs]):>32}")
    for key in runs[0]["flashguard"]:
        if key == "passed":
            print(f"  {'passed':28} {sum(r['flashguard']['passed'] for r in runs)}/{len(runs)}")
            continue
        print(f"  {key:28} {spread([r['flashguard'][key] for r in runs]):>32}")
    with open(os.path.join(ROOT, "bench/autoscaled-rehearsal-results.json"), "w") as f:
        json.dump(runs, f, indent=1)
    sys.exit(0 if all(r["flashguard"]["passed"] for r in runs) else 1)


if __name__ == "__main__":
    main()
