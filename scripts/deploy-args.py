#!/usr/bin/env python3
"""Every palisade container in rendered manifests starts with arguments the binary accepts.

Usage: deploy-args.py PALISADE_BIN RENDERED.yaml...

For each container whose image is palisade, `$(VAR)` references are replaced by a sample
value and the binary is run with the container's arguments plus `--help`: clap rejects an
unknown flag or a bad value before it reaches `--help`, so exit 0 means the command line
parses. Exits 1 naming every container whose arguments do not.
"""
import re
import subprocess
import sys

import yaml

SAMPLES = {
    "FEDERATION_ENDPOINTS": "etcd://127.0.0.1:2379",
    "FEDERATION_CLUSTER": "cluster-a",
    "NODE_NAME": "node-1",
}


def containers(doc):
    spec = (doc.get("spec") or {}).get("template", {}).get("spec", {})
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        yield c


def main():
    binary, files = sys.argv[1], sys.argv[2:]
    failed, checked = [], 0
    for path in files:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if not doc or doc.get("kind") not in ("Deployment", "DaemonSet", "StatefulSet"):
                    continue
                for c in containers(doc):
                    if not c.get("image", "").split("/")[-1].startswith("palisade"):
                        continue
                    args = [re.sub(r"\$\((\w+)\)", lambda m: SAMPLES.get(m.group(1), "x"), a)
                            for a in c.get("args", [])]
                    where = f"{path}: {doc['kind']} {doc['metadata']['name']} container {c['name']}"
                    r = subprocess.run([binary, *args, "--help"], capture_output=True, text=True)
                    checked += 1
                    if r.returncode != 0:
                        failed.append(f"{where}: {' '.join(args)}\n  {r.stderr.strip()}")
    for f in failed:
        print("FAIL", f)
    print(f"{checked - len(failed)}/{checked} palisade containers' arguments parse")
    sys.exit(1 if failed or checked == 0 else 0)


if __name__ == "__main__":
    main()
