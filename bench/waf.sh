#!/usr/bin/env bash
# PALISADE_WAF_CMD for ../shared/bench/waf-anchor.sh (contract in ../shared/bench/README.md):
# the ingress gateway as a reverse proxy on $PALISADE_LISTEN to $PALISADE_UPSTREAM_URL, running
# Debian's modsecurity-crs (CRS 3.3.x) at paranoia level 1 in blocking mode (anomaly threshold
# 5). No authentication, limits or AI features; every JSON field goes to the rules
# (inspectPrompts: true), as ModSecurity sees them.
#
#   PALISADE_WAF_CMD="bash $(pwd)/bench/waf.sh" bash ../shared/bench/waf-anchor.sh
#
# PALISADE_WAF=off: the same proxy without the WAF (the plain reverse-proxy figure).
# PALISADE_BIN: the binary (default target/release/palisade next to this script); may carry a
# wrapper, e.g. "valgrind --tool=callgrind target/release/palisade", for profiling.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="${PALISADE_BIN:-$root/target/release/palisade}"
run="${PALISADE_BENCH_RUN_DIR:-$(mktemp -d)}"
mkdir -p "$run"
listen="${PALISADE_LISTEN:?set PALISADE_LISTEN}"
upstream="${PALISADE_UPSTREAM_URL:-http://${PALISADE_UPSTREAM:?set PALISADE_UPSTREAM}}"
rules="${PALISADE_CRS_RULES:-/usr/share/modsecurity-crs/rules}"
setup="${PALISADE_CRS_SETUP:-/etc/modsecurity/crs/crs-setup.conf}"
waf_block=""
if [ "${PALISADE_WAF:-on}" != off ]; then
  waf_block="      waf:
        rules: $rules
        setup: $setup
        paranoiaLevel: 1
        anomalyThreshold: 5
        inspectPrompts: true"
fi
cat > "$run/ingress-bench.yaml" <<YAML
apiVersion: palisade.dev/v1alpha1
kind: AIGateway
metadata:
  name: bench
spec:
  routes:
    - name: all
      pathPrefix: /
      backend: $upstream
$waf_block
YAML
export RUST_LOG="${RUST_LOG:-warn}"
exec $bin ingress --config "$run/ingress-bench.yaml" --listen "$listen"
