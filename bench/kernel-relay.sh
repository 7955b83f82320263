#!/usr/bin/env bash
# Evaluation of kernel (sockmap / eBPF) relays for CONNECT tunnels against splice(2) and the
# Palisade gateway, on loopback (docs/kernel-relay.md has the results and the reasoning).
#
#   sudo bash bench/kernel-relay.sh            # ROUNDS=3 SECS=5 by default
#
# Starts, on 127.0.0.1 and stopped again by PID at exit:
#   nginx        upstream on $UP_PORT: /big (1 MiB, the anchor's tunnel body), /f64 (64 MB)
#   palisade     bench/egress.sh with $PALISADE_BIN (skipped when the binary is missing)
#   4 proxies    bench/kernel_relay_eval.py --mode splice | skb-egress | msg | msg-skb-ingress
# then per proxy bench/kernel_relay_check.py (bytes intact at full speed and for a slow reader,
# bytes parked in the kernel for a stalled reader, upload + EOF both ways), and ROUNDS
# interleaved throughput rounds (direct, then every proxy) with connect_bench.py from
# ../shared/bench (8 tunnels, SECS s, GET /big): MB/s, ratio to the direct run of the same
# round, and the machine's busy CPU-seconds per GB moved (all processes: on a busy machine the
# absolute figures and the CPU/GB column include foreign load, the ratios hold up better).
# Needs root (bpf, cgroup2 sock_ops), nginx, python3, ss.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
shared=${SHARED_BENCH:-$here/../shared/bench}
[ -d "$shared" ] || shared=/work/shared/bench
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-5}
UP_PORT=${UP_PORT:-18997}
BASE_PORT=${BASE_PORT:-13310}
PALISADE_BIN=${PALISADE_BIN:-$here/target/release/palisade}
MODES=(splice skb-egress msg msg-skb-ingress)
[ "$(id -u)" = 0 ] || { echo "kernel-relay.sh: needs root (bpf, cgroup2 sock_ops)" >&2; exit 2; }
for p in $UP_PORT $(seq $BASE_PORT $((BASE_PORT + ${#MODES[@]}))); do
  if ss -Htln "sport = :$p" | grep -q .; then echo "kernel-relay.sh: port $p is taken" >&2; exit 2; fi
done

dir=$(mktemp -d /tmp/kernel-relay.XXXXXX)
chmod 755 "$dir"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$dir/nginx.pid" ] && kill "$(cat "$dir/nginx.pid")" 2>/dev/null || true
  sleep 0.3
  rm -rf "$dir"
}
trap cleanup EXIT

mkdir -p "$dir/www" "$dir/tmp"
head -c 1048576 /dev/urandom >"$dir/www/big"
head -c 64000000 /dev/urandom >"$dir/www/f64"
cat >"$dir/nginx.conf" <<NG
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_timeout 120s; keepalive_requests 10000000;
  client_body_temp_path $dir/tmp/b; proxy_temp_path $dir/tmp/p; fastcgi_temp_path $dir/tmp/f;
  uwsgi_temp_path $dir/tmp/u; scgi_temp_path $dir/tmp/s;
  server {
    listen 127.0.0.1:$UP_PORT backlog=4096;
    root $dir/www; default_type application/octet-stream;
  }
}
NG
nginx -c "$dir/nginx.conf" -p "$dir" -g 'daemon on;'
echo "127.0.0.1 allowed.test" >"$dir/hosts"

targets=()
port=$BASE_PORT
if [ -x "$PALISADE_BIN" ]; then
  mkdir -p "$dir/palisade"
  PALISADE_BIN=$PALISADE_BIN PALISADE_ALLOW_DOMAINS=allowed.test PALISADE_HOSTS_FILE="$dir/hosts" \
    PALISADE_LISTEN=127.0.0.1:$port PALISADE_BENCH_RUN_DIR="$dir/palisade" \
    bash "$here/bench/egress.sh" >"$dir/palisade.log" 2>&1 &
  pids+=($!)
  targets+=("palisade:$port")
else
  echo "# $PALISADE_BIN missing: Palisade not measured" >&2
fi
for m in "${MODES[@]}"; do
  port=$((port + 1))
  python3 "$here/bench/kernel_relay_eval.py" --listen $port --mode "$m" --hosts "$dir/hosts" \
    2>"$dir/$m.log" &
  pids+=($!)
  targets+=("$m:$port")
done
sleep 2

echo "## kernel $(uname -r), $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "## correctness (f64 = 64 MB)"
f64_sha=$(sha256sum "$dir/www/f64" | cut -d' ' -f1)
for t in "${targets[@]}"; do
  echo "### ${t%%:*}"
  python3 "$here/bench/kernel_relay_check.py" --proxy "127.0.0.1:${t#*:}" --target "allowed.test:$UP_PORT" \
    --path /f64 --sha256 "$f64_sha" --length 64000000 2>&1 | sed 's/^/    /' || echo "    FAILED"
done

hz=$(getconf CLK_TCK)
run() {
  local s0 s1 out mb by
  s0=$(awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat)
  out=$(timeout $((SECS + 30)) python3 "$shared/tools/connect_bench.py" "$@" --conns 8 --seconds "$SECS" 2>&1 | head -3 | tr '\n' ' ') || true
  s1=$(awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat)
  mb=$(sed -n 's/.*mbps=\([0-9.]*\).*/\1/p' <<<"$out")
  by=$(sed -n 's/.*bytes=\([0-9]*\).*/\1/p' <<<"$out")
  echo "${mb:-0} $(awk -v t=$((s1 - s0)) -v hz="$hz" -v b="${by:-0}" 'BEGIN{if (b > 0) printf "%.3f", t/hz/(b/1e9); else print "-"}') $(grep -o 'errors=[0-9]*' <<<"$out" || echo errors=?)"
}
[ "$ROUNDS" -gt 0 ] || exit 0
echo "## throughput: 8 tunnels x GET /big, ${SECS}s runs, $ROUNDS interleaved rounds"
printf '%-16s %10s %7s %14s %s\n' target MB/s ratio core-s/GB errors
for ((r = 1; r <= ROUNDS; r++)); do
  read -r d dc de < <(run --target "127.0.0.1:$UP_PORT")
  printf '%-16s %10s %7s %14s %s\n' direct "$d" - "$dc" "$de"
  for t in "${targets[@]}"; do
    read -r p pc pe < <(run --proxy "127.0.0.1:${t#*:}" --target "allowed.test:$UP_PORT")
    printf '%-16s %10s %7s %14s %s\n' "${t%%:*}" "$p" "$(awk -v a="$p" -v b="$d" 'BEGIN{if (b > 0) printf "%.2f", a/b}')" "$pc" "$pe"
  done
done
