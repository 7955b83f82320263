#!/usr/bin/env bash
# Egress figures beyond ../shared/bench/egress-anchor.sh (issue 5 asks for them): TLS
# interception handshakes/s and keep-alive requests/s, and memory per idle CONNECT tunnel.
# Everything on 127.0.0.1: nginx serves hub.test over TLS (a certificate from a throw-away
# CA) and plain HTTP for the tunnels; the gateway intercepts hub.test (its rule allows GET
# only) with a second throw-away CA and verifies nginx against the first.
# Needs nginx, openssl, python3.   bash bench/egress-extra.sh [PALISADE_BIN]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$(readlink -f "${1:-$here/target/release/palisade}")
d=$(mktemp -d /tmp/palisade-egress-extra.XXXXXX)
TLS_PORT=${TLS_PORT:-18443}; PLAIN_PORT=${PLAIN_PORT:-18081}; PROXY_PORT=${PROXY_PORT:-13140}
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$d"; }
trap cleanup EXIT
"$bin" ca init --out "$d/gwca" >/dev/null
"$bin" ca init --out "$d/upca" --name "bench upstream CA" >/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=hub.test \
  -keyout "$d/hub.key" -out "$d/hub.csr" 2>/dev/null
printf 'subjectAltName=DNS:hub.test\n' > "$d/ext"
openssl x509 -req -in "$d/hub.csr" -CA "$d/upca/ca.crt" -CAkey "$d/upca/ca.key" -CAcreateserial \
  -days 2 -extfile "$d/ext" -out "$d/hub.crt" 2>/dev/null
cat > "$d/nginx.conf" <<NG
worker_processes 1; daemon off; pid $d/nginx.pid; error_log $d/nginx.err;
events { worker_connections 4096; }
http {
  access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$TLS_PORT ssl; server_name hub.test;
           ssl_certificate $d/hub.crt; ssl_certificate_key $d/hub.key;
           location / { return 200 "hello"; } }
  server { listen 127.0.0.1:$PLAIN_PORT; location / { return 200 "hello"; } }
}
NG
nginx -c "$d/nginx.conf" & pids+=($!)
mkdir -p "$d/m"
cat > "$d/m/policy.yaml" <<YAML
apiVersion: v1
kind: Pod
metadata: {name: loadgen, namespace: bench, labels: {app: loadgen}}
spec: {containers: [{name: c}]}
status: {podIP: 127.0.0.1}
---
apiVersion: palisade.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: hub, namespace: bench}
spec:
  podSelector: {matchLabels: {app: loadgen}}
  egress:
  - to: [{fqdn: hub.test}]
    http: [{methods: [GET]}]
  - to: [{fqdn: allowed.test}]
YAML
cat > "$d/palisade.yaml" <<YAML
apiVersion: palisade.dev/v1alpha1
kind: PalisadeConfig
metadata: {name: egress-extra}
spec:
  manifests: m
  dataDir: data
  ca: {certFile: gwca/ca.crt, keyFile: gwca/ca.key}
  egress:
    listen: 127.0.0.1:$PROXY_PORT
    hosts: {hub.test: 127.0.0.1, allowed.test: 127.0.0.1}
    upstreamCAFile: upca/ca.crt
YAML
RUST_LOG=warn "$bin" egress --config "$d/palisade.yaml" & gw=$!; pids+=($gw)
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$PROXY_PORT) 2>/dev/null && break; sleep 0.1; done
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$TLS_PORT) 2>/dev/null && break; sleep 0.1; done
curl -s -o /dev/null -w 'check GET %{http_code}\n' -x "http://127.0.0.1:$PROXY_PORT" --cacert "$d/gwca/ca.crt" "https://hub.test:$TLS_PORT/"
curl -s -o /dev/null -w 'check POST %{http_code}\n' -d x -x "http://127.0.0.1:$PROXY_PORT" --cacert "$d/gwca/ca.crt" "https://hub.test:$TLS_PORT/"
ulimit -n 65536 2>/dev/null || true
python3 "$here/bench/egress_extra.py" --proxy "127.0.0.1:$PROXY_PORT" --cafile "$d/gwca/ca.crt" \
  --tls-target "hub.test:$TLS_PORT" --tunnel-target "allowed.test:$PLAIN_PORT" --pid "$gw" \
  --threads "${THREADS:-8}" --seconds "${SECONDS_PER_RUN:-8}" --idle "${IDLE_TUNNELS:-1000}"
