#!/usr/bin/env bash
# `make bench`: Scribe's mover against rclone on a local garage S3 server.
# NOT part of `make test` (timings on a shared machine are noisy).
#
# 1. installs the tools it needs when missing (garage via cargo into .tools/garage,
#    rclone and GNU time via apt-get), builds scribe-mover in release;
# 2. starts a single-node garage on 127.0.0.1 (fresh temp dirs, free ports),
#    stopped on exit;
# 3. hack/bench/run.py generates a deterministic dataset, runs every scenario
#    (first upload, no-change re-sync, 1 % changed, download into an empty dir)
#    BENCH_RUNS times per tool, next to SERVER-LIMIT (bare concurrent PUT/GET of the
#    same files, crates/mover/examples/server_limit.rs), checks each download with
#    diff -r; then large files (hack/bench/big.py) and peak RSS by file count
#    (hack/bench/scale.py); prints the markdown tables, also written to bench/results.md.
#
# Env: BENCH_SMALL=1 (500 files + 1 x 16 MiB instead of 5,000 + 4 x 64 MiB; no large
#      files; 2,000 files in the scale section),
#      BENCH_RUNS=N (default 3), BENCH_RESULTS=PATH (default bench/results.md),
#      BENCH_BIG_GIB=N (default 3 files of 1 GiB; 0 skips), BENCH_BIG_RUNS=N (default 1),
#      BENCH_SCALE_FILES=N[,N...] (default 20000; e.g. 200000,1000000; 0 skips),
#      BENCH_SCALE_REMOTE=local (the scale section syncs to a `type = local` remote),
#      BENCH_LIMIT_CONCURRENCY=N (SERVER-LIMIT requests at once, default 32),
#      SCRIBE_MOVER_BIN=PATH (skip the release build), SERVER_LIMIT_BIN=PATH (same for
#      the server_limit example), GARAGE_BIN=PATH,
#      BENCH_TMP=DIR (parent of the temp dir; default $TMPDIR or /tmp),
#      BENCH_LOG_DIR=DIR (keep the output of every timed command there).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

# --- tools -----------------------------------------------------------------
if ! command -v rclone >/dev/null || [[ ! -x /usr/bin/time ]]; then
  log "installing rclone and GNU time (apt-get)"
  as_root apt-get update -qq
  as_root apt-get install -y -qq rclone time >/dev/null
fi

garage="${GARAGE_BIN:-$repo/.tools/garage/bin/garage}"
if [[ ! -x "$garage" ]]; then
  log "installing garage into $repo/.tools/garage (cargo install, ~8+ minutes once)"
  cargo install garage --locked --root "$repo/.tools/garage"
fi

if [[ -n "${SCRIBE_MOVER_BIN:-}" ]]; then
  mover="$SCRIBE_MOVER_BIN"
else
  log "building scribe-mover (release)"
  # The bench always uses the default target dir so `make bench` reuses one build.
  (cd "$repo" && env -u CARGO_TARGET_DIR cargo build --release -q -p scribe-mover)
  mover="$repo/target/release/scribe-mover"
fi
[[ -x "$mover" ]] || die "scribe-mover binary not found at $mover"
if [[ -n "${SERVER_LIMIT_BIN:-}" ]]; then
  limit="$SERVER_LIMIT_BIN"
else
  log "building the server_limit example (release)"
  (cd "$repo" && env -u CARGO_TARGET_DIR cargo build --release -q -p scribe-mover --example server_limit)
  limit="$repo/target/release/examples/server_limit"
fi
[[ -x "$limit" ]] || die "server_limit binary not found at $limit"

# --- garage ------------------------------------------------------------------
work="$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/scribe-bench.XXXXXX")"
garage_pid=""
cleanup() {
  if [[ -n "$garage_pid" ]]; then
    kill "$garage_pid" 2>/dev/null || true
    wait "$garage_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
hex() { python3 -c "import secrets; print(secrets.token_hex($1))"; }

rpc_port=$(free_port); s3_port=$(free_port); admin_port=$(free_port)
while [[ $s3_port == "$rpc_port" ]]; do s3_port=$(free_port); done
while [[ $admin_port == "$rpc_port" || $admin_port == "$s3_port" ]]; do admin_port=$(free_port); done
mkdir -p "$work/garage/meta" "$work/garage/data"
gconf="$work/garage/garage.toml"
cat >"$gconf" <<CONF
metadata_dir = "$work/garage/meta"
data_dir = "$work/garage/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(hex 32)"

[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin_port"
admin_token = "$(hex 32)"
CONF
chmod 600 "$gconf"

log "starting garage ($("$garage" --version 2>/dev/null | head -1)) on 127.0.0.1:$s3_port"
RUST_LOG=warn "$garage" -c "$gconf" server >"$work/garage/server.log" 2>&1 &
garage_pid=$!
for _ in $(seq 1 100); do
  "$garage" -c "$gconf" status >/dev/null 2>&1 && break
  kill -0 "$garage_pid" 2>/dev/null || { cat "$work/garage/server.log" >&2; die "garage exited during startup"; }
  sleep 0.2
done
"$garage" -c "$gconf" status >/dev/null 2>&1 || { cat "$work/garage/server.log" >&2; die "garage did not start"; }
node=$("$garage" -c "$gconf" node id -q | cut -d@ -f1)
"$garage" -c "$gconf" layout assign -z dc1 -c 10G "$node" >/dev/null
"$garage" -c "$gconf" layout apply --version 1 >/dev/null
key_id="GK$(hex 12)"; key_secret="$(hex 32)"
"$garage" -c "$gconf" key import --yes -n bench "$key_id" "$key_secret" >/dev/null
"$garage" -c "$gconf" key allow --create-bucket bench >/dev/null

rconf="$work/rclone.conf"
cat >"$rconf" <<CONF
[garage]
type = s3
provider = Other
access_key_id = $key_id
secret_access_key = $key_secret
endpoint = http://127.0.0.1:$s3_port
region = us-east-1
force_path_style = true
CONF

# rclone 1.60 fails on every S3 remote while AWS_CA_BUNDLE is set.
env -u AWS_CA_BUNDLE rclone --config "$rconf" mkdir garage:bench

garage_version=$("$garage" --version 2>/dev/null | head -1)
BENCH_WORK="$work" BENCH_MOVER="$mover" BENCH_RCLONE_CONF="$rconf" BENCH_SECTION=garage \
  BENCH_LIMIT="$limit" BENCH_S3_ENDPOINT="http://127.0.0.1:$s3_port" \
  BENCH_S3_KEY_ID="$key_id" BENCH_S3_SECRET="$key_secret" \
  BENCH_BUCKET=bench BENCH_SERVER="$garage_version (single node, 127.0.0.1, sqlite metadata)" \
  BENCH_RESULTS="${BENCH_RESULTS:-$repo/bench/results.md}" \
  python3 "$repo/hack/bench/run.py" \
  || { echo "bench failed; last lines of the garage log:" >&2; tail -n 30 "$work/garage/server.log" >&2; exit 1; }
