#!/usr/bin/env bash
# Data-path cost of Palisade's nftables rules between two pod namespaces, measured in the
# same run: iperf3 throughput and new TCP connections per second, with no table and with
# the agent's ruleset for a 1,000-pod / 500-policy cluster (the two probe pods included,
# allowed by policy). Needs root, iproute2, nftables, iperf3.
#   bench/datapath.sh [PALISADE_BIN]
set -euo pipefail
P=${1:-target/release/palisade}
P=$(readlink -f "$P")
pfx=pdp$$
node=$pfx-node; a=$pfx-a; b=$pfx-b
work=$(mktemp -d)
cleanup() {
  for n in $a $b $node; do
    ip netns pids $n 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns del $n 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
for n in $node $a $b; do ip netns add $n; done
ip netns exec $node sysctl -qw net.ipv4.ip_forward=1
ip -n $node link set lo up
i=0
for pair in "$a 10.200.0.1" "$b 10.200.0.2"; do
  set -- $pair
  ip -n $node link add h$i type veth peer name eth0 netns $1
  ip -n $node link set h$i up
  ip -n $node addr add 169.254.1.1/32 dev h$i
  ip -n $node route add $2/32 dev h$i
  ip -n $1 link set lo up; ip -n $1 link set eth0 up
  ip -n $1 addr add $2/32 dev eth0
  ip -n $1 route add 169.254.1.1 dev eth0 scope link
  ip -n $1 route add default via 169.254.1.1 dev eth0
  i=$((i+1))
done
# Manifests: the two pods, a policy that allows a -> b, plus a large generated cluster.
cat > "$work/pods.yaml" <<YAML
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: bench, labels: {app: client}}
spec: {containers: [{name: c}]}
status: {podIP: 10.200.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: bench, labels: {app: server}}
spec: {containers: [{name: c, ports: [{containerPort: 5201, name: iperf}, {containerPort: 7000, name: cps}]}]}
status: {podIP: 10.200.0.2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: server-from-client, namespace: bench}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{port: iperf}, {port: cps}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-egress, namespace: bench}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress:
  - to: [{podSelector: {matchLabels: {app: server}}}]
YAML
if [ -n "${PALISADE_BENCH_CLUSTER:-}" ]; then cp -r "$PALISADE_BENCH_CLUSTER"/. "$work/"; fi
cat > "$work/config.yaml" <<YAML
apiVersion: palisade.dev/v1alpha1
kind: PalisadeConfig
metadata: {name: bench}
spec: {manifests: ., agent: {allNodes: true}}
YAML
ip netns exec $b iperf3 -s -D -1 >/dev/null 2>&1 || true
ip netns exec $b "$P" lab serve --tcp 7000 >/dev/null 2>&1 &
sleep 0.5
measure() {
  ip netns exec $b pkill -f "iperf3 -s" 2>/dev/null || true
  ip netns exec $b iperf3 -s -D >/dev/null 2>&1; sleep 0.3
  local bps=$(ip netns exec $a iperf3 -c 10.200.0.2 -t 5 -J | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"])')
  local cps=$(ip netns exec $a "$P" lab cps --target 10.200.0.2:7000 --threads 4 --seconds 5)
  echo "$bps $cps"
}
# Rounds alternate no rules / Palisade's rules so that noise from other work on the machine
# falls on both sides; medians of the rounds are compared.
rounds=${PALISADE_BENCH_ROUNDS:-3}
: > "$work/results"
for r in $(seq 1 "$rounds"); do
  ip netns exec $node nft delete table inet palisade 2>/dev/null || true
  read bb bc < <(measure)
  "$P" agent --config "$work/config.yaml" --netns $node --once 2>"$work/agent.log" || { cat "$work/agent.log"; exit 1; }
  read pb pc < <(measure)
  echo "$bb $bc $pb $pc" >> "$work/results"
  echo "round $r: no rules $bb bit/s $bc conn/s; palisade $pb bit/s $pc conn/s" >&2
done
rules=$(ip netns exec $node nft list table inet palisade | grep -c ';\|accept\|drop\|goto\|return' || true)
python3 - "$work/results" "$rules" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
rules = int(sys.argv[2])
bb, bc, pb, pc = (statistics.median(r[i] for r in rows) for i in range(4))
print(f"rounds: {len(rows)} (medians)")
print(f"throughput: no rules {bb/1e9:.2f} Gbit/s, palisade {pb/1e9:.2f} Gbit/s, ratio {pb/bb:.3f}")
print(f"new connections/s: no rules {bc:.0f}, palisade {pc:.0f}, ratio {pc/bc:.3f}")
print("per-round conn/s ratios: " + ", ".join(f"{r[3]/r[1]:.3f}" for r in rows))
print(f"(table lines: {rules})")
PY
