"""Runs every benchmark in this folder, one after another, and joins their
tables into results/REPORT.md with the date and the machine.

    .venv/bin/pip install -q . -r tests/benchmarks/requirements.txt
    .venv/bin/python tests/benchmarks/run_all.py [--quick]

Each benchmark also runs alone (see README.md here). --quick passes each
script its own short mode where it has one; the report says it was quick.
"""
import argparse
import datetime
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
# (script, its results file, extra args in --quick mode)
BENCHMARKS = [
    ("bench_writer.py", "writer.md", ["--quick"]),
    ("bench_backend.py", "backend.md", ["--quick"]),
    ("bench_probe.py", "probe.md", ["--rounds", "1"]),
    ("bench_dashboard.py", "dashboard.md", ["--reps", "3", "--no-512-bertviz"]),
    ("bench_load.py", "load.md", ["--quick"]),
]


def machine():
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    load = ", ".join("%.1f" % x for x in os.getloadavg())
    return "%s, %d cores, %.1f GiB memory, Python %s; load average at start %s" % (
        platform.machine(), os.cpu_count(), mem_gib, platform.python_version(), load)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="+", help="script names to run (default: all)")
    args = ap.parse_args()
    started = datetime.datetime.now(datetime.timezone.utc)
    header = ["# Benchmark report", "",
              "%s on %s%s." % (started.strftime("%Y-%m-%d %H:%M UTC"), machine(),
                               " (quick mode)" if args.quick else ""), ""]
    failed = []
    for script, result, quick_args in BENCHMARKS:
        if args.only and script not in args.only:
            continue
        cmd = [sys.executable, os.path.join(HERE, script)] + (quick_args if args.quick else [])
        print("==>", " ".join(cmd), flush=True)
        if subprocess.call(cmd) != 0:
            failed.append(script)
    sections = []
    for script, result, _ in BENCHMARKS:
        path = os.path.join(RESULTS, result)
        if os.path.exists(path) and (not args.only or script in args.only):
            with open(path, encoding="utf-8") as f:
                sections.append("## %s\n\n%s" % (script, f.read().strip()))
    if failed:
        sections.append("## Failed\n\n" + "\n".join("- %s" % s for s in failed))
    report = "\n".join(header) + "\n" + "\n\n".join(sections) + "\n"
    with open(os.path.join(RESULTS, "REPORT.md"), "w", encoding="utf-8") as f:
        f.write(report)
    print(report)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
