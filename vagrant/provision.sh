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

# `vagrant ssh -c 'cd /xdplb && cargo xtask run'` logs in as the vagrant
# user, but the toolchains are root's and the lab needs root (XDP, network
# namespaces): this `cargo` runs root's, as root, with root's PATH. Root
# itself calls it by absolute path below, so it never recurses.
cat > /usr/local/bin/cargo <<'WRAPPER'
#!/bin/sh
# Written by vagrant/provision.sh: cargo as root, with root's toolchains.
if [ "$(id -u)" = 0 ]; then exec /root/.cargo/bin/cargo "$@"; fi
exec sudo -H env "PATH=/root/.cargo/bin:$PATH" /root/.cargo/bin/cargo "$@"
WRAPPER
chmod 755 /usr/local/bin/cargo

cd /xdplb
"$HOME/.cargo/bin/cargo" xtask setup
echo "provisioned: run 'vagrant ssh -c \"cd /xdplb && cargo xtask run\"' (or sudo -i; cd /xdplb; cargo xtask run)"
