#!/usr/bin/env bash
# Side-by-side benchmark, NOT run by CI: action-cache's Redis hits beside its peers, the `cached`
# crate (4.x, AsyncRedisCache) and hitbox (0.2, hitbox-fn + hitbox-redis with the
# BroadcastConcurrencyManager), 10,000 warm keys of a 25-struct value, 256 tokio tasks, each
# against the raw `GET` + decode floor of its own stored bytes. Prints one markdown table.
#
# The bench is its own crate outside the workspace (benches/peers, with its own Cargo.lock), so
# hitbox is compiled only here. It starts its own redis-server on a free port; this installs
# redis-server from Debian's packages when it is missing. Runs for about a minute after the build.
# Usage: scripts/bench-peers.sh
set -euo pipefail
cd "$(dirname "$0")/.."

need_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
    echo "error: need root to run: $*" >&2; exit 1
  fi
}

if ! command -v redis-server >/dev/null 2>&1; then
  echo "==> installing redis-server (the bench starts its own server)"
  need_root apt-get update -q
  need_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server
fi

echo "==> cargo run --release --manifest-path benches/peers/Cargo.toml" >&2
exec cargo run --release --locked --manifest-path benches/peers/Cargo.toml
