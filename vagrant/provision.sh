#!/usr/bin/env bash
# Provisions the xdplb VM as root: a C toolchain and rustup (stable and
# nightly), then the project's own `cargo xtask setup` for everything else.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

if ! command -v cc >/dev/null || ! command -v curl >/dev/null; then
  apt-get update -q
  apt-get install -y -q --no-install-recommends build-essential curl ca-certificates git pkg-config
fi

if ! command -v rustup >/dev/null && [ ! -x "$HOME/.cargo/bin/rustup" ]; then
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain stable
fi
export PATH="$HOME/.cargo/bin:$PATH"
rustup toolchain install stable --profile minimal
rustup toolchain install nightly --profile minimal --component rust-src

cd /xdplb
cargo xtask setup
echo "provisioned: run 'sudo -i', then 'cd /xdplb && cargo xtask run'"
