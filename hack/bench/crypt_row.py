"""crypt over S3 for `make bench` (imported by run.py): the main dataset uploaded and
downloaded by scribe-mover through a `type = crypt` section wrapping the garage
section, next to scribe-mover on the plain section and rclone --checksum through
the same crypt section, interleaved, BENCH_CRYPT_RUNS times (default BENCH_RUNS;
0 skips the section). Each upload goes into a fresh prefix, each download into an
empty dir checked with diff -r. Goal: crypt within 1.2 × plain S3.
"""

import os
import shutil
import statistics
import subprocess

CRYPT_SECTION = "bench-crypt"


def add_section(r):
    """Appends the crypt section (obscured password, as rclone stores it)."""
    env = dict(os.environ)
    env.pop("AWS_CA_BUNDLE", None)
    obscure = lambda p: subprocess.run(  # noqa: E731
        ["rclone", "obscure", p], capture_output=True, text=True, check=True, env=env
    ).stdout.strip()
    with open(r.RCLONE_CONF, "a") as f:
        f.write(
            f"\n[{CRYPT_SECTION}]\ntype = crypt\nremote = {r.SECTION}:{r.BUCKET}/crypt\n"
            f"password = {obscure('bench-password')}\npassword2 = {obscure('bench-salt')}\n"
            "filename_encryption = standard\ndirectory_name_encryption = true\n"
        )


def tools(r):
    class ScribeCrypt(r.Scribe):
        def command(self, direction, local, prefix):
            return [
                r.MOVER, "source" if direction == "up" else "destination",
                "--config", r.RCLONE_CONF, "--section", CRYPT_SECTION,
                "--remote-path", prefix, "--mount-path", local,
            ]

    class RcloneCrypt(r.Rclone):
        def command(self, direction, local, prefix):
            remote = f"{CRYPT_SECTION}:{prefix}"
            src, dst = (local, remote) if direction == "up" else (remote, local)
            return ["rclone", "--config", r.RCLONE_CONF, "sync", src, dst,
                    "--transfers", "16", *self.extra]

    return [
        r.Scribe("scribe_plain", "scribe-mover, plain s3"),
        ScribeCrypt("scribe_crypt", "scribe-mover, crypt over s3"),
        RcloneCrypt("rclone_crypt", "rclone --checksum, crypt over s3", ["--checksum"]),
    ]


def run(r, pristine):
    runs = int(os.environ.get("BENCH_CRYPT_RUNS", str(r.RUNS)))
    if runs < 1:
        return []
    add_section(r)
    ts = tools(r)
    res = {t.key: {"up": [], "down": []} for t in ts}
    src, dst = os.path.join(r.WORK, "crypt-src"), os.path.join(r.WORK, "crypt-dst")
    for i in range(1, runs + 1):
        for t in ts:
            tag = f"crypt {t.key} run {i}"
            prefix = f"crypt-{t.key}-run{i}"
            for d in (src, dst):
                shutil.rmtree(d, ignore_errors=True)
            subprocess.run(["cp", "-a", pristine, src], check=True)
            os.makedirs(dst)
            res[t.key]["up"].append(r.timed(t, t.command("up", src, prefix), f"{tag} upload"))
            res[t.key]["down"].append(r.timed(t, t.command("down", dst, prefix), f"{tag} download"))
            r.verify(src, dst, tag)
            r.log(f"{tag}: up {res[t.key]['up'][-1][0]:.2f}s, down {res[t.key]['down'][-1][0]:.2f}s")
    for d in (src, dst):
        shutil.rmtree(d, ignore_errors=True)

    med = {k: {d: statistics.median(v[0] for v in res[k][d]) for d in ("up", "down")} for k in res}
    rss = {k: {d: max(v[1] for v in res[k][d]) / 1024 for d in ("up", "down")} for k in res}
    lines = [
        "",
        f"## crypt over S3 (`type = crypt`, standard names), main dataset, median of {runs} run(s)",
        "",
        "| tool | upload s | download s | upload / plain | download / plain | peak RSS MiB up / down |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    plain = med["scribe_plain"]
    for t in ts:
        m = med[t.key]
        lines.append(
            f"| {t.label} | {m['up']:.2f} | {m['down']:.2f} | {m['up'] / plain['up']:.2f}"
            f" | {m['down'] / plain['down']:.2f} | {rss[t.key]['up']:.0f} / {rss[t.key]['down']:.0f} |")
    worst = max(med["scribe_crypt"]["up"] / plain["up"], med["scribe_crypt"]["down"] / plain["down"])
    lines += ["", f"Goal: scribe crypt within 1.2 × plain S3: {worst:.2f} "
              f"({'met' if worst <= 1.2 else 'NOT met'})."]
    return lines
