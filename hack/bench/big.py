"""Large files for `make bench` (imported by run.py): BENCH_BIG_GIB files of 1 GiB
each (fresh random content, default 3; 0 skips the section), uploaded and downloaded
by scribe-mover, rclone --checksum and SERVER-LIMIT, BENCH_BIG_RUNS times (default
1), each upload into a fresh prefix and each download into an empty dir, checked
with diff -r. Reports seconds and MiB/s next to the server limit.
"""

import os
import shutil
import statistics

GIB = 1024 ** 3
MIB = 1024 ** 2


def generate(root, n):
    os.makedirs(root, exist_ok=True)
    for j in range(n):
        with open(os.path.join(root, f"big{j}.bin"), "wb") as f:
            for _ in range(GIB // (8 * MIB)):
                f.write(os.urandom(8 * MIB))


def run(r):
    n, runs = r.BIG_GIB, r.BIG_RUNS
    root = os.path.join(r.WORK, "big")
    dst = os.path.join(r.WORK, "big-dst")
    r.log(f"large files: generating {n} x 1 GiB")
    generate(root, n)
    r.timed(r.LIMIT_TOOL, r.LIMIT_TOOL.command("up", root, "big-warmup"), "big warm-up upload")
    scribe = r.TOOLS[0]
    kept = len(scribe.transferred)
    tools = [scribe, r.TOOLS[2], r.LIMIT_TOOL]
    res = {t.key: {"up": [], "down": []} for t in tools}
    for i in range(1, runs + 1):
        for t in tools:
            tag = f"big {t.key} run {i}"
            prefix = f"big-{t.key}-run{i}"
            res[t.key]["up"].append(r.timed(t, t.command("up", root, prefix), f"{tag} upload"))
            shutil.rmtree(dst, ignore_errors=True)
            os.makedirs(dst)
            res[t.key]["down"].append(r.timed(t, t.command("down", dst, prefix), f"{tag} download"))
            r.verify(root, dst, tag)
            shutil.rmtree(dst)
            r.log(f"{tag}: up {res[t.key]['up'][-1][0]:.2f}s, down {res[t.key]['down'][-1][0]:.2f}s")
    del scribe.transferred[kept:]
    shutil.rmtree(root)
    total = n * GIB / MIB

    def cell(runs_):
        secs = statistics.median(v[0] for v in runs_)
        return secs, total / secs, max(v[1] for v in runs_) / 1024

    lines = [
        "",
        f"## Large files: {n} × 1 GiB (random content), median of {runs} run(s)",
        "",
        "| tool | upload s | upload MiB/s | download s | download MiB/s | peak RSS MiB up / down |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    cells = {}
    for t in tools:
        up, down = cell(res[t.key]["up"]), cell(res[t.key]["down"])
        cells[t.key] = (up, down)
        lines.append(f"| {t.label} | {up[0]:.2f} | {up[1]:.0f} | {down[0]:.2f} | {down[1]:.0f}"
                     f" | {up[2]:.0f} / {down[2]:.0f} |")
    (su, sd), (lu, ld) = cells["scribe"], cells["limit"]
    lines += ["", f"scribe-mover / SERVER-LIMIT time: upload {su[0] / lu[0]:.2f}, "
                  f"download {sd[0] / ld[0]:.2f}"]
    return lines
