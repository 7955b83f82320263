#!/usr/bin/env python3
"""Runs every case of a netpol-dev style corpus through `palisade analyze --output json`
and compares the matrices with the expected ones. Usage:
  scripts/netpol-conformance.py PALISADE_BIN CASES_ROOT
Prints one line per failing probe and a closing 'N passed, N failed' line; exit 1 on failure."""
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
            groups.setdefault((p["port"], p["protocol"]), []).append(p)
        ok = True
        for (port, proto), probes in sorted(groups.items()):
            out = subprocess.run([binary, "analyze", model, os.path.join(cdir, "policies.yaml"),
                                  "--port", str(port), "--protocol", proto, "--output", "json"],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                print(f"FAIL {case} {port}/{proto}: exit {out.returncode}: {out.stderr.strip()}")
                ok = False
                continue
            got = json.loads(out.stdout)["probes"][0]["matrix"]
            for p in probes:
                if exp["format"] == "matrix":
                    for src, row in p["matrix"].items():
                        for dst, want in row.items():
                            if exp.get("ignoreLoopback") and src == dst:
                                continue
                            if got[src][dst] != want:
                                print(f"FAIL {case} {port}/{proto} {src} -> {dst}: want {want} got {got[src][dst]}")
                                ok = False
                else:
                    g = got[p["from"]][p["to"]]
                    if g != p["allowed"]:
                        print(f"FAIL {case} {port}/{proto} {p['from']} -> {p['to']}: want {p['allowed']} got {g}")
                        ok = False
        if ok:
            passed += 1
        else:
            failed += 1
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)

main()
