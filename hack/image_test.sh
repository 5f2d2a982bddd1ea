#!/usr/bin/env bash
# Tests the images built by hack/images.sh (localhost/scribe-controller:dev, localhost/scribe-mover:dev)
# by running them with podman, as a kubelet would run them:
#   - image config: non-root user 65532, entrypoint, OCI labels;
#   - controller: --help and --version exit 0 and name scribe-controller;
#   - mover: --help and --version exit 0 and name scribe-mover;
#   - mover round trip through a local S3 server (moto on 127.0.0.1): source sync of a small tree,
#     a second source sync that transfers nothing, destination restore into an empty directory,
#     trees compared (content, type, mode, file mtimes); SCRIBE_SUMMARY on stdout and the same JSON
#     in the termination log;
#   - mover configuration error (unknown rclone.conf section) exits 78.
#
# Usage: hack/image_test.sh            (after hack/images.sh)
# Environment: IMAGE_TAG (default dev), KEEP_TMP=1 keeps the scratch directory for inspection.
# The last line printed is "N passed, N failed"; the exit code is non-zero on any failure.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE_TAG="${IMAGE_TAG:-dev}"
CONTROLLER_IMAGE="localhost/scribe-controller:$IMAGE_TAG"
MOVER_IMAGE="localhost/scribe-mover:$IMAGE_TAG"
BUCKET=scribe-test-bucket
REMOTE_PATH="$BUCKET/roundtrip"
EXIT_CONFIG=78

PASSED=0
FAILED=0
WORK="$(mktemp -d /tmp/scribe-image-test.XXXXXX)"
MOTO_PID=""

# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    if [[ -n "$MOTO_PID" ]]; then
        kill "$MOTO_PID" 2>/dev/null
        wait "$MOTO_PID" 2>/dev/null
    fi
    if [[ "${KEEP_TMP:-0}" == 1 ]]; then
        echo "kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

pass() { PASSED=$((PASSED + 1)); echo "ok   $1"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL $1: $2"; }

finish() {
    echo "$PASSED passed, $FAILED failed"
    ((FAILED == 0))
    exit $?
}

# podman's defaults fail on these machines (crun cannot set rlimits; cgroups are hybrid), see
# shared/reference/containers.md; vfs storage is where hack/images.sh put the images.
cat >"$WORK/containers.conf" <<'EOF'
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
EOF
podman_run() {
    CONTAINERS_CONF="$WORK/containers.conf" \
        podman --storage-driver vfs --runtime runc run --rm --network host "$@"
}
image_inspect() {
    CONTAINERS_CONF="$WORK/containers.conf" podman --storage-driver vfs image inspect --format "$2" "$1"
}

for tool in podman runc curl; do
    command -v "$tool" >/dev/null || { fail "prerequisites" "$tool not found (run hack/images.sh first)"; finish; }
done
for image in "$CONTROLLER_IMAGE" "$MOVER_IMAGE"; do
    if ! image_inspect "$image" '{{.Id}}' >/dev/null 2>&1; then
        fail "prerequisites" "image $image not found (run hack/images.sh first)"
        finish
    fi
done

# ---- image configuration ---------------------------------------------------------------------
check_image_config() {
    local image="$1" binary="$2" user entrypoint labels
    user="$(image_inspect "$image" '{{.Config.User}}')"
    entrypoint="$(image_inspect "$image" '{{json .Config.Entrypoint}}')"
    labels="$(image_inspect "$image" '{{json .Labels}}')"
    if [[ "$user" != "65532:65532" ]]; then
        fail "${binary}_image_runs_as_65532" "user is '$user'"
    else
        pass "${binary}_image_runs_as_65532"
    fi
    if [[ "$entrypoint" != "[\"/usr/local/bin/$binary\"]" ]]; then
        fail "${binary}_image_entrypoint_is_the_binary" "entrypoint is $entrypoint"
    else
        pass "${binary}_image_entrypoint_is_the_binary"
    fi
    local missing=()
    for key in title description source licenses version; do
        grep -q "\"org.opencontainers.image.$key\":\"[^\"]" <<<"$labels" || missing+=("$key")
    done
    if ((${#missing[@]})) || ! grep -q "\"org.opencontainers.image.title\":\"$binary\"" <<<"$labels"; then
        fail "${binary}_image_has_oci_labels" "missing/wrong: ${missing[*]:-title} in $labels"
    else
        pass "${binary}_image_has_oci_labels"
    fi
}
check_image_config "$CONTROLLER_IMAGE" scribe-controller
check_image_config "$MOVER_IMAGE" scribe-mover

# ---- --help / --version --------------------------------------------------------------------
check_cli_flag() {
    local image="$1" binary="$2" flag="$3" out rc
    out="$(podman_run "$image" "$flag" 2>&1)"
    rc=$?
    if ((rc != 0)); then
        fail "${binary}_${flag#--}_exits_0" "exit $rc, output: $(head -c 300 <<<"$out")"
    elif ! grep -q "$binary" <<<"$out"; then
        fail "${binary}_${flag#--}_exits_0" "output does not mention $binary: $(head -c 300 <<<"$out")"
    else
        pass "${binary}_${flag#--}_exits_0"
    fi
}
for flag in --help --version; do
    check_cli_flag "$CONTROLLER_IMAGE" scribe-controller "$flag"
    check_cli_flag "$MOVER_IMAGE" scribe-mover "$flag"
done

# ---- the controller accepts the flags the chart passes ---------------------------------------
# clap validates every argument before it acts on --help, so the chart's rendered args followed by
# --help exit 0 only if each flag exists, takes that value and appears once.
PY="$REPO/.venv/bin/python"
[[ -x "$PY" ]] || PY=python3
chart_args="$("$PY" - "$REPO" 2>"$WORK/chart-args.stderr" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1] + "/hack")
import chart_test as ct
for values in ({}, ct.load_values(ct.ALL_ON)):
    print("\x1f".join(ct.container(ct.render(values))["args"]))
EOF
)"
rc=$?
if ((rc != 0)); then
    fail controller_accepts_the_charts_flags "could not render the chart: $(tail -c 400 "$WORK/chart-args.stderr")"
else
    ok=1
    while IFS=$'\x1f' read -r -a args; do
        if ! out="$(podman_run "$CONTROLLER_IMAGE" "${args[@]}" --help 2>&1)"; then
            fail controller_accepts_the_charts_flags "${args[*]}: $(head -c 400 <<<"$out")"
            ok=0
            break
        fi
    done <<<"$chart_args"
    ((ok)) && pass controller_accepts_the_charts_flags
fi

# ---- mover round trip through moto ---------------------------------------------------------
MOTO="$REPO/.venv/bin/moto_server"
[[ -x "$MOTO" ]] || MOTO="$(command -v moto_server || true)"
if [[ -z "$MOTO" ]]; then
    fail "mover_round_trip" "moto_server not found (pip install 'moto[server]')"
    finish
fi
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
ENDPOINT="http://127.0.0.1:$PORT"
"$MOTO" -H 127.0.0.1 -p "$PORT" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "$ENDPOINT/" 2>/dev/null && break
    sleep 0.2
done
if ! curl -fsS -o /dev/null "$ENDPOINT/"; then
    fail "mover_round_trip" "moto did not start on $ENDPOINT: $(tail -n 5 "$WORK/moto.log")"
    finish
fi
# Signed requests (SigV4, the rclone.conf's keys): objects are private, anonymous GETs get 403.
s3curl() { curl -fsS --aws-sigv4 "aws:amz:us-east-1:s3" --user test:test "$@"; }
# The bucket exists beforehand, as it would for a user (this test is about the image, not bucket creation).
s3curl -X PUT -o /dev/null "$ENDPOINT/$BUCKET"

CONF_DIR="$WORK/conf"
mkdir -p "$CONF_DIR"
printf '[s3]\ntype = s3\nprovider = Other\nendpoint = %s\naccess_key_id = test\nsecret_access_key = test\nregion = us-east-1\n' \
    "$ENDPOINT" >"$CONF_DIR/rclone.conf"

# A small tree with the cases a mirror gets wrong: nesting, an empty file, an empty directory,
# spaces and unicode in names, a non-default mode, a symlink, a file larger than one read buffer.
SRC="$WORK/src"
DST="$WORK/dst"
mkdir -p "$SRC/dir/sub" "$SRC/empty-dir" "$SRC/with space" "$DST"
echo "hello scribe" >"$SRC/hello.txt"
: >"$SRC/empty-file"
printf 'nested\n' >"$SRC/dir/sub/deep.txt"
printf 'grüße\n' >"$SRC/with space/ünïcode.txt"
head -c 3000000 /dev/urandom >"$SRC/dir/random.bin"
printf '#!/bin/sh\necho hi\n' >"$SRC/dir/script.sh"
ln -s ../hello.txt "$SRC/dir/link-to-hello"
touch -h -d '2021-03-04 05:06:07' "$SRC/hello.txt" "$SRC/dir/random.bin"
# The mover runs as 65532: it must read the source and write the destination.
chmod -R a+rX "$SRC"
# Non-default modes that 65532 can still read.
chmod 0705 "$SRC/dir/script.sh"
chmod 0444 "$SRC/hello.txt"
chmod 0705 "$SRC/dir/sub"
chmod 0755 "$WORK"
chown 65532:65532 "$DST"
FILE_COUNT="$(find "$SRC" -type f | wc -l)"

# Runs the mover image on a directory; stdout and the termination log land in $WORK/<name>.*.
run_mover() {
    local name="$1" dir="$2" mode="$3"; shift 3
    : >"$WORK/$name.termlog"
    chmod 0666 "$WORK/$name.termlog"
    podman_run \
        -v "$dir:/data:$mode" \
        -v "$CONF_DIR/rclone.conf:/config/rclone.conf:ro" \
        -v "$WORK/$name.termlog:/dev/termination-log" \
        -e TERMINATION_LOG=/dev/termination-log \
        "$MOVER_IMAGE" "$@" --config /config/rclone.conf --section s3 --remote-path "$REMOTE_PATH" \
        >"$WORK/$name.stdout" 2>"$WORK/$name.stderr"
}

# Prints the value of a numeric/string field of the SCRIBE_SUMMARY line in $WORK/<name>.stdout.
summary_field() {
    python3 - "$WORK/$1.stdout" "$2" <<'EOF'
import json, sys
lines = [l for l in open(sys.argv[1], encoding="utf-8") if l.startswith("SCRIBE_SUMMARY ")]
print(json.loads(lines[-1].split(" ", 1)[1]).get(sys.argv[2], "") if lines else "<no SCRIBE_SUMMARY line>")
EOF
}

# Checks that a run exited as expected and reported the expected result in both places.
check_run() {
    local test="$1" name="$2" want_rc="$3" got_rc="$4" want_result="$5" result termlog_result
    result="$(summary_field "$name" result)"
    termlog_result="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("result",""))' \
        "$WORK/$name.termlog" 2>/dev/null || echo "<termination log not JSON>")"
    if [[ "$got_rc" != "$want_rc" ]]; then
        fail "$test" "exit $got_rc (want $want_rc); stderr: $(tail -c 600 "$WORK/$name.stderr")"
        return 1
    elif [[ "$result" != "$want_result" || "$termlog_result" != "$want_result" ]]; then
        fail "$test" "summary result '$result', termination log result '$termlog_result' (want $want_result)"
        return 1
    fi
    return 0
}

run_mover source1 "$SRC" ro source
rc=$?
if check_run mover_source_sync_uploads_tree source1 0 "$rc" Successful; then
    transferred="$(summary_field source1 filesTransferred)"
    if [[ "$transferred" != "$FILE_COUNT" ]]; then
        fail mover_source_sync_uploads_tree "filesTransferred=$transferred, tree has $FILE_COUNT files"
    elif ! s3curl "$ENDPOINT/$REMOTE_PATH/hello.txt" | cmp -s - "$SRC/hello.txt"; then
        fail mover_source_sync_uploads_tree "object $REMOTE_PATH/hello.txt is not a plain copy of hello.txt"
    else
        pass mover_source_sync_uploads_tree
    fi
fi

run_mover source2 "$SRC" ro source
rc=$?
if check_run mover_second_source_sync_transfers_nothing source2 0 "$rc" Successful; then
    transferred="$(summary_field source2 filesTransferred)"
    if [[ "$transferred" != 0 ]]; then
        fail mover_second_source_sync_transfers_nothing "filesTransferred=$transferred on an unchanged tree"
    else
        pass mover_second_source_sync_transfers_nothing
    fi
fi

run_mover dest1 "$DST" rw destination
rc=$?
if check_run mover_destination_restores_identical_tree dest1 0 "$rc" Successful; then
    # Content and structure (symlinks compared as links, not followed).
    if ! diff_out="$(diff -r --no-dereference "$SRC" "$DST" 2>&1)"; then
        fail mover_destination_restores_identical_tree "trees differ: $(head -c 600 <<<"$diff_out")"
    else
        # Type, mode and size of every entry, mtime of regular files and symlinks (directory mtimes
        # change as entries are written, so they are not compared). Owners are not compared: the
        # mover runs as 65532 and cannot chown, as in a Job without CAP_CHOWN.
        listing() {
            (cd "$1" && find . -mindepth 1 \( -type d -printf '%y %m %s - %p\n' \) -o -printf '%y %m %s %TY%Tm%Td%TH%TM%TS %p\n' |
                sed -E 's/ ([0-9]{14})\.[0-9]+ / \1 /' | sort)
        }
        if ! meta_diff="$(diff <(listing "$SRC") <(listing "$DST"))"; then
            fail mover_destination_restores_identical_tree "metadata differs (< source, > destination): $(head -c 600 <<<"$meta_diff")"
        else
            pass mover_destination_restores_identical_tree
        fi
    fi
fi

# A section the rclone.conf does not have can never succeed: the mover must say so with 78.
podman_run -v "$CONF_DIR/rclone.conf:/config/rclone.conf:ro" "$MOVER_IMAGE" \
    destination --config /config/rclone.conf --section no-such-section --remote-path "$REMOTE_PATH" \
    >"$WORK/badsection.stdout" 2>"$WORK/badsection.stderr"
rc=$?
if [[ "$rc" != "$EXIT_CONFIG" ]]; then
    fail mover_unknown_section_exits_78 "exit $rc; stderr: $(tail -c 400 "$WORK/badsection.stderr")"
elif ! grep -q "no-such-section" "$WORK/badsection.stdout" "$WORK/badsection.stderr"; then
    fail mover_unknown_section_exits_78 "the error does not name the section"
else
    pass mover_unknown_section_exits_78
fi

finish
