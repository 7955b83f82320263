#!/usr/bin/env bash
# False-positive rate of the prompt guard on long benign technical documents.
#
#   bash bench/guard-long-docs.sh [--model FILE]
#
# Builds the evaluation sets at run time into a temporary directory (never committed; see
# bench/guard_long_docs.py for the exact selection), all labelled benign, each chunk of at
# most 3,000 characters prefixed with "Please summarise this for me:":
#   repo    every chunk of this repository's docs/*.md and crates/**/*.rs
#           (split: repo-docs, repo-src)
#   system  300 chunks not from this repository: 200 of /usr/share/doc text files and 100
#           of rendered manual pages (split: system-doc, system-man)
# then runs `palisade guard eval` on each and prints the false-positive rate. A set whose
# source is absent is skipped with a message. Uses ./target/release/palisade (build it with
# `cargo build --release -p palisade`) or $PALISADE_BIN; extra arguments go to `guard eval`
# (e.g. --model FILE). Set GUARD_LONG_DOCS_KEEP=DIR to keep the JSONL files in DIR.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bin="${PALISADE_BIN:-$here/target/release/palisade}"
if [[ ! -x "$bin" ]]; then
    echo "no palisade binary at $bin: run cargo build --release -p palisade" >&2
    exit 2
fi
if [[ -n "${GUARD_LONG_DOCS_KEEP:-}" ]]; then
    out="$GUARD_LONG_DOCS_KEEP"
    mkdir -p "$out"
else
    out="$(mktemp -d)"
    trap 'rm -rf "$out"' EXIT
fi
python3 "$here/bench/guard_long_docs.py" "$here" "$out"
printf '%-11s %7s %6s %8s %9s %9s\n' set chunks flagged fp_rate p50_us p99_us
for set in repo repo-docs repo-src system system-doc system-man; do
    f="$out/$set.jsonl"
    [[ -s "$f" ]] || { printf '%-11s skipped (source absent)\n' "$set"; continue; }
    "$bin" guard eval "$f" --output json "$@" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("%-11s %7d %6d %7.1f%% %9.0f %9.0f" % (sys.argv[1], r["prompts"], r["false_positives"],
      100 * r["false_positive_rate"], r["p50_us"], r["p99_us"]))' "$set"
done
