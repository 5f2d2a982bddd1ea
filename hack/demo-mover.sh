#!/usr/bin/env bash
# Demo of the Scribe mover without any server: a `type = local` rclone.conf remote.
# Builds scribe-mover (release), makes a sample tree, syncs it to the remote
# (source), restores it into another directory (destination) and checks the two
# trees are identical (types, modes, owners, sizes, mtimes, link targets, link
# counts, SHA-256 of every file); then changes the tree, syncs incrementally,
# restores again and checks again. Prints each run's SCRIBE_SUMMARY line.
#
# Set SCRIBE_MOVER_BIN to use an already built binary instead of building.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${SCRIBE_MOVER_BIN:-}" ]]; then
  bin="$SCRIBE_MOVER_BIN"
else
  echo "==> building scribe-mover (release)"
  (cd "$repo" && cargo build --release -p scribe-mover)
  target_dir="${CARGO_TARGET_DIR:-$repo/target}"
  case "$target_dir" in /*) ;; *) target_dir="$repo/$target_dir" ;; esac
  bin="$target_dir/release/scribe-mover"
fi
[[ -x "$bin" ]] || { echo "scribe-mover binary not found at $bin" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/scribe-demo.XXXXXX")"
trap 'rm -rf "$work"' EXIT
src="$work/source" dst="$work/restored" remote="$work/remote"
mkdir -p "$src" "$dst"

cat >"$work/rclone.conf" <<CONF
[demo]
type = local
CONF

echo "==> generating a sample tree in $src"
mkdir -p "$src/docs/nested/deeper" "$src/empty-dir" "$src/bin" "$src/unicodé dir"
printf 'hello scribe\n' >"$src/docs/readme.txt"
printf 'nested file\n' >"$src/docs/nested/deeper/file.txt"
head -c $((3 * 1024 * 1024)) /dev/urandom >"$src/docs/random.bin"
: >"$src/docs/empty-file"
printf '#!/bin/sh\necho hi\n' >"$src/bin/tool.sh"
chmod 0755 "$src/bin/tool.sh"
printf 'secret\n' >"$src/docs/private"
chmod 0600 "$src/docs/private"
printf 'ünïcödé\n' >"$src/unicodé dir/naïve file.txt"
ln -s ../docs/readme.txt "$src/bin/readme-link"
ln -s /nonexistent/target "$src/bin/dangling-link"
ln "$src/docs/readme.txt" "$src/docs/readme-hardlink.txt"
for i in $(seq 1 50); do printf 'file %s\n' "$i" >"$src/docs/nested/f$i.txt"; done
touch -d '2020-01-02 03:04:05.123456789' "$src/docs/readme.txt"

# One line per path (type, mode, owner, size, link count, mtime in ns, link target)
# plus the SHA-256 of every file.
listing() {
  (
    cd "$1"
    find . -path ./.scribe-staging -prune -o -printf '%p %y %m %U:%G %s %n %T@ %l\n' | LC_ALL=C sort
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum
  )
}

mover() {
  "$bin" "$@" --config "$work/rclone.conf" --section demo --remote-path "$remote" 2>"$work/last.log" \
    || { echo "scribe-mover $1 failed; its log:" >&2; cat "$work/last.log" >&2; exit 1; }
}

check_same() {
  if diff <(listing "$src") <(listing "$dst") >"$work/diff.txt"; then
    echo "    OK: restored tree is identical ($(listing "$src" | wc -l) lines compared)"
  else
    echo "    MISMATCH between source and restored tree:" >&2
    cat "$work/diff.txt" >&2
    exit 1
  fi
}

echo "==> first sync (source)"
mover source --mount-path "$src"
echo "==> first restore (destination)"
mover destination --mount-path "$dst"
check_same

echo "==> changing the source: edit, add, delete, rename"
printf 'edited\n' >>"$src/docs/nested/deeper/file.txt"
printf 'brand new\n' >"$src/docs/new.txt"
rm "$src/docs/nested/f7.txt"
mv "$src/docs/random.bin" "$src/docs/random-renamed.bin"

echo "==> incremental sync (source)"
mover source --mount-path "$src"
echo "==> incremental restore (destination)"
mover destination --mount-path "$dst"
check_same

echo "==> re-sync with no changes (nothing should transfer)"
mover source --mount-path "$src"
mover destination --mount-path "$dst"
check_same
echo "==> demo passed"
