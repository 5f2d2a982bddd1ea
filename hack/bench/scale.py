"""Memory by file count for `make bench` (imported by run.py): for each count in
BENCH_SCALE_FILES (comma-separated, default 20000; e.g. 200000,1000000; 0 skips the
section) a tree of tiny files (0-100 bytes, 1,000 per directory) is synced by
scribe-mover through the source scenarios — first sync, `--checksum` sync, half of
the files changed — and the destination's — restore into an empty dir, restore
again with nothing changed, and (after half of the files changed once more on the
source) restore over the previous copy, checked with diff -r — and each one's peak
RSS (GNU time %M) and wall seconds are reported. The goal: peak RSS at most
128 MiB whatever the count. BENCH_SCALE_REMOTE=local syncs to a `type = local`
remote (a directory under the bench's temp dir) instead of garage: memory does
not depend on the backend, and a million tiny objects take hours on garage here.
"""

import os
import random
import shutil
import time

PER_DIR = 1000
BUDGET_MIB = 128
FIXED_MTIME = 1_700_000_000


def rel(i):
    return os.path.join(f"d{i // PER_DIR:05}", f"f{i % PER_DIR:04}")


def generate(root, n, rng):
    for d in range((n + PER_DIR - 1) // PER_DIR):
        os.makedirs(os.path.join(root, f"d{d:05}"))
    for i in range(n):
        path = os.path.join(root, rel(i))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, rng.randbytes(rng.randint(0, 100)))
        os.close(fd)
        os.utime(path, (FIXED_MTIME, FIXED_MTIME))


def change_half(root, n, rng):
    for i in range(0, n, 2):
        with open(os.path.join(root, rel(i)), "wb") as f:
            f.write(b"changed " + rng.randbytes(rng.randint(1, 92)))


LOCAL_SECTION = "scale-local"


def local_remote(r, cmd, prefix):
    """`cmd` (a scribe-mover command on the garage section) on the local section."""
    out = list(cmd)
    out[out.index("--section") + 1] = LOCAL_SECTION
    out[out.index("--remote-path") + 1] = os.path.join(r.WORK, "scale-remote", prefix)
    return out


def run(r):
    scribe = r.TOOLS[0]
    kept = len(scribe.transferred)
    local = os.environ.get("BENCH_SCALE_REMOTE", "garage") == "local"
    if local:
        with open(r.RCLONE_CONF, "a") as f:
            f.write(f"\n[{LOCAL_SECTION}]\ntype = local\n")
    where = "a `type = local` remote" if local else "garage"
    lines = [
        "",
        f"## Memory by file count (tiny files of 0–100 bytes, to {where}; goal: peak RSS ≤ {BUDGET_MIB} MiB)",
        "",
        "| files | scenario | peak RSS MiB | seconds | files transferred |",
        "| ---: | --- | ---: | ---: | ---: |",
    ]
    for n in r.SCALE_FILES:
        rng = random.Random(n)
        src = os.path.join(r.WORK, "scale-src")
        dst = os.path.join(r.WORK, "scale-dst")
        t0 = time.monotonic()
        generate(src, n, rng)
        r.log(f"scale: {n} files generated in {time.monotonic() - t0:.0f} s")
        time.sleep(2.5)  # racy-stat window, see the main table's notes
        prefix = f"scale-{n}"
        up = scribe.command("up", src, prefix)
        down = scribe.command("down", dst, prefix)
        steps = [("first sync", up, None), ("--checksum sync", up + ["--checksum"], None),
                 ("half of the files changed", up, lambda: change_half(src, n, rng)),
                 ("restore into an empty dir", down, lambda: os.makedirs(dst)),
                 ("restore again, nothing changed", down, None),
                 ("half changed again (source)", up, lambda: change_half(src, n, rng)),
                 ("restore over the previous copy", down, None)]
        for label, cmd, before in steps:
            if local:
                cmd = local_remote(r, cmd, prefix)
            if before:
                before()
            secs, rss = r.timed(scribe, cmd, f"scale {n} {label}")
            moved = scribe.transferred[-1]
            mib = rss / 1024
            flag = "" if mib <= BUDGET_MIB else " (over)"
            lines.append(f"| {n:,} | {label} | {mib:.0f}{flag} | {secs:.1f} | {moved:,} |")
            r.log(f"scale {n} {label}: {secs:.1f}s, {mib:.0f} MiB")
        r.verify(src, dst, f"scale {n} restore")
        shutil.rmtree(src)
        shutil.rmtree(dst)
        shutil.rmtree(os.path.join(r.WORK, "scale-remote"), ignore_errors=True)
    del scribe.transferred[kept:]
    return lines
