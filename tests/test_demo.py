"""The demo end to end, as a user runs it, with tiny settings: train a few
steps, log probes, checkpoints and MiniLM, serve TensorBoard on a free port,
fetch the plugin's runs and the loss scalars over HTTP, stop the server.

The demo and its TensorBoard use the installed tb_attention (PYTHONPATH is
dropped), as after `bash demo/run.sh`.
"""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from tests.conftest import REPO, free_port, wait_until

DEMO = os.path.join(REPO, "demo", "demo.py")
STEPS, LOG_EVERY, EARLY = 12, 4, 4
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # ignore http_proxy
PROBE_TAGS = ["probe/induction-0", "probe/induction-1", "probe/induction-2"]
MINILM_TAGS = ["agreement/author", "agreement/keys", "coreference/tired", "coreference/trophy",
               "coreference/wide", "pair/cat-mat", "pair/paraphrase", "pair/question-answer"]


def _get_json(url):
    with _http.open(url, timeout=30) as r:
        assert r.status == 200
        return json.loads(r.read())


def _stop(proc):
    """Terminate the demo's process group (the demo and its TensorBoard)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_demo_end_to_end(tmp_path):
    started = time.monotonic()
    logdir = tmp_path / "runs"
    port = free_port()
    url = "http://127.0.0.1:%d" % port
    out_path = tmp_path / "demo.out"
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    cmd = [sys.executable, DEMO, "--steps", str(STEPS), "--log-every", str(LOG_EVERY),
           "--early-step", str(EARLY), "--logdir", str(logdir), "--port", str(port),
           "--host", "127.0.0.1", "--seq-len", "16", "--max-segment", "6"]
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=str(tmp_path), start_new_session=True)

    def output():
        return out_path.read_text(errors="replace")

    try:
        def demo_serving_or_exited():
            return proc.poll() is not None or "TensorBoard: %s/#attention" % url in output()

        wait_until(demo_serving_or_exited, timeout=75, interval=0.2,
                   what="the demo to finish logging")
        assert proc.poll() is None, "demo exited with %s:\n%s" % (proc.returncode, output())

        steps = list(range(0, STEPS + 1, LOG_EVERY))
        expected = {
            "gpt2-train": {tag: steps for tag in PROBE_TAGS},
            "gpt2-checkpoint-early": {tag: [EARLY] for tag in PROBE_TAGS},
            "gpt2-checkpoint-final": {tag: [STEPS] for tag in PROBE_TAGS},
            "minilm": {tag: [0] for tag in MINILM_TAGS},
        }

        def all_loaded():  # TensorBoard picks up new event data every few seconds
            listing = _get_json(url + "/data/plugin/attention/tags")
            got = {r["run"]: {t["tag"]: t["steps"] for t in r["tags"]} for r in listing["runs"]}
            return listing if got == expected else None

        listing = wait_until(all_loaded, timeout=40, interval=0.5,
                             what="the demo's runs in /data/plugin/attention/tags")
        tags = {(r["run"], t["tag"]): t for r in listing["runs"] for t in r["tags"]}

        train = tags[("gpt2-train", "probe/induction-0")]
        assert train["model_type"] == "gpt2"
        assert train["kept"] == train["written"] == len(steps)  # all steps kept
        (kind,) = train["kinds"]
        assert kind["name"] == "self" and kind["causal"] and kind["has_neurons"]
        assert kind["layer_ids"] == [0, 1] and kind["num_heads"] == 4
        assert tags[("gpt2-checkpoint-final", "probe/induction-0")]["kinds"] == train["kinds"]

        bert = tags[("minilm", "pair/question-answer")]
        assert bert["model_type"] == "bert"
        (kind,) = bert["kinds"]
        assert kind["has_neurons"] and not kind["causal"]
        assert len(kind["layer_ids"]) == 6 and kind["num_heads"] == 12

        # The loss curve lives in the same run as the probes' attention.
        scalar_tags = _get_json(url + "/data/plugin/scalars/tags")
        assert {"loss/train", "loss/repeated_segment", "heads/best_induction_score"} <= set(
            scalar_tags["gpt2-train"])
        loss = _get_json(url + "/data/plugin/scalars/scalars?run=gpt2-train&tag=loss/train")
        assert [row[1] for row in loss] == list(range(1, STEPS + 1))

        # One step's attention decodes: a row of a causal map sums to 1.
        with _http.open(
                url + "/data/plugin/attention/attention?run=gpt2-train&tag=probe/induction-0"
                "&step=%d&kind=self&layer=1&head=0" % STEPS, timeout=30) as r:
            body = r.read()
            shape = [int(x) for x in r.headers["X-Attention-Shape"].split(",")]
        assert shape[0] == 1 and len(body) == shape[0] * shape[1] * shape[2]
        assert abs(sum(body[-shape[2]:]) / 255 - 1) < 0.05

        report = json.loads((logdir / "demo_report.json").read_text())
        assert report["logged_steps"] == steps
        assert 0 < report["probe_fraction"] < 1
        assert os.path.isfile(logdir / "checkpoints" / ("gpt2-step-%d" % STEPS) / "config.json")
        assert "Probe overhead" in output()
    finally:
        _stop(proc)

    # Stopping the demo stopped its TensorBoard too.
    try:
        _http.open(url + "/data/plugins_listing", timeout=2)
        raise AssertionError("TensorBoard still answers after the demo was stopped")
    except (urllib.error.URLError, ConnectionError, OSError):
        pass
    assert time.monotonic() - started < 90, "the tiny demo run took %.0f s" % (time.monotonic() - started)
