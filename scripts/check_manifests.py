#!/usr/bin/env python3
"""The Kubernetes manifests in deploy/kubernetes, checked offline:

1. every resource against the Kubernetes API schema, strictly
   (kubernetes-validate --strict, a recent version); kustomization.yaml is
   kustomize's own file, not a resource, and is skipped with that reason;
2. every flashguard container against the binary: its arguments and the
   config files it mounts from the ConfigMap are accepted (`--check-config`,
   with the environment variables it names set), and the ports it declares
   are the ones its config listens on.

usage: scripts/check_manifests.py FLASHGUARD_BINARY [MANIFESTS_DIR]
"""
import os, re, subprocess, sys, tempfile, tomllib

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIR = os.path.join(ROOT, "deploy/kubernetes")
KUBERNETES = "1.33.0"
# What each environment variable stands for when the configuration is checked.
SAMPLE_ENV = {
    "DATABASE_URL": "postgres://flashguard:secret@postgres.example.internal:5432/flashguard",
    "FLASHGUARD_ADMIN_TOKEN": "check-token",
    "FLASHGUARD_ROOM_KEY": "a-room-key-for-the-manifest-check",
}


def main():
    binary = sys.argv[1]
    folder = sys.argv[2] if len(sys.argv) > 2 else DIR
    failures = []
    files = sorted(f for f in os.listdir(folder) if f.endswith(".yaml"))
    resources = []
    for name in files:
        path = os.path.join(folder, name)
        if name == "kustomization.yaml":
            print(f"skipped {name}: kustomize's own file, not a Kubernetes resource")
            continue
        run = subprocess.run(["kubernetes-validate", "--strict", "--quiet", "-k", KUBERNETES, path],
                             capture_output=True, text=True)
        if run.returncode != 0:
            failures.append(f"{name}: {run.stdout}{run.stderr}")
        else:
            print(f"valid {name} (Kubernetes {KUBERNETES}, strict)")
        with open(path) as f:
            resources += [d for d in yaml.safe_load_all(f) if d]
    configs = {}
    for r in resources:
        if r["kind"] == "ConfigMap" and r["metadata"]["name"] == "flashguard-config":
            configs = r["data"]
    with tempfile.TemporaryDirectory() as tmp:
        for key, text in configs.items():
            with open(os.path.join(tmp, key), "w") as f:
                f.write(text)
        for r in resources:
            if r["kind"] != "Deployment":
                continue
            for c in r["spec"]["template"]["spec"]["containers"]:
                if c["image"] != "flashguard":
                    continue
                failures += check_container(binary, r["metadata"]["name"], c, configs, tmp)
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)
    print("manifests ok")


def check_container(binary, deployment, container, configs, tmp):
    where = f"deployment/{deployment} container {container['name']}"
    env = {e["name"]: SAMPLE_ENV.get(e["name"], "sample") for e in container.get("env", [])}
    args = [re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), a) for a in container["args"]]
    unresolved = [a for a in args if "$(" in a]
    if unresolved:
        return [f"{where}: {unresolved} name variables the container does not set"]
    args = [a.replace("/etc/flashguard/", tmp + "/") for a in args]
    run = subprocess.run([binary, *args, "--check-config"], capture_output=True, text=True,
                         env=dict(os.environ, **env))
    if run.returncode != 0 or "config ok" not in run.stdout:
        why = (run.stderr.strip().splitlines() or ["no message"])[0]
        return [f"{where}: flashguard {' '.join(args)} --check-config refused it: {why}"]
    # The ports it declares are the ones its config listens on.
    part = container["args"][0]
    config = next((a.split("=", 1)[1] for a in container["args"] if a.startswith("--config=")), None)
    if config is None:
        return [f"{where}: no --config"]
    settings = tomllib.loads(configs[os.path.basename(config)])
    listening = {int(settings[k].rsplit(":", 1)[1]) for k in ("listen", "admin_listen") if k in settings}
    declared = {p["containerPort"] for p in container.get("ports", [])}
    if declared != listening:
        return [f"{where}: declares ports {sorted(declared)}, its {part} config listens on {sorted(listening)}"]
    print(f"ok {where}: flags, environment, config and ports accepted by flashguard {part}")
    return []


if __name__ == "__main__":
    main()
