"""Runs every benchmark in this folder, one after another, and joins their
tables into results/REPORT.md with the date and the machine.

    .venv/bin/pip install -q . -r tests/benchmarks/requirements.txt
    .venv/bin/python tests/benchmarks/run_all.py [--quick]
    .venv/bin/python tests/benchmarks/run_all.py --summary   # runs nothing

Each benchmark also runs alone (see README.md here). --quick passes each
script its own short mode where it has one; the report says it was quick.

--summary runs no benchmark: it reads the results/*.md files as they are and
writes results/SUMMARY.md, one compact table of the headline medians and
ratios (the table in docs/benchmarks.md), each row with the date its numbers were
measured (the date written in its source file) and the source file.
"""
import argparse
import datetime
import os
import platform
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
# (script, its results file, extra args in --quick mode)
BENCHMARKS = [
    ("bench_writer.py", "writer.md", ["--quick"]),
    ("bench_backend.py", "backend.md", ["--quick"]),
    ("bench_probe.py", "probe.md", ["--rounds", "1"]),
    ("bench_compare.py", "compare.md", []),
    ("bench_dashboard.py", "dashboard.md", ["--reps", "3", "--no-512-bertviz"]),
    ("bench_load.py", "load.md", ["--quick"]),
]
# Scripts that only print their result: run_all writes their output into the results
# file, under the date and the machine.
PRINTS_ONLY = {"bench_compare.py"}


def machine():
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    load = ", ".join("%.1f" % x for x in os.getloadavg())
    return "%s, %d cores, %.1f GiB memory, Python %s; load average at start %s" % (
        platform.machine(), os.cpu_count(), mem_gib, platform.python_version(), load)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="+", help="script names to run (default: all)")
    ap.add_argument("--summary", action="store_true",
                    help="run nothing; write results/SUMMARY.md from the results/*.md files")
    args = ap.parse_args()
    if args.summary:
        return write_summary()
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
        if script not in PRINTS_ONLY:
            if subprocess.call(cmd) != 0:
                failed.append(script)
            continue
        when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        where = machine()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        print(proc.stdout, end="", flush=True)
        if proc.returncode != 0:
            failed.append(script)
            continue
        with open(os.path.join(RESULTS, result), "w", encoding="utf-8") as f:
            f.write("# `%s`\n\n%s on %s (written by run_all.py).\n\n```\n%s```\n"
                    % (" ".join(["python", "tests/benchmarks/" + script] + cmd[2:]), when, where,
                       proc.stdout))
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


# ---------------------------------------------------------------------------
# --summary: the headline numbers of results/*.md in one table

DATE = re.compile(r"(\d{4}-\d{2}-\d{2})(?: (\d{2}:\d{2}))?")
# results/writer-quick.md: `bench_writer.py --quick --out ...` of a later day, next to the full run.
WRITER_FILES = ("writer-quick.md", "writer.md")


class Source:
    """One results file: its tables (header cells, rows of cells) and its date."""

    def __init__(self, name):
        self.name = name
        self.path = os.path.join(RESULTS, name)
        self.text = ""
        if os.path.exists(self.path):
            with open(self.path, encoding="utf-8") as f:
                self.text = f.read()
        m = DATE.search(self.text)
        self.date = " ".join(g for g in m.groups() if g) if m else "date unknown"
        # the paragraph naming the date usually names the machine and the load too
        self.context = next((" ".join(p.split()) for p in self.text.split("\n\n")
                             if DATE.search(p) and not p.lstrip().startswith("|")), "")
        self.tables = []
        header, rows = None, []
        for line in self.text.splitlines() + [""]:
            if line.startswith("|"):
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                if header is None:
                    header = cells
                elif not all(set(c) <= set("-: ") for c in cells):
                    rows.append(cells)
            elif header is not None:
                self.tables.append((header, rows))
                header, rows = None, []

    def cell(self, row, column):
        """The cell of the first row starting with `row` in the first table
        having a column starting with `column`; None when there is none."""
        for header, rows in self.tables:
            cols = [i for i, h in enumerate(header) if h.startswith(column)]
            if not cols:
                continue
            for r in rows:
                if r and r[0].startswith(row) and cols[0] < len(r):
                    return r[cols[0]]
        return None

    def find(self, pattern):
        m = re.search(pattern, self.text)
        return m.group(1) if m else None


def _first_number(text):
    m = re.search(r"-?\d+(?:\.\d+)?", text or "")
    return float(m.group(0)) if m else None


def summary_rows():
    """[(measure, tb-attention, baseline, ratio, source)] from results/*.md."""
    rows = []
    missing = "not in %s"
    writers = sorted((Source(n) for n in WRITER_FILES), key=lambda src: src.date, reverse=True)

    def writer(shape, column):
        for src in writers:
            v = src.cell(shape, column)
            if v is not None:
                return v, src
        return None, writers[-1]

    # Both writer runs, newest first: they ran at different loads (see the sources).
    for shape, label in (("12x12x128x128", "12x12 heads, 128 tokens"),
                         ("12x12x512x512", "12x12 heads, 512 tokens")):
        have = [w for w in writers if w.cell(shape, "blocked ms, numpy") is not None] or writers[-1:]
        for src in have:
            v = src.cell(shape, "blocked ms, numpy")
            rows.append(("Writer: training thread blocked per `add_attention`, %s" % label,
                         "%s ms" % v if v else missing % src.name, "", "", src))
        for src in have:
            ours = src.cell(shape, "ours MB/s, encode+write")
            tb = src.cell(shape, "TensorBoard EventFileWriter")
            ratio = src.cell(shape, "speed-up, encode+write")
            rows.append(("Writer: background MB/s (encode + write), %s" % label,
                         "%s MB/s" % ours if ours else missing % src.name,
                         "TensorBoard's EventFileWriter: %s MB/s" % tb if tb else "", ratio or "", src))
    bpw, src = writer("12x12x128x128", "bytes on disk per weight")
    dash = Source("dashboard.md")
    html = dash.find(r"head view at 128 tokens (\d+) MB of HTML")
    bertviz_bpw = ("BertViz: %.0f B of HTML (its head view page, 128 tokens)"
                   % (float(html) * 1e6 / (12 * 12 * 128 * 128)) if html else "")
    ratio = ("%.0fx" % (float(html) * 1e6 / (12 * 12 * 128 * 128) / float(bpw))) if html and bpw else ""
    rows.append(("Bytes per attention weight, 12x12 heads, 128 tokens (uint8 on disk)",
                 "%s B" % bpw if bpw else missing % src.name, bertviz_bpw, ratio, [src, dash]))

    probe = Source("probe.md")
    share = probe.find(r"inside maybe_log[^*]*\*\*([\d.]+%)\*\*")
    rows.append(("Probe: share of training time inside `maybe_log` (GPT-2 4x4, 2 texts every 50 steps)",
                 share or missing % probe.name, "", "", probe))

    back = Source("backend.md")
    for row, label, tokens in (("layer warm", "`attention` (one layer), warm", 128),
                               ("layer warm", "`attention` (one layer), warm", 512),
                               ("layer cold", "`attention` (one layer), cold", 512),
                               ("overview cold", "`overview` (model view), cold", 512)):
        v = back.cell(row, "Rust (load_fast=true), %d tok" % tokens)
        rows.append(("Route %s, 12x12 heads, %d tokens: median (p90) ms, Rust data server"
                     % (label, tokens), v or missing % back.name, "", "", back))
    listed = back.find(r"rust 512 tok ([\d.]+ s)")
    listed_py = back.find(r"python 512 tok ([\d.]+ s)")
    rows.append(("TensorBoard start until all 20 steps are listed, 12x12 heads, 512 tokens",
                 "%s (Rust data server)" % listed if listed else missing % back.name,
                 "%s (Python loader)" % listed_py if listed_py else "",
                 "%.0fx" % (_first_number(listed_py) / _first_number(listed)) if listed and listed_py else "",
                 back))
    rps = back.cell("requests/s", "Rust (load_fast=true), 512 tok")
    p99 = back.cell("p99 ms", "Rust (load_fast=true), 512 tok")
    errors = back.cell("errors", "Rust (load_fast=true), 512 tok")
    rows.append(("Load test: 20 clients for 30 s, 512 tokens, Rust data server",
                 "%s requests/s, p99 %s ms, %s errors" % (rps, p99, errors) if rps else missing % back.name,
                 "", "", back))

    comp = Source("compare.md")
    m = re.search(r"x (\d+) tokens, load_fast=(\w+): cold (\d+) ms, warm ([\d.]+) ms", comp.text)
    rows.append(("Route `compare` (mean JSD of every layer and head of two steps), 12x12 heads, %s "
                 "tokens: cold / warm median ms" % (m.group(1) if m else "512"),
                 "%s / %s" % (m.group(3), m.group(4)) if m else missing % comp.name, "", "", comp))

    for scenario in ("Model view, 128 tokens", "Model view, 512 tokens", "Head view, 128 tokens",
                     "Head view, 512 tokens", "Head view layer switch, 128 tokens",
                     "Step switch, 128 tokens, head view", "Step switch, 128 tokens, model view",
                     "Matrix view, 1 head, 4096 tokens"):
        ours = dash.cell(scenario, "tb-attention ms")
        theirs = dash.cell(scenario, "BertViz ms")
        ratio = dash.cell(scenario, "Ratio")
        mem = dash.cell(scenario, "Our renderer MB")
        mem_bv = dash.cell(scenario, "BertViz renderer MB")
        if ours and mem and mem != "-":
            ours += "; renderer %s MB" % mem
        if theirs and mem_bv and mem_bv != "-":
            theirs += "; renderer %s MB" % mem_bv
        rows.append(("Dashboard, ms to fully drawn: %s%s" % (scenario, "" if "Matrix" in scenario
                                                               else ", 12x12 heads"),
                     ours or missing % dash.name,
                     "" if theirs in (None, "n/a") else "BertViz: %s" % theirs,
                     "" if ratio in (None, "-") else ratio, dash))
    return rows


def write_summary():
    rows = summary_rows()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sources = []
    for *_, srcs in rows:
        for src in srcs if isinstance(srcs, list) else [srcs]:
            if src not in sources:
                sources.append(src)
    lines = [
        "# Benchmark summary",
        "",
        "`python tests/benchmarks/run_all.py --summary` at %s on %s: it runs no benchmark, it "
        "collects the headline medians of `tests/benchmarks/results/*.md`, each row with the date "
        "its numbers were measured (the date in its source file). The machines of every run: "
        "2 shared cores (x86_64 VMs: AMD EPYC on 2026-11-25, Intel Xeon on 2026-12-03), about 23 GiB memory, other jobs running alongside "
        "(the load is in each source's line below)." % (now, machine()),
        "",
        "| Measure | tb-attention | Baseline | Ratio | Measured | Source |",
        "|---|---|---|---|---|---|",
    ]
    for measure, ours, base, ratio, srcs in rows:
        srcs = srcs if isinstance(srcs, list) else [srcs]
        lines.append("| %s | %s | %s | %s | %s | %s |" % (
            measure, ours, base, ratio, ", ".join(dict.fromkeys(s.date for s in srcs)),
            ", ".join("`results/%s`" % s.name for s in srcs)))  # no links: pasted into docs/benchmarks.md as is
    lines += ["", "Where each source says it ran:", ""]
    lines += ["- `results/%s`: %s" % (src.name, src.context[:700] or "(no date)") for src in sources]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(RESULTS, "SUMMARY.md"), "w", encoding="utf-8") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
