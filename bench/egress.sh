#!/usr/bin/env bash
# PALISADE_EGRESS_CMD for ../shared/bench/egress-anchor.sh (contract in ../shared/bench/README.md):
# an explicit forward proxy on $PALISADE_LISTEN (absolute-form HTTP and CONNECT) that lets
# through only the domains in $PALISADE_ALLOW_DOMAINS / $PALISADE_ALLOWLIST_FILE and answers
# 403 for any other, names resolved from $PALISADE_HOSTS_FILE.
#
# The allow-list is expressed as Palisade policy: the load generator's address (127.0.0.1)
# is a pod, and a SecurityPolicy isolates its egress to those FQDNs. Every request is an
# `http` event, one JSON line each in $PALISADE_BENCH_RUN_DIR/access.jsonl (like squid's
# access log); PALISADE_EGRESS_STORE=true also keeps them in the queryable SQLite store, and
# PALISADE_EGRESS_EVENTS=denied or none records fewer.
#   PALISADE_EGRESS_CMD="bash $PWD/bench/egress.sh" bash ../shared/bench/egress-anchor.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${PALISADE_BIN:-$here/target/release/palisade}
dir=${PALISADE_BENCH_RUN_DIR:-$(mktemp -d)}
mkdir -p "$dir/manifests"
domains=$( { echo "${PALISADE_ALLOW_DOMAINS:-}" | tr ',' '\n'; if [ -n "${PALISADE_ALLOWLIST_FILE:-}" ]; then cat "$PALISADE_ALLOWLIST_FILE"; fi; } | sed 's/#.*//; s/[[:space:]]//g' | { grep -v '^$' || true; } | sort -u)
{
  echo "apiVersion: v1"
  echo "kind: Pod"
  echo "metadata: {name: loadgen, namespace: bench, labels: {app: loadgen}}"
  echo "spec: {containers: [{name: c}]}"
  echo "status: {podIP: 127.0.0.1}"
  echo "---"
  echo "apiVersion: palisade.dev/v1alpha1"
  echo "kind: SecurityPolicy"
  echo "metadata: {name: allow-list, namespace: bench}"
  echo "spec:"
  echo "  podSelector: {matchLabels: {app: loadgen}}"
  echo "  egress:"
  for d in $domains; do
    echo "  - to: [{fqdn: \"$d\"}]"
  done
} > "$dir/manifests/policy.yaml"
hosts_line=""
[ -n "${PALISADE_HOSTS_FILE:-}" ] && hosts_line="hostsFile: \"$PALISADE_HOSTS_FILE\","
cat > "$dir/palisade.yaml" <<YAML
apiVersion: palisade.dev/v1alpha1
kind: PalisadeConfig
metadata: {name: egress-bench}
spec:
  manifests: manifests
  dataDir: data
  egress: {listen: "${PALISADE_LISTEN:-127.0.0.1:13129}", $hosts_line events: "${PALISADE_EGRESS_EVENTS:-all}"}
  events: {jsonl: "$dir/access.jsonl", store: ${PALISADE_EGRESS_STORE:-false}}
YAML
# $bin unquoted: PALISADE_BIN may carry a wrapper (valgrind …) before the binary.
RUST_LOG=${RUST_LOG:-warn} exec $bin egress --config "$dir/palisade.yaml"
