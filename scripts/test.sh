#!/usr/bin/env bash
# Runs every check CI runs, on a fresh Debian machine as on a developer's.
# It installs what the tests need when it is missing (redis-server, rustfmt, clippy), then runs
# the formatter check, clippy with warnings denied, and the whole workspace's tests.
set -euo pipefail
cd "$(dirname "$0")/.."

need_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
    echo "error: need root to run: $*" >&2; exit 1
  fi
}

# Tests start their own redis-server processes (random ports), so only the binaries are needed.
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  echo "==> installing redis-server (tests start their own servers)"
  need_root apt-get update -q
  need_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server redis-tools
fi

if command -v rustup >/dev/null 2>&1; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --all-features -- -D warnings
echo "==> the facade and core build without their optional features"
cargo clippy -p action-cache-core --no-default-features -- -D warnings
cargo clippy -p action-cache --no-default-features --features macros -- -D warnings
cargo clippy -p action-cache --no-default-features --features macros,redis -- -D warnings
echo "==> cargo test --workspace"
cargo test --workspace --all-features
