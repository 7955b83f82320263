#!/usr/bin/env bash
# The README's main job: build Palisade and run `palisade up` on the bundled example
# (examples/genai). On a fresh Debian machine it first installs what the build needs that
# Rust alone does not bring: `protoc` for the etcd client (as root, or through sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v protoc >/dev/null 2>&1; then
  as_root=""
  [ "$(id -u)" = 0 ] || as_root=sudo
  echo "== installing protobuf-compiler (the etcd client's build needs protoc)"
  $as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq protobuf-compiler >/dev/null
fi
cargo build --release
exec ./target/release/palisade up --config examples/genai/palisade.yaml "$@"
