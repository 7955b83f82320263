#!/usr/bin/env bash
# PALISADE_DNS_CMD for ../shared/bench/dns-anchor.sh (contract in ../shared/bench/README.md):
# serve UDP 127.0.0.1:15355, forward to $PALISADE_DNS_UPSTREAM, answer NXDOMAIN for the
# names in $PALISADE_BLOCK_DOMAINS / $PALISADE_BLOCKLIST_FILE and their subdomains, log
# every query (one JSON event per line) to $PALISADE_QUERY_LOG.
#
# PALISADE_DNS_STORE=false logs to the JSON-lines file only (spec.events.store: false), as
# dnsmasq does; the default also keeps every event in the queryable SQLite store.
#
# The one load generator stands for a whole cluster's pods (dnsmasq has no per-client limit),
# so the per-client query rate is set far above the load: the check still runs on every
# query, it never refuses one.
#
# The blocklist is expressed as Palisade policy: the load generator's address is a pod,
# and a security-tier ClusterSecurityPolicy denies egress to those FQDNs.
#   PALISADE_DNS_CMD="bash $PWD/bench/dns.sh" bash ../shared/bench/dns-anchor.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${PALISADE_BIN:-$here/target/release/palisade}
dir=$(mktemp -d)
domains=$( { echo "${PALISADE_BLOCK_DOMAINS:-}" | tr ',' '\n'; if [ -n "${PALISADE_BLOCKLIST_FILE:-}" ]; then cat "$PALISADE_BLOCKLIST_FILE"; fi; } | sed 's/#.*//; s/[[:space:]]//g' | grep -v '^$' | sort -u)
{
  echo "apiVersion: v1"
  echo "kind: Pod"
  echo "metadata: {name: dnsperf, namespace: bench}"
  echo "spec: {containers: [{name: c}]}"
  echo "status: {podIP: 127.0.0.1}"
  echo "---"
  echo "apiVersion: palisade.dev/v1alpha1"
  echo "kind: ClusterSecurityPolicy"
  echo "metadata: {name: blocklist}"
  echo "spec:"
  echo "  tier: security"
  echo "  egress:"
  echo "  - name: blocked-domains"
  echo "    action: Deny"
  echo "    to:"
  for d in $domains; do
    echo "    - fqdn: \"$d\""
    echo "    - fqdn: \"**.$d\""
  done
} > "$dir/policy.yaml"
cat > "$dir/palisade.yaml" <<YAML
apiVersion: palisade.dev/v1alpha1
kind: PalisadeConfig
metadata: {name: dns-bench}
spec:
  manifests: .
  dataDir: $dir/data
  dns: {listen: "127.0.0.1:15355", upstream: "${PALISADE_DNS_UPSTREAM:-127.0.0.1:15353}", refuseWith: NXDOMAIN,
        queriesPerSecondPerClient: 1000000, queryBurstPerClient: 1000000}
  events: {jsonl: "${PALISADE_QUERY_LOG:-$dir/queries.jsonl}", store: ${PALISADE_DNS_STORE:-true}}
YAML
exec "$bin" dns --config "$dir/palisade.yaml" --no-sets
