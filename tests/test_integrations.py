"""The ways people log, each run for real into one logdir: a PyTorch
Lightning fit with its TensorBoardLogger, the transformers Trainer under
`accelerate launch` with 2 processes (CPU, gloo) and with a tensorboardX
writer, a training loop over a TransformerLens model with torch's
SummaryWriter, a loop with tensorboardX's SummaryWriter, and
tb_attention.summary.pb logged by torch's and tensorboardX's own
`file_writer.add_summary`. Each run must be ONE event
file holding the framework's scalars and the attention, and both must come
back through TensorBoard's Python loader and its Rust data server (real
`tensorboard` subprocesses).
"""
import glob
import json
import os
import subprocess
import sys
import textwrap
import urllib.parse

import pytest
import torch
import transformers

import tb_attention
from conftest import REPO, free_port, wait_until
from tests.models import tiny_model

TEXTS = {"cat": "the cat sat on the mat"}


def event_files(directory):
    return sorted(glob.glob(os.path.join(str(directory), "events.out.tfevents.*")))


@pytest.fixture(scope="module")
def logroot(tmp_path_factory):
    return tmp_path_factory.mktemp("integrations")


# ---------------------------------------------------------------------------
# PyTorch Lightning

lightning = pytest.importorskip("lightning")


class _LitMLM(lightning.LightningModule):
    def __init__(self):
        super().__init__()
        self.bert, self.tokenizer = tiny_model("bert", model_class=transformers.BertForMaskedLM)
        self.bert.train()

    def training_step(self, batch, batch_idx):
        loss = self.bert(input_ids=batch, labels=batch).loss
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


LIGHTNING_STEPS = 6


@pytest.fixture(scope="module")
def lightning_run(logroot):
    from lightning.pytorch.loggers import TensorBoardLogger

    from tb_attention.integrations.lightning import AttentionCallback

    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.DataLoader([torch.randint(5, 99, (12,), generator=g) for _ in range(32)],
                                       batch_size=4)
    logger = TensorBoardLogger(str(logroot), name="lightning", version="v0")
    callback = AttentionCallback(TEXTS)
    torch.manual_seed(0)
    trainer = lightning.Trainer(
        max_steps=LIGHTNING_STEPS, log_every_n_steps=2, logger=logger, callbacks=[callback],
        accelerator="cpu", devices=1, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False)
    module = _LitMLM()
    trainer.fit(module, data)
    return {"trainer": trainer, "callback": callback, "logger": logger, "module": module}


def test_lightning_logs_into_the_loggers_run(lightning_run, logroot):
    callback, logger = lightning_run["callback"], lightning_run["logger"]
    run_dir = os.path.join(str(logroot), "lightning", "v0")
    assert callback.logdir == logger.log_dir == run_dir
    assert len(event_files(run_dir)) == 1
    assert callback.logged_steps == [0, 2, 4, 6]  # start, every log_every_n_steps, end (= step 6)
    log = tb_attention.load(str(logroot))
    assert log.steps("lightning/v0", "probe/cat") == [0, 2, 4, 6]
    rec = log.get("lightning/v0", "probe/cat", 6)
    assert rec.model_type == "bert" and rec.tokens()[0][:3] == ("[CLS]", "the", "cat")
    assert lightning_run["module"].bert.training  # the probe put the training mode back


def test_lightning_callback_arguments(tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    from tb_attention.integrations.lightning import AttentionCallback

    with pytest.raises(ValueError, match="every_n_steps"):
        AttentionCallback(TEXTS, every_n_steps=0)

    class Plain(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 2)

        def training_step(self, batch, batch_idx):
            return self.layer(batch).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = lightning.Trainer(max_steps=1, logger=CSVLogger(str(tmp_path)), callbacks=[AttentionCallback(TEXTS)],
                                accelerator="cpu", devices=1, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(ValueError, match="no transformers or TransformerLens model in Plain: pass model="):
        trainer.fit(Plain(), torch.utils.data.DataLoader([torch.ones(2)] * 4))
    # Another logger than TensorBoard's: an event file of our own in its log_dir.
    bert, tok = tiny_model("bert")
    module = Plain()
    module.encoder = bert
    callback = AttentionCallback(TEXTS, tokenizer=tok, model="encoder", log_at_start=False)
    trainer = lightning.Trainer(max_steps=2, logger=CSVLogger(str(tmp_path), name="csv"), callbacks=[callback],
                                accelerator="cpu", devices=1, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, torch.utils.data.DataLoader([torch.ones(2)] * 4))
    assert callback.logdir == trainer.log_dir and len(event_files(callback.logdir)) == 1
    assert callback.logged_steps == [2]


def test_lightning_run_that_fails_keeps_what_was_logged(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger

    from tb_attention.integrations.lightning import AttentionCallback

    class Failing(_LitMLM):
        def training_step(self, batch, batch_idx):
            if batch_idx == 3:
                raise RuntimeError("diverged")
            return super().training_step(batch, batch_idx)

    logger = TensorBoardLogger(str(tmp_path), name="failing", version="v0")
    trainer = lightning.Trainer(max_steps=10, log_every_n_steps=2, logger=logger,
                                callbacks=[AttentionCallback(TEXTS)], accelerator="cpu", devices=1,
                                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    data = torch.utils.data.DataLoader([torch.randint(5, 99, (12,)) for _ in range(32)], batch_size=4)
    with pytest.raises(RuntimeError, match="diverged"):
        trainer.fit(Failing(), data)
    import gc

    gc.collect()  # a writer left open would flush (and reopen a file) when collected or at exit
    tb_attention.writer._close_all_at_exit()
    assert len(event_files(logger.log_dir)) == 1
    assert tb_attention.load(str(tmp_path)).steps("failing/v0", "probe/cat") == [0, 2]


# ---------------------------------------------------------------------------
# transformers Trainer under accelerate launch, 2 processes

ACCELERATE_WORKER = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, os.environ["REPO"])
    import numpy as np, torch, transformers
    from tests.models import tiny_model
    from tb_attention.integrations.transformers import AttentionCallback

    torch.set_num_threads(1)
    g = np.random.default_rng(0)
    texts = [" ".join(g.choice(["the", "cat", "dog", "sat", "on", "mat"], size=8)) for _ in range(16)]
    results = {}
    # the second run forces sharded=True: every process runs the probe's
    # forward pass (as under FSDP2, which accelerate does not run on CPU)
    for run, sharded in (("trainer_ddp", None), ("trainer_ddp_forced", True)):
        os.environ["TENSORBOARD_LOGGING_DIR"] = os.path.join(os.environ["LOGROOT"], run)
        model, tok = tiny_model("bert", model_class=transformers.BertForMaskedLM)
        forwards = []  # forward passes of the model on this process (training and probes)
        model.bert.register_forward_hook(lambda *_: forwards.append(1))
        data = [dict(input_ids=e, labels=e.clone()) for e in
                (tok(t, padding="max_length", max_length=12, return_tensors="pt")["input_ids"][0] for t in texts)]
        args = transformers.TrainingArguments(
            output_dir=os.environ["OUT"], max_steps=4, per_device_train_batch_size=2, logging_steps=2,
            report_to=["tensorboard"], save_strategy="no", use_cpu=True, disable_tqdm=True, seed=0,
            ddp_backend="gloo")
        trainer = transformers.Trainer(model=model, args=args, train_dataset=data, processing_class=tok)
        callback = AttentionCallback({"cat": "the cat sat on the mat"}, trainer=trainer, sharded=sharded)
        trainer.add_callback(callback)
        trainer.train()
        results[run] = {"world_size": trainer.args.world_size, "logged": callback.logged_steps,
                        "logdir": callback.logdir, "zero": trainer.state.is_world_process_zero,
                        "forwards": len(forwards)}
        trainer.accelerator.wait_for_everyone()
    # Tear down in lockstep (a rank leaving while the other's gloo threads
    # still talk to it can abort in C++ at exit).
    torch.distributed.destroy_process_group()
    with open(os.path.join(os.environ["OUT"], "rank%d.json" % trainer.args.process_index), "w") as f:
        json.dump(results, f)
""")


@pytest.fixture(scope="module")
def accelerate_run(logroot, tmp_path_factory):
    work = tmp_path_factory.mktemp("accelerate")
    script = work / "worker.py"
    script.write_text(ACCELERATE_WORKER)
    env = dict(os.environ, REPO=REPO, OUT=str(work), OMP_NUM_THREADS="1", LOGROOT=str(logroot))
    env.pop("PYTHONPATH", None)
    cmd = [os.path.join(os.path.dirname(sys.executable), "accelerate"), "launch", "--multi_gpu",
           "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--main_process_port", str(free_port()), str(script)]
    # its own session, so a hang is killed with every worker it started
    proc = subprocess.Popen(cmd, env=env, cwd=str(work), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.communicate()
        raise
    assert proc.returncode == 0, out.decode(errors="replace")[-4000:]
    return [json.loads((work / ("rank%d.json" % r)).read_text()) for r in range(2)]


def test_trainer_under_accelerate_launch_two_processes(accelerate_run, logroot):
    r0, r1 = (r["trainer_ddp"] for r in accelerate_run)
    assert r0["world_size"] == r1["world_size"] == 2 and r0["zero"] and not r1["zero"]
    assert r0["logged"] == [0, 2, 4] and r0["logdir"] == str(logroot / "trainer_ddp")
    assert r1["logged"] == [] and r1["logdir"] is None  # rank 1 never opened anything
    assert (r0["forwards"], r1["forwards"]) == (4 + 3, 4)  # 4 training steps; the probes on rank 0 alone
    assert len(event_files(logroot / "trainer_ddp")) == 1
    assert tb_attention.load(str(logroot)).steps("trainer_ddp", "probe/cat") == [0, 2, 4]


def test_trainer_sharded_every_process_runs_the_probe(accelerate_run, logroot):
    r0, r1 = (r["trainer_ddp_forced"] for r in accelerate_run)
    assert r0["logged"] == [0, 2, 4] and r0["logdir"] == str(logroot / "trainer_ddp_forced")
    assert r1["logged"] == [] and r1["logdir"] is None  # rank 1 ran the probes, wrote nothing
    assert r0["forwards"] == r1["forwards"] == 4 + 3
    assert len(event_files(logroot / "trainer_ddp_forced")) == 1
    assert tb_attention.load(str(logroot)).steps("trainer_ddp_forced", "probe/cat") == [0, 2, 4]


# ---------------------------------------------------------------------------
# A TransformerLens model in a plain loop, with torch's SummaryWriter


@pytest.fixture(scope="module")
def lens_run(logroot):
    pytest.importorskip("transformer_lens")
    from torch.utils.tensorboard import SummaryWriter
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    import transformer_lens.model_bridge.sources  # noqa: F401  (attaches boot_native)

    bridge = TransformerBridge.boot_native(TransformerBridgeConfig(
        d_model=32, n_layers=2, n_ctx=16, d_head=8, n_heads=4, d_vocab=99, act_fn="gelu", seed=0))
    sw = SummaryWriter(str(logroot / "lens"))
    opt = torch.optim.SGD(bridge.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(0)
    with tb_attention.Probe(bridge, None, {"ids": [2, 36, 37, 39, 40, 36, 41]}, sw, every_n_steps=2) as probe:
        for step in range(5):
            loss = bridge(torch.randint(5, 99, (4, 12), generator=g), return_type="loss")
            loss.backward()
            opt.step()
            opt.zero_grad()
            sw.add_scalar("loss", loss.item(), step)
            probe.maybe_log(step)
    sw.close()
    return probe


def test_transformer_lens_run(lens_run, logroot):
    assert len(event_files(logroot / "lens")) == 1
    assert tb_attention.load(str(logroot)).steps("lens", "probe/ids") == [0, 2, 4]


# ---------------------------------------------------------------------------
# tensorboardX, and summary.pb through other writers' add_summary


@pytest.fixture(scope="module")
def tbx_runs(logroot):
    tensorboardX = pytest.importorskip("tensorboardX")
    from tensorboardX.proto import summary_pb2 as tbx_summary_pb2
    from torch.utils.tensorboard import SummaryWriter

    from tb_attention import summary

    model, tok = tiny_model("bert")
    probe = tok(TEXTS["cat"], return_tensors="pt")
    # AttentionWriter into tensorboardX's SummaryWriter
    sw = tensorboardX.SummaryWriter(str(logroot / "tbx"))
    writer = tb_attention.AttentionWriter(sw)
    for step in range(4):
        sw.add_scalar("loss", 1.0 / (step + 1), step)
        if step % 2 == 0:
            writer.add_attention("probe/cat", tb_attention.capture(model, probe, tokenizer=tok), global_step=step)
    writer.close()  # flushes; the SummaryWriter is the user's
    sw.close()
    # summary.pb through the writers' own add_summary
    record = tb_attention.capture(model, probe, tokenizer=tok)
    torch_sw = SummaryWriter(str(logroot / "pb_torch"))
    tbx_sw = tensorboardX.SummaryWriter(str(logroot / "pb_tbx"))
    for step in (0, 2):
        torch_sw.add_scalar("loss", 1.0, step)
        torch_sw.file_writer.add_summary(summary.pb("probe/cat", record), global_step=step)
        tbx_sw.add_scalar("loss", 1.0, step)
        # tensorboardX's add_summary takes its own generated Summary class
        pb = tbx_summary_pb2.Summary.FromString(summary.pb("probe/cat", record).SerializeToString())
        tbx_sw.file_writer.add_summary(pb, global_step=step)
    torch_sw.close()
    tbx_sw.close()
    return record


def test_tensorboardx_and_summary_pb_runs(tbx_runs, logroot):
    log = tb_attention.load(str(logroot))
    for run, steps in (("tbx", [0, 2]), ("pb_torch", [0, 2]), ("pb_tbx", [0, 2])):
        assert len(event_files(logroot / run)) == 1, run
        assert log.steps(run, "probe/cat") == steps, run
        assert log.get(run, "probe/cat", 2).tokens() == tbx_runs.tokens()


@pytest.fixture(scope="module")
def trainer_tbx_run(logroot):
    """The Trainer's TensorBoardCallback given a tensorboardX writer: the callback shares it."""
    tensorboardX = pytest.importorskip("tensorboardX")
    from transformers.integrations import TensorBoardCallback

    from tb_attention.integrations.transformers import AttentionCallback

    model, tok = tiny_model("bert", model_class=transformers.BertForMaskedLM)
    data = [dict(input_ids=e, labels=e.clone()) for e in
            (tok("the cat sat on the mat", padding="max_length", max_length=12,
                 return_tensors="pt")["input_ids"][0] for _ in range(12))]
    args = transformers.TrainingArguments(
        output_dir=str(logroot / "trainer_tbx_out"), max_steps=4, per_device_train_batch_size=2,
        logging_steps=2, report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True, seed=0)
    sw = tensorboardX.SummaryWriter(str(logroot / "trainer_tbx"))
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data, processing_class=tok,
                                   callbacks=[TensorBoardCallback(sw)])
    callback = AttentionCallback(TEXTS, trainer=trainer)
    trainer.add_callback(callback)
    trainer.train()
    return callback


def test_trainer_with_a_tensorboardx_writer(trainer_tbx_run, logroot):
    assert trainer_tbx_run.logdir == str(logroot / "trainer_tbx")
    assert len(event_files(logroot / "trainer_tbx")) == 1
    assert tb_attention.load(str(logroot)).steps("trainer_tbx", "probe/cat") == [0, 2, 4]


# ---------------------------------------------------------------------------
# Both TensorBoard loaders

EXPECTED = {  # run: (scalar tag, scalar steps, attention tag, attention steps)
    "lightning/v0": ("train_loss", [1, 3, 5], "probe/cat", [0, 2, 4, 6]),
    "trainer_ddp": ("train/loss", [2, 4], "probe/cat", [0, 2, 4]),
    "trainer_ddp_forced": ("train/loss", [2, 4], "probe/cat", [0, 2, 4]),
    "lens": ("loss", [0, 1, 2, 3, 4], "probe/ids", [0, 2, 4]),
    "tbx": ("loss", [0, 1, 2, 3], "probe/cat", [0, 2]),
    "pb_torch": ("loss", [0, 2], "probe/cat", [0, 2]),
    "pb_tbx": ("loss", [0, 2], "probe/cat", [0, 2]),
    "trainer_tbx": ("train/loss", [2, 4], "probe/cat", [0, 2, 4]),
}


@pytest.mark.parametrize("load_fast", [True, False], ids=["rust", "python"])
def test_scalars_and_attention_survive_both_loaders(load_fast, lightning_run, accelerate_run, lens_run,
                                                    tbx_runs, trainer_tbx_run, logroot, tensorboard_factory):
    tb = tensorboard_factory(logroot, load_fast=load_fast)
    tb.wait_kept({run: (tag, len(steps)) for run, (_, _, tag, steps) in EXPECTED.items()})
    attention = tb.attention_tags()
    for run, (scalar_tag, scalar_steps, tag, steps) in EXPECTED.items():
        assert attention[run][tag]["steps"] == steps, (run, attention[run][tag])
        query = urllib.parse.urlencode({"run": run, "tag": scalar_tag})
        points = wait_until(lambda: tb.get_json("/data/plugin/scalars/scalars?" + query),
                            what="scalars of %s" % run)
        assert [p[1] for p in points] == scalar_steps, (run, points)
