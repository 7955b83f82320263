#!/usr/bin/env python3
"""Runs every netpol-dev case through `palisade lab verify` (real nftables in network
namespaces) and compares the kernel's matrix with upstream's expected reachability.
Usage: scripts/lab-conformance.py PALISADE_BIN CASES_ROOT  (root needed)"""
import json, os, subprocess, sys

def main():
    binary, root = sys.argv[1], sys.argv[2]
    cases_dir = os.path.join(root, "cases")
    passed = failed = 0
    for case in sorted(os.listdir(cases_dir)):
        cdir = os.path.join(cases_dir, case)
        exp = json.load(open(os.path.join(cdir, "expected.json")))
        model = os.path.join(cdir, "model.yaml")
        if not os.path.exists(model):
            model = os.path.normpath(os.path.join(cdir, exp["model"]))
        groups = {}
        for p in exp["probes"]:
            groups.setdefault(p["protocol"], set()).add(p["port"])
        ok = True
        for proto, ports in sorted(groups.items()):
            args = [binary, "lab", "verify", model, os.path.join(cdir, "policies.yaml"), "--protocol", proto, "--output", "json"]
            for port in sorted(ports):
                args += ["--port", str(port)]
            out = subprocess.run(args, capture_output=True, text=True)
            try:
                rep = json.loads(out.stdout)
            except Exception:
                print(f"FAIL {case} {proto}: exit {out.returncode}: {out.stderr.strip()[:300]}")
                ok = False
                continue
            got = {(p["port"], p["protocol"]): p["matrix"] for p in rep["probes"]}
            for d in rep["disagreements"]:
                print(f"FAIL {case}: kernel/engine disagree: {d}")
                ok = False
            for p in exp["probes"]:
                if p["protocol"] != proto:
                    continue
                m = got[(p["port"], proto)]
                if exp["format"] == "matrix":
                    for src, row in p["matrix"].items():
                        for dst, want in row.items():
                            if exp.get("ignoreLoopback") and src == dst:
                                continue
                            if m[src][dst] != want:
                                print(f"FAIL {case} {p['port']}/{proto} {src} -> {dst}: upstream {want}, kernel {m[src][dst]}")
                                ok = False
                else:
                    if m[p["from"]][p["to"]] != p["allowed"]:
                        print(f"FAIL {case} {p['port']}/{proto} {p['from']} -> {p['to']}: upstream {p['allowed']}, kernel {m[p['from']][p['to']]}")
                        ok = False
        if ok:
            passed += 1
        else:
            failed += 1
    print(f"lab: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)

main()
