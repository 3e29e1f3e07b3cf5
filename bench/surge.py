#!/usr/bin/env python3
"""Surge verdict latency and accuracy: through `flashguard up` (release
build, default settings), alternate a flash-crowd drill (10 customers/s,
then 150/s from synthetic addresses) and an attack-like drill (10
customers/s, then 400 requests/s from 5 addresses to unknown paths), and
time from each surge's start to the monitor's verdict. Target: the right
verdict within 10 s, every run.

usage: bench/surge.py [--runs 3]
Prints each run and the medians; writes bench/surge-results.json.
"""
import argparse, json, os, statistics, subprocess, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release/flashguard")
CALM_S = 6

CROWD = """name = "flash crowd"
availability_floor = 0.0
[[item]]
sku = "crowd-{n}"
stock = 1000000
[[phase]]
duration_s = 6
rate = 10
[[phase]]
duration_s = 10
rate = 150
"""

ATTACK = """name = "attack"
availability_floor = 0.0
[[item]]
sku = "quiet-{n}"
stock = 1000000
[[phase]]
duration_s = 16
rate = 10
[[attack]]
start_s = 6
duration_s = 10
rate = 400
clients = 5
"""


def get_json(url):
    with urllib.request.urlopen(url, timeout=2) as r:
        return json.load(r)


def start_stack(tmp):
    with open(f"{tmp}/stack.toml", "w") as f:
        f.write(f'database_url = "sqlite://{tmp}/stack.db"\nincidents_db = "{tmp}/incidents.sqlite"\n'
                'listen = "127.0.0.1:0"\ngateway_admin_listen = "127.0.0.1:0"\n'
                'control_listen = "127.0.0.1:0"\nmonitor_listen = "127.0.0.1:0"\n')
    proc = subprocess.Popen([BIN, "up", "--config", f"{tmp}/stack.toml"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=dict(os.environ, RUST_LOG="error"))
    urls = {}
    while "control" not in urls:
        line = proc.stdout.readline().strip()
        assert line, "up exited"
        for key, prefix in [("storefront", "storefront on "), ("monitor", "monitor on "),
                            ("token", "admin token "), ("control", "control on ")]:
            if line.startswith(prefix):
                urls[key] = line[len(prefix):].split()[0]
    return proc, urls


def one(tmp, urls, kind, n):
    path = f"{tmp}/{kind}-{n}.toml"
    with open(path, "w") as f:
        f.write((CROWD if kind == "flash_crowd" else ATTACK).format(n=n))
    launched = time.time() * 1000
    drill = subprocess.Popen([BIN, "drill", "--target", urls["storefront"], "--scenario", path,
                              "--control", urls["control"], "--monitor", urls["monitor"],
                              "--report-dir", f"{tmp}/{kind}-{n}"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=dict(os.environ, FLASHGUARD_ADMIN_TOKEN=urls["token"], RUST_LOG="error"))
    verdict = None
    deadline = time.time() + 30
    while time.time() < deadline:
        v = get_json(f"{urls['monitor']}/api/verdict")
        if v and v["decided_ms"] > launched:
            verdict = v
            break
        time.sleep(0.1)
    drill.wait(timeout=90)
    # Let the surge end before the next one.
    deadline = time.time() + 40
    while get_json(f"{urls['monitor']}/api/verdict") is not None and time.time() < deadline:
        time.sleep(0.2)
    if verdict is None:
        return {"kind": kind, "verdict": None, "late_ms": None}
    return {"kind": kind, "verdict": verdict["kind"],
            "late_ms": verdict["decided_ms"] - (launched + CALM_S * 1000),
            "figures": verdict["figures"]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        stack, urls = start_stack(tmp)
        try:
            for n in range(args.runs):
                for kind in ["flash_crowd", "suspected_attack"]:
                    r = one(tmp, urls, kind, n)
                    results.append(r)
                    print(f"run {n + 1} {kind:16}: verdict {r['verdict']}, {r['late_ms'] or 0:.0f} ms after the surge began")
        finally:
            stack.terminate()
            stack.wait(timeout=30)
    for kind in ["flash_crowd", "suspected_attack"]:
        mine = [r for r in results if r["kind"] == kind]
        right = sum(r["verdict"] == kind for r in mine)
        lates = [r["late_ms"] for r in mine if r["late_ms"] is not None]
        print(f"{kind:16}: {right}/{len(mine)} right; verdict after the surge began: "
              f"median {statistics.median(lates):.0f} ms, max {max(lates):.0f} ms")
    with open(os.path.join(ROOT, "bench/surge-results.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
