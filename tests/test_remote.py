"""Logdirs on object storage, both ways: the writer, load() and the plugin
(under TensorBoard's Python loader) on s3:// against a real S3-protocol server
on 127.0.0.1 (moto's standalone server, one for the module), and on memory://
(fsspec). Every remote failure is one tb_attention.RemoteLogdirError naming
the URL and the cause. Expected bytes: the quantised input (plain numpy)."""
import subprocess
import sys
import urllib.parse

import numpy as np
import pytest

import tb_attention
from tb_attention import RemoteLogdirError
from tests.support import REPO, free_port
from tests.support.browser import open_dashboard, save_screenshot, watched_page
from tests.support.pages import read_page
from tests.support.records import self_record, stored, tokens
from tests.support.s3 import fresh_clients, moto_s3

BUCKET = "logs"


@pytest.fixture(scope="module")
def s3():
    with moto_s3() as server:
        server.client().create_bucket(Bucket=BUCKET)
        yield server


def _log_steps(url, steps, seed=0, T=6):
    """Write steps of one tag to url; the records written, by step."""
    rng = np.random.default_rng(seed)
    written = {}
    with tb_attention.AttentionWriter(url) as w:
        for step in steps:
            written[step] = self_record(rng, 2, 2, tokens(T))
            w.add_attention("probe", written[step], global_step=step)
    return written


def _assert_loaded(log, run, written):
    assert log.steps(run, "probe") == sorted(written)
    for step, record in written.items():
        got = log.get(run, "probe", step)
        assert got.kind("self").query_tokens == record.kind("self").query_tokens
        np.testing.assert_array_equal(np.rint(got.attention() * 255).astype(np.uint8),
                                      stored(record.kind("self").attention))


def test_memory_url_written_and_loaded():
    written = _log_steps("memory://tba-test/runs/exp1", [0, 5])
    log = tb_attention.load("memory://tba-test/runs")
    assert log.runs() == ["exp1"]
    _assert_loaded(log, "exp1", written)


def test_file_url_is_a_local_folder(tmp_path):
    written = _log_steps(str(tmp_path / "exp"), [1])
    _assert_loaded(tb_attention.load("file://" + str(tmp_path)), "exp", written)


def test_s3_written_and_loaded_with_runs_nested(s3):
    a = _log_steps("s3://%s/nested/a" % BUCKET, [0, 1, 2], seed=1)
    b = _log_steps("s3://%s/nested/group/b" % BUCKET, [3], seed=2)
    keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket=BUCKET, Prefix="nested/")["Contents"]]
    assert any(k.startswith("nested/a/events.out.tfevents.") for k in keys), keys
    log = tb_attention.load("s3://%s/nested" % BUCKET)
    assert log.runs() == ["a", "group/b"]
    _assert_loaded(log, "a", a)
    _assert_loaded(log, "group/b", b)
    _assert_loaded(tb_attention.load("s3://%s/nested/a" % BUCKET), ".", a)


def _raises_remote(url, fn, *causes):
    with pytest.raises(RemoteLogdirError) as info:
        fn()
    e = info.value
    assert isinstance(e, OSError)
    assert e.url.startswith(url) and url in str(e), str(e)
    assert any(c in e.cause for c in causes), e.cause
    return e


def _load_and_writer_raise(url, cause):
    """load(url) and AttentionWriter(url/exp) both raise RemoteLogdirError
    naming cause; the first of them."""
    e = _raises_remote(url, lambda: tb_attention.load(url), cause)
    _raises_remote(url, lambda: tb_attention.AttentionWriter(url + "/exp"), cause)
    return e


def test_no_such_bucket(s3):
    e = _load_and_writer_raise("s3://no-such-bucket/runs", "no such bucket")
    assert "botocore" not in type(e).__module__


def test_no_such_logdir_in_a_bucket(s3):
    url = "s3://%s/nothing-here" % BUCKET
    _raises_remote(url, lambda: tb_attention.load(url), "no such logdir")


def _with_environment_changed(monkeypatch, url, cause):
    """_load_and_writer_raise with the S3 clients made afresh from the
    environment monkeypatch changed, then restored as they were."""
    fresh_clients()
    try:
        _load_and_writer_raise(url, cause)
    finally:
        monkeypatch.undo()
        fresh_clients()


def test_no_credentials(s3, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    _with_environment_changed(monkeypatch, "s3://%s/runs" % BUCKET, "no credentials")


def test_connection_refused(s3, monkeypatch):
    monkeypatch.setenv("S3_ENDPOINT", "http://127.0.0.1:%d" % free_port())  # nothing listens there
    _with_environment_changed(monkeypatch, "s3://%s/runs" % BUCKET, "cannot connect")


_WITHOUT = """
import sys
sys.modules[sys.argv[1]] = None  # as if it were not installed: importing it raises ImportError
import tb_attention
makes = {"load": lambda: tb_attention.load("s3://logs/runs"),
         "writer": lambda: tb_attention.AttentionWriter("s3://logs/runs/a")}
for name in sys.argv[2:]:
    try:
        makes[name]()
    except tb_attention.RemoteLogdirError as e:
        print("%s|%s" % (e.url, e.cause))
"""


@pytest.mark.parametrize("module, calls, package", [
    ("s3fs", ["load", "writer"], "s3fs"),
    # load() needs no boto3 (s3fs has its own client); TensorBoard's S3 layer does
    ("boto3", ["writer"], "boto3")])
def test_s3_packages_not_installed(module, calls, package):
    out = subprocess.run([sys.executable, "-c", _WITHOUT, module] + calls, capture_output=True,
                         text=True, cwd=REPO, timeout=120)
    lines = out.stdout.splitlines()
    assert out.returncode == 0 and len(lines) == len(calls), out.stdout + out.stderr
    urls = {"load": "s3://logs/runs", "writer": "s3://logs/runs/a"}
    for line, call in zip(lines, calls):
        got_url, cause = line.split("|", 1)
        assert got_url == urls[call]
        assert "not installed" in cause and package in cause, cause
        assert "pip install 'tb-attention[s3]'" in cause, cause


def test_remote_failing_mid_run_loses_nothing_already_logged(s3):
    url = "s3://%s/midrun/exp" % BUCKET
    rng = np.random.default_rng(3)
    written = {s: self_record(rng, 2, 2, tokens(5)) for s in (0, 1, 2)}
    w = tb_attention.AttentionWriter(url)
    w.add_attention("probe", written[0], global_step=0)
    w.add_attention("probe", written[1], global_step=1)
    w.flush()
    s3.stop()  # the store goes away mid-run
    try:
        w.add_attention("probe", written[2], global_step=2)
        e = _raises_remote(url, w.flush, "cannot connect")
        assert e.url.startswith(url + "/events.out.tfevents.")
        # sticky: every later call says so too
        _raises_remote(url, lambda: w.add_attention("probe", written[2], global_step=3), "cannot connect")
    finally:
        s3.start()
    fresh_clients()
    # the failed upload left the store's file as it was
    _assert_loaded(tb_attention.load("s3://%s/midrun" % BUCKET), "exp", {s: written[s] for s in (0, 1)})
    # close() still says what went wrong, and uploads what was logged before it
    _raises_remote(url, w.close, "cannot connect")
    _assert_loaded(tb_attention.load("s3://%s/midrun" % BUCKET), "exp", written)


def test_cli_html_from_s3(s3, tmp_path, capsys):
    from tb_attention import cli
    written = _log_steps("s3://%s/cli/run" % BUCKET, [4], seed=7, T=5)
    out = tmp_path / "page.html"
    assert cli.main(["html", "s3://%s/cli" % BUCKET, "-o", str(out)]) == 0
    (manifest, blobs), = read_page(out.read_text(encoding="utf-8"))
    assert [(st["run"], st["tag"], st["step"]) for st in manifest["steps"]] == [("run", "probe", 4)]
    off, n = manifest["steps"][0]["attention"]["self"]
    assert blobs[off:off + n] == stored(written[4].kind("self").attention).tobytes()
    assert cli.main(["html", "s3://no-such-bucket/cli", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "s3://no-such-bucket/cli: no such bucket" in err and "Traceback" not in err, err


def test_summary_writer_shares_its_s3_event_file(s3):
    """AttentionWriter(summary_writer) on s3://: attention and scalars in the
    SummaryWriter's one event file. torch's SummaryWriter opens its file
    through TensorBoard's S3 layer itself, which reads S3_ENDPOINT when
    TensorBoard is imported: the test gives it the server's first (as a
    user sets the variable before importing)."""
    from tensorboard.util import tensor_util
    from torch.utils.tensorboard import SummaryWriter
    from tb_attention import files
    from tests.support.backends import python_loader
    files.prepare_tensorboard_layer("s3://%s" % BUCKET)
    sw = SummaryWriter("s3://%s/shared/run" % BUCKET)
    rng = np.random.default_rng(6)
    written = {}
    with tb_attention.AttentionWriter(sw) as w:
        for step in range(3):
            sw.add_scalar("loss", 1.0 / (step + 1), step)
            written[step] = self_record(rng, 2, 2, tokens(4))
            w.add_attention("probe", written[step], global_step=step)
    sw.close()
    keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket=BUCKET, Prefix="shared/")["Contents"]]
    assert len([k for k in keys if "tfevents" in k]) == 1, keys
    _assert_loaded(tb_attention.load("s3://%s/shared" % BUCKET), "run", written)
    mux, _ = python_loader("s3://%s/shared" % BUCKET)
    assert sorted(mux.Runs()["run"]["tensors"]) == ["loss", "probe"]
    losses = [float(tensor_util.make_ndarray(e.tensor_proto)) for e in mux.Tensors("run", "loss")]
    assert losses == pytest.approx([1.0, 0.5, 1.0 / 3])


@pytest.fixture(scope="module")
def s3_board(s3, tensorboard_factory):
    """TensorBoard on an s3:// logdir while a run is written: step 0 flushed
    before it starts, step 7 uploaded (the event file rewritten whole) while
    it watches."""
    rng = np.random.default_rng(4)
    written = {step: self_record(rng, 2, 2, tokens(12)) for step in (0, 7)}
    w = tb_attention.AttentionWriter("s3://%s/board/run1" % BUCKET)
    w.add_attention("probe", written[0], global_step=0)
    w.flush()
    # --load_fast=auto (TensorBoard's default) picks the Python loader for s3://:
    # the Rust data server cannot read it ("unknown protocol")
    board = tensorboard_factory("s3://%s/board" % BUCKET, load_fast="auto")
    board.wait_kept({"run1": ("probe", 1)}, timeout=120)
    w.add_attention("probe", written[7], global_step=7)
    w.close()
    board.wait_kept({"run1": ("probe", 2)}, timeout=120)
    return board, written


def test_plugin_serves_s3_under_the_python_loader(s3_board):
    board, written = s3_board
    assert list(board.attention_tags()) == ["run1"]
    assert board.attention_tags()["run1"]["probe"]["steps"] == [0, 7]
    for step, record in written.items():
        expected = stored(record.kind("self").attention)
        for layer in range(2):
            q = urllib.parse.urlencode(dict(run="run1", tag="probe", step=step, kind="self", layer=layer))
            status, headers, body = board.get("/data/plugin/attention/attention?" + q)
            assert status == 200, body[:300]
            assert headers["X-Attention-Shape"] == "2,12,12"
            assert body == expected[layer].tobytes()


def test_dashboard_draws_a_step_from_s3(s3_board, browser):
    board, _ = s3_board
    with watched_page(browser, viewport={"width": 1200, "height": 800}) as page:
        frame = open_dashboard(page, board, run="run1", tag="probe", step=7, layer=1)
        assert frame.locator("canvas").count() >= 1
        save_screenshot(page, "remote-s3-step")
        assert page.watch.errors == [] and page.watch.dialogs == []


def test_plugin_serves_memory_url_in_process():
    """memory:// lives in one process: TensorBoard's WSGI app and Python
    loader in this one serve it (a `tensorboard` subprocess cannot see it)."""
    from tests.support.backends import WsgiBackend, url
    written = _log_steps("memory://tba-test/wsgi/r", [2], seed=5, T=4)
    backend = WsgiBackend("memory://tba-test/wsgi")
    for layer in range(2):
        r = backend.get(url("attention", run="r", tag="probe", step=2, kind="self", layer=layer))
        assert r.status == 200, r
        assert r.body == stored(written[2].kind("self").attention)[layer].tobytes()


def test_rust_data_server_refuses_s3():
    """What docs/limitations.md says: --load_fast=true (the Rust data server)
    cannot read s3://; TensorBoard exits naming it (auto picks the Python loader)."""
    cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", "s3://%s/board" % BUCKET,
           "--port", "0", "--host", "127.0.0.1", "--load_fast", "true"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert 'unknown protocol "s3"' in out.stdout + out.stderr, out.stdout + out.stderr
