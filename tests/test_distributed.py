"""Probe under torch.distributed, 2 processes on CPU (gloo): DDP (rank 0
alone runs the probe), FSDP2 `fully_shard` (every rank runs the collective
forward pass, rank 0 alone writes) and DDP forced with sharded=True; once
from one `torchrun --nproc_per_node 2` and once across two "nodes", two
`torchrun --nnodes 2 --node_rank 0/1` on 127.0.0.1. The worker is
tests/support/dist_worker.py; each launch is shared by the assertions.

What is written is checked against an oracle: the same model unsharded in
this process (the weights rank 0 saved at each probed step), its attention
from transformers' own eager forward pass.
"""
import glob
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers

import tb_attention
from conftest import REPO, free_port
from tests.models import tiny_model
from tests.support import dist_worker as worker

TIMEOUT = 180  # seconds a launch may take before its process groups are killed
SETUPS = worker.SETUPS
PROBED = [s for s in range(worker.STEPS) if s % worker.EVERY == 0]


def _launch(commands, work):
    """Run the torchrun commands side by side, each in its own session; on a
    timeout kill every process group and fail with the children's output."""
    env = dict(os.environ, REPO=REPO, OUT=str(work), LOGDIR=str(work / "logs"), OMP_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)
    procs = [subprocess.Popen(cmd, env=env, cwd=str(work), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True) for cmd in commands]
    outputs, hung = [], False
    for p in procs:
        try:
            out, _ = p.communicate(timeout=TIMEOUT if not hung else 5)
        except subprocess.TimeoutExpired:
            hung = True
            for q in procs:
                _kill_tree(q)
            out, _ = p.communicate()
        outputs.append(out.decode(errors="replace"))
    text = "\n".join("--- launch %d ---\n%s" % (i, o[-4000:]) for i, o in enumerate(outputs))
    if hung:
        pytest.fail("torchrun did not finish within %d s (killed):\n%s" % (TIMEOUT, text))
    assert [p.returncode for p in procs] == [0] * len(procs), text
    return [json.loads((work / ("rank%d.json" % r)).read_text()) for r in range(2)]


def _kill_tree(proc):
    """SIGKILL a launch and everything under it. torchrun starts each worker
    in a session of its own, so killing torchrun's process group left the
    workers running, holding the output pipe open: communicate() then waited
    for them forever."""
    import psutil
    try:
        tree = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        tree = []
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for child in tree:
        try:
            child.kill()
        except psutil.Error:
            pass


def _torchrun():
    return [os.path.join(os.path.dirname(sys.executable), "torchrun")]


@pytest.fixture(scope="module")
def one_node(tmp_path_factory):
    work = tmp_path_factory.mktemp("one_node")
    cmd = _torchrun() + ["--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                         "--master_port", str(free_port()), worker.__file__]
    return work, _launch([cmd], work)


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    work = tmp_path_factory.mktemp("two_nodes")
    port = str(free_port())
    cmds = [_torchrun() + ["--nnodes", "2", "--node_rank", str(n), "--nproc_per_node", "1",
                           "--master_addr", "127.0.0.1", "--master_port", port, worker.__file__]
            for n in range(2)]
    return work, _launch(cmds, work)


@pytest.fixture(params=["one_node", "two_nodes"])
def launch(request):
    return request.getfixturevalue(request.param)


def test_who_runs_the_probe(launch):
    _, (r0, r1) = launch
    assert r0["world_size"] == r1["world_size"] == 2
    for setup in SETUPS:
        a, b = r0["setups"][setup], r1["setups"][setup]
        probed = [s in PROBED for s in range(worker.STEPS)]
        assert a["logged"] == probed and a["opened_writer"], setup
        assert b["logged"] == [False] * worker.STEPS and not b["opened_writer"], setup
        assert [n > 0 for n in a["forwards"]] == probed, setup
        # rank 1 joins the forward pass exactly when the model is sharded (or forced)
        joins = setup != "ddp"  # fsdp, fsdp_llama, ddp_forced
        assert [n > 0 for n in b["forwards"]] == [p and joins for p in probed], setup
        fsdp = setup.startswith("fsdp")
        assert a["sharded"] == b["sharded"] == fsdp, setup
        assert a["resharded"] == b["resharded"] == [fsdp] * worker.STEPS, setup
        assert a["replicas_equal"] and b["replicas_equal"], setup


def test_the_probe_leaves_training_as_it_was(launch):
    _, ranks = launch
    for r in ranks:
        for setup in SETUPS:
            s = r["setups"][setup]
            assert len(s["losses"]) == worker.STEPS
            assert s["losses"] == s["losses_without_probe"], setup  # bit for bit (float.hex)
            assert len(set(s["losses"])) > 1  # the model trained


def _oracle(setup, weights, tok):
    """(attention [L, H, T, T], {"queries", "keys": [L, H, T, D]}) of the
    unsharded model: transformers' eager attention and, for BERT, its q/k
    projections (LLaMA's are rotated after them: checked by the attention
    they recompute)."""
    if setup == "fsdp_llama":
        model, _ = tiny_model("llama", model_class=transformers.LlamaForCausalLM)
        inputs = {"input_ids": torch.tensor([worker.LLAMA_IDS])}
    else:
        model, _ = tiny_model("bert", model_class=transformers.BertForMaskedLM)
        inputs = tok(worker.TEXT, return_tensors="pt")
    model.load_state_dict(weights)
    model.set_attn_implementation("eager")
    heads = model.config.num_attention_heads
    projections = {"queries": [], "keys": []}
    for layer in model.bert.encoder.layer if setup != "fsdp_llama" else ():
        for name, seen in projections.items():
            getattr(layer.attention.self, {"queries": "query", "keys": "key"}[name]).register_forward_hook(
                lambda m, i, out, seen=seen: seen.append(out[0].view(out.shape[1], heads, -1).transpose(0, 1)))
    with torch.no_grad():
        out = model(**inputs, output_attentions=True)
    return (np.stack([a[0].numpy() for a in out.attentions]),
            {n: torch.stack(seen).numpy() for n, seen in projections.items() if seen})


def test_rank_zero_writes_the_oracles_attention(launch):
    work, _ = launch
    logdir = work / "logs"
    assert sorted(os.listdir(logdir)) == sorted(SETUPS)
    log = tb_attention.load(str(logdir))
    _, tok = tiny_model("bert")
    for setup in SETUPS:
        assert len(glob.glob(str(logdir / setup / "events.out.tfevents.*"))) == 1  # rank 0's only
        assert log.steps(setup, "probe/cat") == PROBED
        for step in PROBED:
            attention, projections = _oracle(setup, torch.load(str(work / ("%s-%d.pt" % (setup, step)))), tok)
            rec = log.get(setup, "probe/cat", step)
            what = "%s step %d" % (setup, step)
            got = rec.attention()
            assert got.shape == attention.shape
            # uint8 storage: within half a step of 1/255
            np.testing.assert_allclose(got, attention, atol=0.5 / 255 + 1e-6, err_msg=what)
            np.testing.assert_allclose(rec.recompute_attention(), attention, atol=2e-3, err_msg=what)
            neurons = rec.neurons()
            for name, want in projections.items():
                got = getattr(neurons, name)
                assert got.shape == want.shape, (what, name)
                np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3 * np.abs(want).max(),
                                           err_msg="%s %s" % (what, name))
        assert (setup == "fsdp_llama") != bool(projections)
    # the weights moved between probes, so the steps' attention differs
    first, last = (log.get("fsdp", "probe/cat", s).attention() for s in (PROBED[0], PROBED[-1]))
    assert np.abs(first - last).max() > 0.01


def test_sharded_argument_and_detection_without_a_process_group(tmp_path):
    model, tok = tiny_model("bert")
    with pytest.raises(ValueError, match="sharded must be None"):
        tb_attention.Probe(model, tok, ["the cat"], str(tmp_path), sharded="yes")
    from tb_attention.integrations.transformers import AttentionCallback

    with pytest.raises(ValueError, match="sharded must be None"):
        AttentionCallback(["the cat"], sharded=1)
    assert not torch.distributed.is_initialized()
    assert not tb_attention.probe.is_sharded(model)  # no process group: nothing is collective


@pytest.fixture(scope="module")
def lightning_fsdp2(tmp_path_factory):
    from tests.support import lightning_worker

    work = tmp_path_factory.mktemp("lightning_fsdp2")
    cmd = _torchrun() + ["--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                         "--master_port", str(free_port()), lightning_worker.__file__]
    return work, _launch([cmd], work), lightning_worker


def test_lightning_callback_under_fsdp2_every_rank_runs_the_probe(lightning_fsdp2):
    """lightning.Trainer with ModelParallelStrategy (fully_shard in
    configure_model): the callback used to run the probe on global rank zero
    alone, whose forward pass then waited for the other rank forever."""
    work, (r0, r1), lw = lightning_fsdp2
    probed = list(range(0, lw.STEPS + 1, lw.EVERY))  # start, every EVERY steps, end
    training = list(range(lw.STEPS))
    for r in (r0, r1):  # one forward per training step plus one per probe, on both ranks
        assert sorted(r["forwards"]) == sorted(training + probed), r
    assert r0["logged"] == probed and r1["logged"] == []
    run_dir = work / "logs" / "lightning_fsdp2" / "v0"
    assert len(glob.glob(str(run_dir / "events.out.tfevents.*"))) == 1
    log = tb_attention.load(str(work / "logs"))
    assert log.steps("lightning_fsdp2/v0", "probe/cat") == probed
    # step 0 is probed before training: the oracle is the freshly built model, unsharded
    model, tok = tiny_model("bert", model_class=transformers.BertForMaskedLM)
    model.set_attn_implementation("eager")
    with torch.no_grad():
        want = torch.stack(model(**tok("the cat sat on the mat", return_tensors="pt"),
                                 output_attentions=True).attentions)[:, 0].numpy()
    got = log.get("lightning_fsdp2/v0", "probe/cat", 0).attention()
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 0.5 / 255 + 1e-6


def test_a_hung_launch_is_killed_whole_and_fails(tmp_path, monkeypatch):
    """The hang guard itself: workers that never finish are killed, torchrun's
    and their own sessions alike, and the test fails with their output
    instead of waiting forever."""
    import psutil

    hang = tmp_path / "hang_worker.py"
    hang.write_text("import time\nprint('worker up', flush=True)\ntime.sleep(600)\n")
    monkeypatch.setattr(sys.modules[__name__], "TIMEOUT", 5)
    cmd = _torchrun() + ["--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                         "--master_port", str(free_port()), str(hang)]
    with pytest.raises(pytest.fail.Exception, match="did not finish within 5 s"):
        _launch([cmd], tmp_path)
    left = [p for p in psutil.process_iter(["cmdline"]) if str(hang) in " ".join(p.info["cmdline"] or [])]
    assert left == []
