#!/usr/bin/env python3
"""Benchmark scenarios for `make bench` (called by hack/bench.sh, which starts garage).

Runs scribe-mover, rclone `--transfers 16` and rclone `--transfers 16 --checksum`
against the same S3 server through four scenarios (first upload, no-change re-sync,
1 % of files changed, download into an empty dir), BENCH_RUNS times each, every
tool into a fresh bucket prefix, next to SERVER-LIMIT: a bare concurrent PUT/GET of
the same files (crates/mover/examples/server_limit.rs: no hashing, no metadata, no
manifest), what the server manages on this machine. Each download is compared with
the source tree (diff -r on content) so a fast wrong result cannot win. Then a few
crypt over S3 (see `crypt_row`), multi-GiB files (upload and download, MiB/s; see `big`) and the memory scale
section (peak RSS by file count; see `scale`). Prints markdown tables of medians
(wall seconds, ratios, peak RSS) and writes them to BENCH_RESULTS.
"""

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time

import big
import crypt_row
import scale

SCENARIOS = [
    ("upload", "first upload"),
    ("resync", "no-change re-sync"),
    ("changed", "1 % of files changed"),
    ("download", "download into an empty dir"),
]
KIB = 1024
MIB = 1024 * KIB
FIXED_MTIME = 1_700_000_000  # deterministic dataset: same mtimes on every run


def env(name, default=None):
    value = os.environ.get(name, default)
    if value is None:
        sys.exit(f"bench: environment variable {name} is required (run through hack/bench.sh)")
    return value


WORK = env("BENCH_WORK")
MOVER = env("BENCH_MOVER")
LIMIT = env("BENCH_LIMIT")  # the server_limit example binary
S3_ENDPOINT = env("BENCH_S3_ENDPOINT")
S3_KEY_ID = env("BENCH_S3_KEY_ID")
S3_SECRET = env("BENCH_S3_SECRET")
LIMIT_CONCURRENCY = int(os.environ.get("BENCH_LIMIT_CONCURRENCY", "32"))
RCLONE_CONF = env("BENCH_RCLONE_CONF")
SECTION = env("BENCH_SECTION")
BUCKET = env("BENCH_BUCKET")
SERVER = env("BENCH_SERVER")
RESULTS = env("BENCH_RESULTS")
SMALL = os.environ.get("BENCH_SMALL", "") not in ("", "0", "false")
LOG_DIR = os.environ.get("BENCH_LOG_DIR")  # keep every command's output there
if LOG_DIR:
    os.makedirs(LOG_DIR, exist_ok=True)
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
if RUNS < 1:
    sys.exit("bench: BENCH_RUNS must be >= 1")

BIG_GIB = int(os.environ.get("BENCH_BIG_GIB", "0" if SMALL else "3"))
BIG_RUNS = int(os.environ.get("BENCH_BIG_RUNS", "1"))
SCALE_FILES = [int(n) for n in os.environ.get("BENCH_SCALE_FILES",
                                              "2000" if SMALL else "20000").split(",")
               if int(n) > 0]
N_SMALL, N_LARGE, LARGE_SIZE = (500, 1, 16 * MIB) if SMALL else (5000, 4, 64 * MIB)
N_CHANGED = max(1, N_SMALL // 100)


def log(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


def small_path(i):
    # Nested dirs of varying depth: a/b/ for most files, a/b/c/ for some.
    a, b = i % 10, (i // 10) % 10
    if i % 3 == 0:
        return f"dir{a:02}/sub{b:02}/deep{i % 7}/file{i:05}.bin"
    return f"dir{a:02}/sub{b:02}/file{i:05}.bin"


def generate_dataset(root):
    rng = random.Random(20261126)
    for i in range(N_SMALL):
        path = os.path.join(root, small_path(i))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(rng.randbytes(rng.randint(1 * KIB, 64 * KIB)))
        os.utime(path, (FIXED_MTIME + i, FIXED_MTIME + i))
    os.makedirs(os.path.join(root, "large"), exist_ok=True)
    for j in range(N_LARGE):
        path = os.path.join(root, "large", f"blob{j}.bin")
        with open(path, "wb") as f:
            for _ in range(LARGE_SIZE // MIB):
                f.write(rng.randbytes(MIB))
        os.utime(path, (FIXED_MTIME, FIXED_MTIME))


def change_files(root, seed):
    """Rewrite 1 % of the small files with new content of the same size."""
    rng = random.Random(seed)
    step = N_SMALL // N_CHANGED
    for k in range(N_CHANGED):
        path = os.path.join(root, small_path(k * step + 1))
        size = os.path.getsize(path)
        with open(path, "wb") as f:
            f.write(rng.randbytes(size))


class Tool:
    def __init__(self, key, label):
        self.key, self.label = key, label

    def command(self, direction, local, prefix):
        raise NotImplementedError


class Scribe(Tool):
    def __init__(self, key, label):
        super().__init__(key, label)
        self.transferred = []  # filesTransferred of every run, in order

    def command(self, direction, local, prefix):
        return [
            MOVER, "source" if direction == "up" else "destination",
            "--config", RCLONE_CONF, "--section", SECTION,
            "--remote-path", f"{BUCKET}/{prefix}", "--mount-path", local,
        ]

    def check(self, stdout):
        summary = [line for line in stdout.splitlines() if line.startswith("SCRIBE_SUMMARY ")]
        if not summary:
            return "no SCRIBE_SUMMARY line on stdout"
        try:
            parsed = json.loads(summary[-1].split(" ", 1)[1])
        except ValueError as e:
            return f"SCRIBE_SUMMARY is not JSON ({e}): {summary[-1]}"
        if parsed.get("result") != "Successful":
            return f"SCRIBE_SUMMARY says {summary[-1]}"
        self.transferred.append(parsed.get("filesTransferred"))
        return None


class Rclone(Tool):
    def __init__(self, key, label, extra):
        super().__init__(key, label)
        self.extra = extra

    def command(self, direction, local, prefix):
        remote = f"{SECTION}:{BUCKET}/{prefix}"
        src, dst = (local, remote) if direction == "up" else (remote, local)
        return ["rclone", "--config", RCLONE_CONF, "sync", src, dst,
                "--transfers", "16", *self.extra]

    def check(self, stdout):
        return None


class ServerLimit(Tool):
    """Bare PUT/GET of every file; `get` downloads the list `put` printed."""

    def __init__(self, key, label):
        super().__init__(key, label)
        self.lists = {}  # prefix -> file listing written by put

    def command(self, direction, local, prefix):
        cmd = [LIMIT, "put" if direction == "up" else "get", "--endpoint", S3_ENDPOINT,
               "--bucket", BUCKET, "--prefix", prefix, "--dir", local,
               "--access-key", S3_KEY_ID, "--secret-key", S3_SECRET,
               "--concurrency", str(LIMIT_CONCURRENCY)]
        list_file = os.path.join(WORK, f"limit-{prefix}.list")
        if direction == "up":
            return ["sh", "-c", 'exec "$@" >"$0"', list_file, *cmd]
        return ["sh", "-c", 'exec "$@" <"$0"', list_file, *cmd]

    def check(self, stdout):
        return None


LIMIT_TOOL = ServerLimit("limit", f"SERVER-LIMIT (bare PUT/GET, {LIMIT_CONCURRENCY} at once)")

TOOLS = [
    Scribe("scribe", "scribe-mover"),
    Rclone("rclone", "rclone --transfers 16", []),
    Rclone("rclone_checksum", "rclone --transfers 16 --checksum", ["--checksum"]),
]


def timed(tool, cmd, tag):
    """Run cmd under GNU time; return (wall seconds, peak RSS KiB). Exit on failure."""
    tfile = os.path.join(WORK, "time.out")
    # Flush the previous step's dirty pages (the server's data, a download) first,
    # so their write-back is not billed to this step.
    subprocess.run(["sync"], check=True)
    child_env = dict(os.environ)
    child_env.pop("AWS_CA_BUNDLE", None)  # rclone 1.60 fails with it; http endpoint anyway
    child_env["TERMINATION_LOG"] = os.path.join(WORK, "termination.json")
    proc = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", tfile, *cmd],
                          capture_output=True, text=True, env=child_env)
    problem = None
    if proc.returncode != 0:
        problem = f"exit code {proc.returncode}"
    else:
        problem = tool.check(proc.stdout)
    if problem:
        print(f"bench: {tag} failed ({problem})\ncommand: {' '.join(cmd)}\n"
              f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-8000:]}",
              file=sys.stderr)
        sys.exit(1)
    if LOG_DIR:
        name = tag.replace(" ", "_").replace("%", "pct")
        with open(os.path.join(LOG_DIR, f"{name}.log"), "w") as f:
            f.write(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    with open(tfile) as f:
        last = f.read().strip().splitlines()[-1]
    secs, rss = last.split()
    return float(secs), int(rss)


def verify(expected, actual, tag):
    proc = subprocess.run(["diff", "-r", "-q", expected, actual], capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"bench: {tag}: download differs from the source tree:\n{proc.stdout[:4000]}"
              f"{proc.stderr[:2000]}", file=sys.stderr)
        sys.exit(1)


def one_round(tool, pristine, run):
    tag = f"{tool.key} run {run}"
    prefix = f"{tool.key}-run{run}"
    src = os.path.join(WORK, "src")
    dst = os.path.join(WORK, "dst")
    for d in (src, dst):
        shutil.rmtree(d, ignore_errors=True)
    subprocess.run(["cp", "-a", pristine, src], check=True)
    # The copy sets every ctime to "now"; the mover (like git) does not trust the
    # stat of files changed within a second of its scan and re-hashes them on the
    # next run. Wait so the re-sync measures the steady state, not the copy.
    time.sleep(2.5)
    os.makedirs(dst)
    out = {}
    out["upload"] = timed(tool, tool.command("up", src, prefix), f"{tag} first upload")
    out["resync"] = timed(tool, tool.command("up", src, prefix), f"{tag} no-change re-sync")
    change_files(src, seed=run)
    out["changed"] = timed(tool, tool.command("up", src, prefix), f"{tag} 1 % changed")
    out["download"] = timed(tool, tool.command("down", dst, prefix), f"{tag} download")
    verify(src, dst, tag)
    shutil.rmtree(src)
    shutil.rmtree(dst)
    log(f"{tag}: " + ", ".join(f"{k} {v[0]:.2f}s/{v[1] // 1024}MiB" for k, v in out.items()))
    return out


def limit_round(pristine, run):
    """SERVER-LIMIT: bare PUT of the dataset, then bare GET into an empty dir."""
    tag = f"limit run {run}"
    prefix = f"limit-run{run}"
    dst = os.path.join(WORK, "dst")
    shutil.rmtree(dst, ignore_errors=True)
    os.makedirs(dst)
    out = {"upload": timed(LIMIT_TOOL, LIMIT_TOOL.command("up", pristine, prefix),
                           f"{tag} upload")}
    out["download"] = timed(LIMIT_TOOL, LIMIT_TOOL.command("down", dst, prefix),
                            f"{tag} download")
    verify(pristine, dst, tag)
    shutil.rmtree(dst)
    log(f"{tag}: " + ", ".join(f"{k} {v[0]:.2f}s/{v[1] // 1024}MiB" for k, v in out.items()))
    return out


def warm_up(pristine):
    """garage stores each block once (content-addressed): upload the dataset once,
    untimed, so every timed upload finds the same blocks already stored."""
    timed(LIMIT_TOOL, LIMIT_TOOL.command("up", pristine, "warmup"), "warm-up upload")


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def mem_total():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / MIB:.1f} GiB"
    return "unknown"


def version(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0].strip()
    except (OSError, IndexError):
        return "unknown"


def fmt_ratio(num, den):
    return f"{num / den:.2f}" if den > 0 else "n/a"


def median_of(runs):
    return (statistics.median(v[0] for v in runs), max(v[1] for v in runs))


def render(results, limit, big_lines, scale_lines, started, elapsed):
    med = {t.key: {s: median_of(results[t.key][s]) for s, _ in SCENARIOS} for t in TOOLS}
    lim = {s: median_of(limit[s]) for s in ("upload", "download")}
    data = (f"{N_SMALL:,} files of 1–64 KiB in nested dirs + {N_LARGE} × {LARGE_SIZE // MIB} MiB"
            f" ({'BENCH_SMALL' if SMALL else 'full'} dataset); 1 % changed = {N_CHANGED} small"
            " files rewritten with new content of the same size")
    lines = [
        "# Scribe mover benchmark",
        "",
        "Generated by `make bench` (hack/bench.sh). **The machine is shared and noisy**: other",
        "jobs run on the same cores, so treat differences under ~20 % as noise.",
        "",
        f"- Date: {started}",
        f"- Machine: {os.cpu_count()} CPUs ({cpu_model()}), {mem_total()} RAM",
        f"- Server: {SERVER}",
        f"- Tools: scribe-mover (release, defaults: 16 transfers), {version(['rclone', 'version'])};",
        f"  SERVER-LIMIT = crates/mover/examples/server_limit.rs: the same client library",
        f"  (object_store `AmazonS3`), {LIMIT_CONCURRENCY} requests at once, bare PUT of each file",
        "  (multipart, 8 MiB parts, above 8 MiB) / bare GET into a file: no hashing, metadata,",
        "  listing, manifest, verification or fsync.",
        f"- Dataset: {data}",
        f"- Each number: median wall time of {RUNS} run(s); each tool syncs into a fresh bucket",
        "  prefix per run, from a fresh copy of the dataset; `sync` runs before every timed step;",
        "  every download is checked with `diff -r` against the source tree. The copy is made",
        "  2.5 s before the first upload: files changed within ~1 s of a scribe scan are re-hashed",
        "  on its next run (racy-stat rule), which would otherwise bill the copy to the re-sync",
        "  (measured here: ~1.3 s instead of ~0.1 s).",
        "- Ratio = rclone seconds / scribe seconds (> 1 means Scribe is faster).",
        "  Peak RSS = max over the runs (GNU time `%M`).",
        "- garage stores each block once: the dataset is uploaded once (untimed) before the",
        "  timed runs, so every timed upload finds its blocks already stored.",
        f"- Total bench time: {elapsed:.0f} s",
        "",
        "| scenario | scribe s | rclone s | rclone --checksum s | SERVER-LIMIT s | rclone / scribe"
        " | rclone --checksum / scribe | scribe / SERVER-LIMIT | scribe RSS MiB | rclone RSS MiB"
        " | rclone --checksum RSS MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, label in SCENARIOS:
        s, r, c = med["scribe"][key], med["rclone"][key], med["rclone_checksum"][key]
        ls = lim.get(key)
        lines.append(
            f"| {label} | {s[0]:.2f} | {r[0]:.2f} | {c[0]:.2f} | {f'{ls[0]:.2f}' if ls else '—'}"
            f" | {fmt_ratio(r[0], s[0])} | {fmt_ratio(c[0], s[0])}"
            f" | {fmt_ratio(s[0], ls[0]) if ls else '—'}"
            f" | {s[1] / 1024:.0f} | {r[1] / 1024:.0f} | {c[1] / 1024:.0f} |")
    lines += ["", "Goals (rclone = rclone --transfers 16 --checksum, as VolSync runs it):", ""]
    goals = [
        ("first upload within 1.15 × SERVER-LIMIT PUT",
         med["scribe"]["upload"][0] / lim["upload"][0], "≤", 1.15),
        ("restore within 1.3 × SERVER-LIMIT GET",
         med["scribe"]["download"][0] / lim["download"][0], "≤", 1.3),
        ("restore ≥ 2.5 × faster than rclone",
         med["rclone_checksum"]["download"][0] / med["scribe"]["download"][0], "≥", 2.5),
        ("no-change re-sync ≥ 30 × faster than rclone",
         med["rclone_checksum"]["resync"][0] / med["scribe"]["resync"][0], "≥", 30),
        ("1 % changed ≥ 10 × faster than rclone",
         med["rclone_checksum"]["changed"][0] / med["scribe"]["changed"][0], "≥", 10),
    ]
    for name, value, op, bound in goals:
        met = value <= bound if op == "≤" else value >= bound
        lines.append(f"- {name}: {value:.2f} ({'met' if met else 'NOT met'})")
    lines += ["", "All runs (seconds):", ""]
    for t in TOOLS:
        cells = "; ".join(
            f"{label}: " + ", ".join(f"{v[0]:.2f}" for v in results[t.key][key])
            for key, label in SCENARIOS)
        lines.append(f"- {t.label}: {cells}")
    lines.append(f"- {LIMIT_TOOL.label}: " + "; ".join(
        f"{k}: " + ", ".join(f"{v[0]:.2f}" for v in limit[k]) for k in ("upload", "download")))
    per_scenario = ", ".join(
        f"{label}: {TOOLS[0].transferred[i::len(SCENARIOS)]}" for i, (_, label) in enumerate(SCENARIOS))
    lines += ["", f"scribe-mover filesTransferred per run (from SCRIBE_SUMMARY): {per_scenario}"]
    return "\n".join(lines + big_lines + scale_lines) + "\n"


def main():
    started = subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip()
    t0 = time.monotonic()
    pristine = os.path.join(WORK, "dataset")
    log(f"generating dataset: {N_SMALL} small files + {N_LARGE} x {LARGE_SIZE // MIB} MiB")
    generate_dataset(pristine)
    warm_up(pristine)
    results = {t.key: {s: [] for s, _ in SCENARIOS} for t in TOOLS}
    limit = {"upload": [], "download": []}
    for run in range(1, RUNS + 1):
        # Tools interleaved within a run so background noise spreads over all of them.
        for tool in TOOLS:
            out = one_round(tool, pristine, run)
            for key, value in out.items():
                results[tool.key][key].append(value)
        for key, value in limit_round(pristine, run).items():
            limit[key].append(value)
    this = sys.modules[__name__]
    crypt_lines = crypt_row.run(this, pristine)
    shutil.rmtree(pristine)
    big_lines = big.run(this) if BIG_GIB > 0 else []
    scale_lines = scale.run(this) if SCALE_FILES else []
    table = render(results, limit, crypt_lines + big_lines, scale_lines, started, time.monotonic() - t0)
    print(table)
    os.makedirs(os.path.dirname(os.path.abspath(RESULTS)), exist_ok=True)
    with open(RESULTS, "w") as f:
        f.write(table)
    log(f"results written to {RESULTS}")


if __name__ == "__main__":
    main()
