#!/usr/bin/env bash
# Builds the container images localhost/scribe-controller:dev and localhost/scribe-mover:dev.
#
# 1. installs what is missing: the Rust musl target, musl-tools (musl-gcc, for the C in ring and
#    aws-lc-sys), buildah, podman, runc;
# 2. builds static binaries: cargo build --release --target x86_64-unknown-linux-musl;
# 3. stages a build context (binaries, CA bundle, rootfs/tmp) — the layout documented at the top
#    of images/*.Containerfile, so `docker build` works on the same directory;
# 4. buildah --storage-driver vfs bud both images (vfs: no overlay/fuse needed on these machines;
#    podman --storage-driver vfs sees the same images).
#
# Usage: hack/images.sh
# Environment:
#   CARGO_TARGET_DIR   musl build output (default: <repo>/target-musl)
#   IMAGE_TAG          tag of both images (default: dev)
#   SKIP_CARGO=1       reuse binaries already in $CARGO_TARGET_DIR (only restage and rebuild images)
#   SKIP_INSTALL=1     do not apt-get/rustup anything (fail if a tool is missing)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET=x86_64-unknown-linux-musl
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target-musl}"
IMAGE_TAG="${IMAGE_TAG:-dev}"
CONTEXT="$CARGO_TARGET_DIR/image-context"
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO/Cargo.toml" | head -n1)"
REVISION="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"

log() { printf '[images] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Runs a step and reports how long it took (the lead sizes CI from these numbers).
timed() {
    local what="$1"; shift
    local start=$SECONDS
    "$@"
    log "$what took $((SECONDS - start))s"
}

install_tools() {
    if [[ "${SKIP_INSTALL:-0}" == 1 ]]; then
        return
    fi
    if ! rustup target list --installed | grep -qx "$TARGET"; then
        log "adding Rust target $TARGET"
        rustup target add "$TARGET"
    fi
    local missing=()
    command -v musl-gcc >/dev/null || missing+=(musl-tools)
    command -v buildah >/dev/null || missing+=(buildah)
    command -v podman >/dev/null || missing+=(podman)
    command -v runc >/dev/null || missing+=(runc)
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

build_binaries() {
    [[ "${SKIP_CARGO:-0}" == 1 ]] && return
    command -v musl-gcc >/dev/null || die "musl-gcc not found (apt-get install musl-tools)"
    log "cargo build --release --target $TARGET (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    # Why CC_*: ring and aws-lc-sys compile C; the host gcc would link glibc objects into a musl binary.
    CC_x86_64_unknown_linux_musl=musl-gcc \
        cargo build --manifest-path "$REPO/Cargo.toml" --release --target "$TARGET" \
        -p scribe-controller -p scribe-mover
}

# A scratch image has no loader: refuse a dynamically linked binary rather than ship one that
# fails with "no such file or directory" at start.
check_static() {
    local bin="$1"
    [[ -x "$bin" ]] || die "$bin missing: build it first (or unset SKIP_CARGO)"
    if LC_ALL=C readelf -l "$bin" 2>/dev/null | grep -q 'INTERP'; then
        die "$bin is dynamically linked (has a program interpreter)"
    fi
}

stage_context() {
    local out="$CARGO_TARGET_DIR/$TARGET/release"
    check_static "$out/scribe-controller"
    check_static "$out/scribe-mover"
    [[ -f "$CA_BUNDLE" ]] || die "$CA_BUNDLE missing (apt-get install ca-certificates)"
    rm -rf "$CONTEXT"
    mkdir -p "$CONTEXT/rootfs/tmp"
    chmod 1777 "$CONTEXT/rootfs/tmp"
    install -m 0755 "$out/scribe-controller" "$out/scribe-mover" "$CONTEXT/"
    install -m 0644 "$CA_BUNDLE" "$CONTEXT/ca-certificates.crt"
    log "staged build context $CONTEXT"
}

bud() {
    local name="$1"
    buildah --storage-driver vfs bud --quiet \
        --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" \
        -t "localhost/$name:$IMAGE_TAG" -f "$REPO/images/${name#scribe-}.Containerfile" "$CONTEXT" >/dev/null
    log "built localhost/$name:$IMAGE_TAG"
}

main() {
    timed "installing tools" install_tools
    timed "musl build" build_binaries
    stage_context
    timed "buildah bud scribe-controller" bud scribe-controller
    timed "buildah bud scribe-mover" bud scribe-mover
    buildah --storage-driver vfs images --format '{{.Name}}:{{.Tag}} {{.Size}}' | grep 'localhost/scribe-' >&2 || true
}

main "$@"
