"""The mutation check (on demand, like the benchmarks): put one small,
realistic bug at a time into a temporary copy of this checkout, run the tests
that should catch it, and say whether they did.

    .venv/bin/python tests/mutation/run.py              # every mutation
    .venv/bin/python tests/mutation/run.py --list       # their names
    .venv/bin/python tests/mutation/run.py "line alpha" "URL step parsing"

Each mutation is (name, file, exact original snippet, mutated snippet,
tests). A snippet that is not found exactly once in the checkout stops the
run before anything is tested (exit 2): when the code moves, fix the snippet,
never let it pass as "survived". A mutation is killed when its tests fail
(pytest exit 1, node --test non-zero); a test run that errors in another way
(collection error, no tests found) stops the run (exit 2), since it says
nothing about the bug.

Python tests run in the copy (conftest puts it first on sys.path) with a
throwaway venv whose site-packages holds the mutated package installed by
`pip install --no-deps --target` and a .pth pointing at this checkout's
.venv for everything else: TensorBoard subprocesses started by the tests
(`sys.executable -m tensorboard.main`, PYTHONPATH dropped) then load the
mutated plugin, as a user's install would (about 7 s per mutation, measured;
importlib.metadata keeps the first tb-attention it finds, the mutated one).

Before the mutations, the same test selections run once on the unmutated copy
(--no-baseline skips it): a test failing there would make every mutation
look killed.

Prints KILLED / SURVIVED per mutation and a summary; exit 1 when any survived.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_SITE = os.path.join(REPO, ".venv", "lib", "python%d.%d" % sys.version_info[:2], "site-packages")


class Mutation(NamedTuple):
    name: str
    file: str
    old: str
    new: str
    tests: Tuple[str, ...]  # pytest node ids / files, or frontend/tests/*.mjs for node


M = Mutation
MUTATIONS = [
    # -- writing: capture, quantisation, checksums ---------------------------
    M("quantisation rounding", "tb_attention/codec.py",
      "np.rint(x, out=x)", "np.floor(x, out=x)",
      ("tests/test_writer.py::test_round_trip_numpy_uint8_hostile_tokens",)),
    M("checksum skipped in the codec", "tb_attention/codec.py",
      "if google_crc32c.value(blob) != ref.crc32c:", "if False and google_crc32c.value(blob) != ref.crc32c:",
      ("tests/test_plugin.py::test_a_payload_failing_its_checksum_fails_only_that_step",)),
    M("checksum skipped in the reader (load)", "tb_attention/reader.py",
      "if record.status == tfrecord.OK:", "if record.status in (tfrecord.OK, tfrecord.BAD_PAYLOAD):",
      ("tests/test_hardening_format.py::test_load_drops_a_record_whose_step_number_was_flipped",)),
    # -- object-storage logdirs (tb_attention/files.py) ------------------------
    M("a remote failure mid-run raised raw", "tb_attention/writer.py",
      "                raise files.remote_error(self._sink.path, e) from e\n",
      "                raise\n",
      ("tests/test_remote.py::test_remote_failing_mid_run_loses_nothing_already_logged",)),
    M("S3_ENDPOINT not given to s3fs", "tb_attention/files.py",
      'if protocol in ("s3", "s3a") and endpoint:', 'if False:',
      ("tests/test_remote.py::test_s3_written_and_loaded_with_runs_nested",)),
    M("checksum skipped in TFRecord framing", "tb_attention/tfrecord.py",
      "status=OK if masked_crc32c(body) == crc else BAD_PAYLOAD", "status=OK",
      ("tests/test_hardening_format.py::test_load_drops_a_record_whose_step_number_was_flipped",)),
    M("layer index off by one in capture", "tb_attention/capturing.py",
      "layer_ids=tuple(c.layer for c in calls)", "layer_ids=tuple(c.layer + 1 for c in calls)",
      ("tests/test_capture.py::test_layer_selection",)),
    M("layer index off by one in the routes", "tb_attention/answers.py",
      "    return layer_ids.index(layer)\n", "    return min(layer_ids.index(layer) + 1, len(layer_ids) - 1)\n",
      ("tests/test_plugin.py::test_attention_is_the_stored_bytes_for_a_layer_and_a_head",)),
    M("query/key axes swapped in capture", "tb_attention/capturing.py",
      "        out[i] = layer\n",
      "        out[i] = layer.swapaxes(-1, -2)\n",
      ("tests/test_capture.py::test_attention_matches_models_own_eager_output",)),
    M("neuron scale dropped in Python", "tb_attention/record.py",
      "scores = np.matmul(q, np.swapaxes(k, -1, -2)) * np.asarray(scales, np.float32)[:, None, None, None]",
      "scores = np.matmul(q, np.swapaxes(k, -1, -2))",
      ("tests/test_writer.py::test_round_trip_neurons_recompute_attention",)),
    M("neuron scale dropped in JS", "frontend/decode.js",
      "scaled[j] = s * scale;", "scaled[j] = s;",
      ("tests/test_dashboard_e2e.py::test_neuron_view_numbers_match_the_logged_attention",)),
    M("causal flag", "tb_attention/capturing.py",
      "    upper = np.triu(np.ones((T, T), bool), 1)\n    if all(c.via_interface for c in calls):",
      "    upper = np.triu(np.ones((T, T), bool), 0)\n    if all(c.via_interface for c in calls):",
      ("tests/test_capture.py::test_attention_matches_models_own_eager_output",)),
    M("segment B start", "tb_attention/capturing.py",
      "return int(hit[0]) if hit.size else 0", "return int(hit[0]) + 1 if hit.size else 0",
      ("tests/test_capture.py::test_segments_by_token_type_and_by_separator",)),
    # -- statistics and comparison -------------------------------------------
    M("entropy base", "tb_attention/stats.py",
      "np.log(lg, out=lg)", "np.log2(lg, out=lg)",
      ("tests/test_stats.py::test_hand_computed_values",)),
    M("previous-token offset", "tb_attention/stats.py",
      "prev = np.diagonal(v, offset=-1, axis1=-2, axis2=-1)", "prev = np.diagonal(v, offset=1, axis1=-2, axis2=-1)",
      ("tests/test_stats.py::test_causal_head_and_previous_token_head",)),
    M("JSD renormalisation", "tb_attention/compare.py",
      "    p = a / np.where(valid, sa, 1.0).astype(np.float32)[..., None]\n"
      "    q = b / np.where(valid, sb, 1.0).astype(np.float32)[..., None]\n",
      "    p = a.copy()\n    q = b.copy()\n",
      ("tests/test_compare.py",)),
    M("written count", "tb_attention/answers.py",
      "written=max(len(data), header.sequence + 1 + newer)", "written=max(len(data), header.sequence + 1)",
      ("tests/test_plugin.py::test_a_payload_failing_its_checksum_fails_only_that_step",)),
    # -- the dashboard -------------------------------------------------------
    M("line alpha", "frontend/draw/lines.js",
      "ctx.globalAlpha = bucketAlpha(b);", "ctx.globalAlpha = 1;",
      ("tests/test_host_e2e.py",)),
    M("alpha bucket", "frontend/edges.js",
      "return Math.min(1, ((b << 3) + 4) / 255);", "return Math.min(1, ((b << 3) + 7) / 255);",
      ("frontend/tests/layout.test.mjs",)),
    M("URL step parsing", "frontend/state.js",
      "if (text === undefined || text === null || !/^\\d{1,19}$/.test(String(text))) return fallback;\n"
      "  const v = Number(text);",
      "if (text === undefined || text === null || !/^\\d{1,19}/.test(String(text))) return fallback;\n"
      "  const v = parseInt(text, 10);",
      ("frontend/tests/state.test.mjs",)),
    M("hit-test edges", "frontend/layout.js",
      "if (x >= L.lineX1 && i < Tk)", "if (x >= L.lineX1 && i <= Tk)",
      ("frontend/tests/layout.test.mjs", "tests/test_host_e2e.py")),
    M("hover boxes", "frontend/draw/lines.js",
      "ctx.globalAlpha = v / 255;", "ctx.globalAlpha = 1;",
      ("tests/test_host_e2e.py",)),
    M("demo score", "demo/demo.py",
      "keys.append(earlier[-1] + 1)", "keys.append(earlier[-1])",
      ("tests/test_demo.py::test_the_demo_scores_an_induction_and_a_previous_token_head",)),
]


class Loud(Exception):
    """The run cannot say anything about a mutation: stop."""


def check_snippets(mutations):
    problems = []
    for m in mutations:
        with open(os.path.join(REPO, m.file), encoding="utf-8") as f:
            n = f.read().count(m.old)
        if n != 1:
            problems.append("%s: %s holds the original snippet %d times (want 1): %r" % (m.name, m.file, n, m.old))
        for t in m.tests:  # a missing node test file would "fail" and look like a kill
            if not os.path.isfile(os.path.join(REPO, t.split("::")[0])):
                problems.append("%s: no test file %s" % (m.name, t.split("::")[0]))
    if problems:
        raise Loud("snippets no longer match the code; fix them in tests/mutation/run.py:\n  " + "\n  ".join(problems))


def tracked_files():
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p and os.path.isfile(os.path.join(REPO, p))]


def make_copy(root, files):
    for rel in files:
        dst = os.path.join(root, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(os.path.join(REPO, rel), dst)


def make_venv(root, source):
    """A venv whose site-packages holds `source` installed (no deps) and a .pth
    to this checkout's .venv for the rest; returns its python."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", root], check=True)
    site = os.path.join(root, "lib", "python%d.%d" % sys.version_info[:2], "site-packages")
    with open(os.path.join(site, "_tba_checkout_venv.pth"), "w") as f:
        f.write(VENV_SITE + "\n")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--no-index", "--target", site, source], capture_output=True, text=True)
    if r.returncode != 0:
        raise Loud("installing %s failed:\n%s" % (source, r.stderr[-3000:]))
    return os.path.join(root, "bin", "python")


def run_tests(copy, python, tests, log):
    """True when the tests failed (the bug was caught)."""
    node = [t for t in tests if t.endswith(".mjs")]
    py = [t for t in tests if not t.endswith(".mjs")]
    failed = False
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TBA_SCREENSHOTS")}
    if node:
        r = subprocess.run(["node", "--test", *node], cwd=copy, capture_output=True, text=True, env=env)
        log.write(r.stdout + r.stderr)
        failed |= r.returncode != 0
    if py and not failed:
        r = subprocess.run([python, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *py], cwd=copy,
                           capture_output=True, text=True, env=env)
        log.write(r.stdout + r.stderr)
        if r.returncode not in (0, 1):
            raise Loud("pytest %s exited %d (not a test failure):\n%s" % (" ".join(py), r.returncode,
                                                                          (r.stdout + r.stderr)[-3000:]))
        failed |= r.returncode == 1
    return failed


def trial(files, tests, mutation, workdir, log):
    """Copy, mutate (or not), install when Python tests need it, run: True when the tests failed."""
    copy = tempfile.mkdtemp(prefix="copy-", dir=workdir)
    try:
        make_copy(copy, files)
        if mutation is not None:
            path = os.path.join(copy, mutation.file)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            with open(path, "w", encoding="utf-8") as f:
                f.write(text.replace(mutation.old, mutation.new))
        python = sys.executable
        if any(not t.endswith(".mjs") for t in tests):
            python = make_venv(os.path.join(copy, ".mutation-venv"), copy)
        return run_tests(copy, python, tests, log)
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="run only these mutations (by name)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--no-baseline", action="store_true", help="skip the run on the unmutated copy")
    ap.add_argument("--log", default=os.path.join(REPO, "build", "mutation.log"))
    args = ap.parse_args(argv)
    if args.list:
        for m in MUTATIONS:
            print("%-40s %s" % (m.name, m.file))
        return 0
    chosen = [m for m in MUTATIONS if not args.names or m.name in args.names]
    unknown = set(args.names) - {m.name for m in MUTATIONS}
    try:
        if unknown:
            raise Loud("no such mutation: %s" % ", ".join(sorted(unknown)))
        check_snippets(chosen)
        files = tracked_files()
        os.makedirs(os.path.dirname(args.log), exist_ok=True)
        results = []
        t_all = time.perf_counter()
        with open(args.log, "w") as log, tempfile.TemporaryDirectory(prefix="tba-mutation-") as work:
            if not args.no_baseline:
                tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
                t0 = time.perf_counter()
                log.write("== baseline\n")
                if trial(files, tests, None, work, log):
                    raise Loud("the tests fail without any mutation (see %s): fix them first" % args.log)
                print("baseline: the %d test selections pass unmutated (%.0f s)" % (len(tests), time.perf_counter() - t0),
                      flush=True)
            for m in chosen:
                t0 = time.perf_counter()
                log.write("== %s\n" % m.name)
                killed = trial(files, m.tests, m, work, log)
                results.append((m, killed))
                print("%-8s %-40s %5.0f s  %s" % ("KILLED" if killed else "SURVIVED", m.name,
                                                 time.perf_counter() - t0, " ".join(m.tests)), flush=True)
    except Loud as e:
        print("mutation check: %s" % e, file=sys.stderr)
        return 2
    killed = sum(k for _, k in results)
    print("\n%d of %d mutations killed, %d survived (%.0f s in all; log: %s)"
          % (killed, len(results), len(results) - killed, time.perf_counter() - t_all, args.log))
    for m, k in results:
        if not k:
            print("  survived: %s (%s)" % (m.name, m.file))
    return 0 if killed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
