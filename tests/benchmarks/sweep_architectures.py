"""The full architecture sweep: every model type of the installed
transformers, built tiny and checked against capture (tests/sweep.py says
what is checked). Prints one line per model type and a summary, writes the
table to results/architectures.md and into docs/architectures.md (between
its "sweep" markers), and the counts into the README.

    .venv/bin/python tests/benchmarks/sweep_architectures.py [--jobs 2] [--only bert vit ...]
        [--no-docs]   # print and write results/architectures.md only

Each model type runs in a worker process (one torch thread each) with a time
limit; --only runs some types and writes nothing but the printed lines.
Exit status 1 when a model type is WRONG or CRASHes.
"""
import argparse
import collections
import datetime
import multiprocessing
import os
import platform
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
RESULTS = os.path.join(HERE, "results", "architectures.md")
DOCS = os.path.join(REPO, "docs", "architectures.md")
README = os.path.join(REPO, "README.md")
ORDER = ("neurons", "attention", "refused", "no attention", "not run", "WRONG", "CRASH")
HEADINGS = {
    "neurons": "Faithful neurons",
    "attention": "Attention only (no neurons, with the reason)",
    "refused": "Refused (with the message capture raises)",
    "no attention": "No attention weights (the model's own eager output_attentions has none)",
    "not run": "Not run by the sweep (could not be built tiny or run on its inputs)",
    "WRONG": "Silently wrong",
    "CRASH": "Crash without a message",
}


def _worker_init():
    sys.path.insert(0, REPO)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import warnings

    import torch
    import transformers

    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")


def _check(model_type):
    from tests import sweep

    return sweep.check(model_type, timeout=sweep.TIMEOUT)


def run(types, jobs):
    ctx = multiprocessing.get_context("spawn")  # torch and fork do not mix
    results = {}
    with ctx.Pool(jobs, initializer=_worker_init, maxtasksperchild=40) as pool:
        for result in pool.imap_unordered(_check, types):
            results[result.model_type] = result
            print(result.line(), flush=True)
    return [results[t] for t in types]


def _cell(text):
    return text.replace("|", "\\|").replace("\n", " ")


def tables(results, when):
    counts = collections.Counter(r.status for r in results)
    lines = [when, "", "| result | model types |", "|---|---|"]
    lines += ["| %s | %d |" % (HEADINGS[s], counts.get(s, 0)) for s in ORDER]
    for status in ORDER:
        mine = sorted((r for r in results if r.status == status), key=lambda r: r.model_type)
        if not mine:
            continue
        lines += ["", "### %s (%d)" % (HEADINGS[status], len(mine)), ""]
        if status == "neurons":
            plain = [r for r in mine if not r.reason and not r.notes]
            lines.append(", ".join("`%s`" % r.model_type for r in plain) + ".")
            mine = [r for r in mine if r.reason or r.notes]
            if not mine:
                continue
            lines += ["", "With a note:", ""]
        lines += ["| `model_type` | class | %s |" % ("reason" if status != "neurons" else "note"),
                  "|---|---|---|"]
        lines += ["| `%s` | %s | %s |" % (r.model_type, r.model_class or "-",
                                        _cell("; ".join(x for x in (r.reason, r.notes) if x)))
                  for r in mine]
    return counts, lines


def replace_between(path, marker, text):
    with open(path) as f:
        old = f.read()
    begin, end = "<!-- %s: begin -->" % marker, "<!-- %s: end -->" % marker
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    if not pattern.search(old):
        raise SystemExit("%s has no %s ... %s markers" % (path, begin, end))
    with open(path, "w") as f:
        f.write(pattern.sub(lambda m: begin + "\n" + text + "\n" + end, old))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", nargs="+", help="model types to run (writes nothing)")
    ap.add_argument("--no-docs", action="store_true", help="do not touch docs/ and the README")
    args = ap.parse_args()
    sys.path.insert(0, REPO)
    import torch
    import transformers

    from tests import sweep

    types = args.only or sweep.model_types()
    load = os.getloadavg()[0]
    t0 = time.time()
    results = run(types, args.jobs)
    took = time.time() - t0
    counts = collections.Counter(r.status for r in results)
    print("%d model types in %.0f s (%d jobs; load average %.1f at start, %.1f at end): %s"
          % (len(results), took, args.jobs, load, os.getloadavg()[0],
             ", ".join("%s %d" % (s, counts[s]) for s in ORDER if counts[s])))
    if args.only:
        return 1 if counts["WRONG"] or counts["CRASH"] else 0
    when = ("`python tests/benchmarks/sweep_architectures.py` on %s: transformers %s, torch %s, "
            "Python %s, %d model types (every type transformers maps to a base model class) in "
            "%.0f s with %d jobs on %d cores (load average %.1f at start, %.1f at end)."
            % (datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               transformers.__version__, torch.__version__, platform.python_version(), len(results),
               took, args.jobs, os.cpu_count(), load, os.getloadavg()[0]))
    counts, lines = tables(results, when)
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        f.write("# Architecture sweep\n\n" + "\n".join(lines) + "\n")
    if not args.no_docs:
        replace_between(DOCS, "sweep", "\n".join(lines))
        replace_between(README, "sweep-counts", (
            "The architecture sweep (every model type of transformers %s, built tiny): %d with "
            "faithful neurons, %d attention only (with the reason), %d refused (with the reason), "
            "%d without attention weights, %d not run by the sweep, %d silently wrong, %d crashes "
            "without a message: [docs/architectures.md](docs/architectures.md)."
            % (transformers.__version__, counts["neurons"], counts["attention"], counts["refused"],
               counts["no attention"], counts["not run"], counts["WRONG"], counts["CRASH"])))
    return 1 if counts["WRONG"] or counts["CRASH"] else 0


if __name__ == "__main__":
    sys.exit(main())
