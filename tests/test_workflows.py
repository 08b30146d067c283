"""Training and checkpoint workflows: tb_attention.Probe in a training loop,
under torch.distributed, the transformers Trainer callback, and the
`tb-attention log` command on checkpoints saved by the test.

Models are tiny random ones from tests/models.py; checkpoints are written
here (by a real Trainer and by save_pretrained), never downloaded.
"""
import glob
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
import transformers

import tb_attention
from conftest import REPO, free_port
from tb_attention import cli
from tb_attention.integrations.transformers import AttentionCallback
from tb_attention.probe import Probe, probe_tags
from tb_attention.record import AttentionInputError
from tests.models import tiny_model

TEXTS = ["the cat sat on the mat", "why did the dog run"]
STEPS = 20
EVERY = 5


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models on 2 shared cores: torch's second intra-op thread only
    waits for the first (measured: 20 steps of a tiny GPT-2 in 10 s with 2
    threads under load, 1.5 s with 1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def event_files(directory):
    return sorted(glob.glob(os.path.join(str(directory), "events.out.tfevents.*")))


# ---------------------------------------------------------------------------
# Probe in a plain training loop


def _batches(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(5, 99, (4, 12), generator=g) for _ in range(n)]


def _train(arch, logdir=None, disturb_at=None):
    """Losses of STEPS training steps of a tiny model with dropout 0.1, from a
    fixed seed; with logdir, a Probe logs every EVERY steps."""
    cls = {"gpt2": transformers.GPT2LMHeadModel, "bert": transformers.BertForMaskedLM}[arch]
    model, tok = tiny_model(arch, seed=0, model_class=cls)
    dropouts = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and min(dropouts) > 0, dropouts  # dropout draws from the RNG every step
    model.train()
    impl = model.config._attn_implementation
    texts = TEXTS if tok is not None else [[11, 17, 23, 42, 8, 30], [9, 33, 52, 14]]
    probe = Probe(model, tok, texts, logdir, every_n_steps=EVERY) if logdir else None
    torch.manual_seed(1234)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for step, ids in enumerate(_batches(STEPS)):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.detach().clone())
        if probe is not None:
            assert probe.maybe_log(step) == (step % EVERY == 0)
            # The probe ran in eval mode with its own attention function: all put back.
            assert model.training and all(m.training for m in model.modules())
            assert model.config._attn_implementation == impl
        if step == disturb_at:
            torch.rand(1)  # one extra draw from the global RNG
    if probe is not None:
        probe.close()
    return torch.stack(losses), probe


@pytest.mark.parametrize("arch", ["gpt2", "bert"])
def test_probe_leaves_training_bit_identical(arch, tmp_path):
    plain, _ = _train(arch)
    probed, probe = _train(arch, logdir=str(tmp_path / "run"))
    assert torch.equal(plain, probed), (plain - probed).abs().max()
    # The test has teeth: one extra RNG draw (what an unrestored dropout pass
    # would do) changes the trajectory.
    disturbed, _ = _train(arch, disturb_at=EVERY)
    assert not torch.equal(plain, disturbed)
    assert torch.equal(plain[:EVERY + 1], disturbed[:EVERY + 1])

    log = tb_attention.load(str(tmp_path))
    assert log.tags("run") == sorted(probe.tags) and len(probe.tags) == 2
    for tag in probe.tags:
        assert log.steps("run", tag) == list(range(0, STEPS, EVERY))
        rec = log.get("run", tag, 15)
        assert rec.model_type == arch and rec.attention().shape[:2] == (2, 4)
        stats = log.stats("run", tag)
        assert stats["entropy"].shape == (4, 2, 4) and np.isfinite(stats["entropy"]).all()
    assert probe.logged_steps == [0, 5, 10, 15] and probe.seconds > 0


def test_probe_arguments(tmp_path):
    model, tok = tiny_model("bert")
    assert [t for t, _ in probe_tags(["The cat sat!", "the cat sat", "", [1, 2]])] == [
        "probe/the_cat_sat", "probe/the_cat_sat_2", "probe/text2", "probe/3"]
    assert [t for t, _ in probe_tags({"sink": "a b"}, prefix="x/")] == ["x/sink"]
    with pytest.raises(AttentionInputError, match="no tokenizer"):
        Probe(model, None, ["the cat"], str(tmp_path))
    long_text = " ".join(["cat"] * 70)  # 72 tokens with [CLS] and [SEP]; the model takes 64
    with pytest.raises(AttentionInputError, match=r"72 tokens long; the model takes at most 64 "
                                                  r"\(config.max_position_embeddings\)"):
        Probe(model, tok, ["the cat", long_text], str(tmp_path))
    with pytest.raises(ValueError, match="every_n_steps"):
        Probe(model, tok, TEXTS, str(tmp_path), every_n_steps=0)
    # Nothing was opened by probes that never logged.
    assert not os.listdir(str(tmp_path))

    # Into a torch SummaryWriter's run: one event file with scalars and attention.
    from torch.utils.tensorboard import SummaryWriter

    sw = SummaryWriter(str(tmp_path / "shared"))
    with Probe(model, tok, {"cat": TEXTS[0]}, sw, every_n_steps=2, neurons=True) as probe:
        for step in range(5):
            sw.add_scalar("loss", 1.0 / (step + 1), step)
            probe.maybe_log(step)
    sw.close()
    assert len(event_files(tmp_path / "shared")) == 1
    log = tb_attention.load(str(tmp_path))
    assert log.steps("shared", "probe/cat") == [0, 2, 4]
    assert log.get("shared", "probe/cat", 4).has_neurons


# ---------------------------------------------------------------------------
# torch.distributed: rank 0 logs, the other ranks return at once

WORKER = textwrap.dedent("""
    import json, os, sys
    import torch, torch.distributed as dist
    sys.path.insert(0, os.environ["REPO"])
    from tests.models import tiny_model
    import tb_attention

    rank = int(os.environ["RANK"])
    dist.init_process_group("gloo", rank=rank, world_size=int(os.environ["WORLD_SIZE"]))
    model, tok = tiny_model("bert")
    model.train()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    probe = tb_attention.Probe(ddp, tok, ["the cat sat on the mat"], os.environ["LOGDIR"], every_n_steps=2)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(rank)
    result = {"logged": [], "forwards": []}
    forwards = []  # forward passes of the model (hooked: counted, not timed)
    model.register_forward_hook(lambda *_: forwards.append(1))
    for step in range(5):
        out = ddp(input_ids=torch.randint(5, 99, (2, 8), generator=g))
        (out.last_hidden_state.square().mean() + out.pooler_output.square().mean()).backward()
        opt.step(); opt.zero_grad()
        before = len(forwards)
        result["logged"].append(probe.maybe_log(step))
        result["forwards"].append(len(forwards) - before)
        dist.barrier()
    probe.close()
    result["opened_writer"] = probe._writer is not None
    # DDP kept the replicas in step through all of it.
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    result["replicas_equal"] = all(torch.equal(gathered[0], x) for x in gathered)
    # Tear down in lockstep, then leave without running C++ destructors at
    # exit: gloo's threads still abort there now and then ("terminate called
    # without an active exception", seen twice in CI even after the barrier),
    # which is torch's teardown, not what this test checks. The result file is
    # written and closed first, so a worker that fails before it still fails.
    del ddp, opt
    dist.barrier()
    dist.destroy_process_group()
    with open(os.environ["OUT"], "w") as f:
        json.dump(result, f)
    sys.stdout.flush()
    os._exit(0)
""")


def test_only_rank_zero_logs(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    logdir = tmp_path / "logs"
    port = free_port()
    procs = []
    for rank in range(2):
        env = dict(os.environ, REPO=REPO, PYTHONPATH=REPO, RANK=str(rank), WORLD_SIZE="2",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LOGDIR=str(logdir / "run"),
                   OUT=str(tmp_path / ("rank%d.json" % rank)), OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT))
    outputs = []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        outputs.append(out.decode(errors="replace"))
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    r0, r1 = (json.loads((tmp_path / ("rank%d.json" % r)).read_text()) for r in range(2))
    assert r0["logged"] == [True, False, True, False, True] and r0["opened_writer"]
    assert r1["logged"] == [False] * 5 and not r1["opened_writer"]
    assert r1["forwards"] == [0] * 5  # rank 1 returned at once: no forward pass
    assert [n > 0 for n in r0["forwards"]] == r0["logged"]  # the hook sees the probe's passes
    assert r0["replicas_equal"] and r1["replicas_equal"]
    assert len(event_files(logdir / "run")) == 1  # rank 0's only
    log = tb_attention.load(str(logdir))
    assert log.steps("run", "probe/the_cat_sat_on_the_mat") == [0, 2, 4]


# ---------------------------------------------------------------------------
# The transformers Trainer

TRAIN_STEPS = 32
CALLBACK_EVERY = 10


class _Dataset(torch.utils.data.Dataset):
    def __init__(self, tok, n=64):
        words = ["the", "cat", "dog", "sat", "on", "mat", "ran", "home", "big", "red", "bird"]
        g = np.random.default_rng(0)
        self.items = []
        for _ in range(n):
            text = " ".join(g.choice(words, size=8))
            enc = tok(text, padding="max_length", max_length=12, return_tensors="pt")
            ids = enc["input_ids"][0]
            self.items.append({"input_ids": ids, "attention_mask": enc["attention_mask"][0],
                               "labels": ids.clone()})

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real Trainer run: tiny BERT MLM, TRAIN_STEPS steps, report_to tensorboard,
    checkpoints at 16 and 32 (with the tokenizer), AttentionCallback every 10."""
    root = tmp_path_factory.mktemp("trainer")
    out, tb = root / "out", root / "tb"
    model, tok = tiny_model("bert", model_class=transformers.BertForMaskedLM)
    model.train()
    args = transformers.TrainingArguments(
        output_dir=str(out), max_steps=TRAIN_STEPS, per_device_train_batch_size=4, learning_rate=1e-3,
        logging_steps=4, save_strategy="steps", save_steps=16, report_to=["tensorboard"],
        use_cpu=True, disable_tqdm=True, dataloader_num_workers=0, seed=0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TENSORBOARD_LOGGING_DIR", str(tb))
        trainer = transformers.Trainer(model=model, args=args, train_dataset=_Dataset(tok),
                                       processing_class=tok)
        callback = AttentionCallback(TEXTS, trainer=trainer, every_n_steps=CALLBACK_EVERY)
        trainer.add_callback(callback)
        trainer.train()
    return {"root": root, "out": out, "tb": tb, "trainer": trainer, "callback": callback, "tok": tok}


def test_trainer_callback_logs_into_the_trainers_run(trained):
    tb, callback, trainer = trained["tb"], trained["callback"], trained["trainer"]
    assert callback.logdir == str(tb)
    files = event_files(tb)
    assert len(files) == 1, files  # the TensorBoardCallback's own file: one run, one file
    # Scalars of the Trainer and attention in that one file.
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    scalar_steps = [e.step for e in EventFileLoader(files[0]).Load()
                    for v in e.summary.value if v.tag == "train/loss"]
    assert scalar_steps == list(range(4, TRAIN_STEPS + 1, 4))
    log = tb_attention.load(str(tb))
    assert log.runs() == ["."]
    tags = [t for t, _ in probe_tags(TEXTS)]
    assert log.tags(".") == sorted(tags)
    for tag in tags:
        # before training, every 10 steps, and the last step
        assert log.steps(".", tag) == [0, 10, 20, 30, TRAIN_STEPS]
        record = log.get(".", tag, TRAIN_STEPS)
        assert record.model_type == "bert" and record.tokens()[0][0] == "[CLS]"
        assert record.kind().key_special == (0, len(record.tokens()[0]) - 1)
        stats = log.stats(".", tag)
        assert np.isfinite(stats["special_tokens"]).all()
        # step 0 is the untrained model: the weights moved since
        assert not np.array_equal(log.get(".", tag, 0).attention(), record.attention())
    # Public API only: the callback list is the Trainer's own order.
    names = [type(c).__name__ for c in trainer.callback_handler.callbacks]
    assert names.index("TensorBoardCallback") < names.index("AttentionCallback")
    assert callback.logged_steps == [0, 10, 20, 30, TRAIN_STEPS]


def test_trainer_callback_without_tensorboard(tmp_path):
    """report_to none: its own run; every_n_steps defaults to logging_steps."""
    model, tok = tiny_model("bert", model_class=transformers.BertForMaskedLM)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=7, per_device_train_batch_size=4, logging_steps=3,
        report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True, seed=0)
    callback = AttentionCallback({"cat": TEXTS[0]})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))
        transformers.Trainer(model=model, args=args, train_dataset=_Dataset(tok, 32),
                             processing_class=tok, callbacks=[callback]).train()
    assert callback.logdir == str(tmp_path / "tb")
    assert len(event_files(tmp_path / "tb")) == 1
    assert tb_attention.load(str(tmp_path / "tb")).steps(".", "probe/cat") == [0, 3, 6, 7]
    # Without TENSORBOARD_LOGGING_DIR: where the TensorBoardCallback would write.
    callback = AttentionCallback({"cat": TEXTS[0]}, every_n_steps=5, log_at_start=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
        transformers.Trainer(model=model, args=args, train_dataset=_Dataset(tok, 32),
                             processing_class=tok, callbacks=[callback]).train()
    runs = os.listdir(str(tmp_path / "out" / "runs"))
    assert len(runs) == 1 and callback.logdir == str(tmp_path / "out" / "runs" / runs[0])
    assert tb_attention.load(str(tmp_path / "out" / "runs")).steps(runs[0], "probe/cat") == [5, 7]


def test_trainer_callback_needs_the_trainer_for_its_tensorboard_run(tmp_path):
    model, tok = tiny_model("bert", model_class=transformers.BertForMaskedLM)
    args = transformers.TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=2,
                                          report_to=["tensorboard"], use_cpu=True)
    with pytest.raises(ValueError, match=r"trainer.add_callback\(AttentionCallback\(texts, trainer=trainer\)\)"):
        transformers.Trainer(model=model, args=args, train_dataset=_Dataset(tok, 8),
                             callbacks=[AttentionCallback(TEXTS)])
    with pytest.raises(ValueError, match="every_n_steps"):
        AttentionCallback(TEXTS, every_n_steps=0)
    with pytest.raises(TypeError, match="trainer must be a transformers Trainer"):
        AttentionCallback(TEXTS, trainer="out")
    assert not os.path.exists(str(tmp_path / "out" / "runs"))


# ---------------------------------------------------------------------------
# tb-attention log


def test_cli_logs_trainer_checkpoints(trained, tmp_path, capsys):
    out = trained["out"]
    ckpts = [str(out / "checkpoint-32"), str(out / "checkpoint-16")]
    assert all(os.path.isfile(os.path.join(c, "tokenizer_config.json")) for c in ckpts)
    args = ["log", *ckpts, "--logdir", str(tmp_path)]
    for t in TEXTS:
        args += ["--text", t]
    assert cli.main(args) == 0
    assert "logged 2 checkpoints x 2 texts" in capsys.readouterr().err
    log = tb_attention.load(str(tmp_path))
    assert log.runs() == ["out"]  # the folder holding the checkpoint-N folders
    trainer_log = tb_attention.load(str(trained["tb"]))
    for tag in trainer_log.tags("."):
        assert log.steps("out", tag) == [16, 32]
        # The checkpoint saved at step 32 is the model the callback probed at
        # step 32: the same tag names, tokens and stored weights.
        a, b = log.get("out", tag, 32), trainer_log.get(".", tag, TRAIN_STEPS)
        assert a.tokens() == b.tokens()
        np.testing.assert_array_equal(a.attention(), b.attention())
        assert not np.array_equal(log.get("out", tag, 16).attention(), a.attention())


def _save(model, tok, path):
    model.save_pretrained(str(path))
    if tok is not None:
        tok.save_pretrained(str(path))
    return str(path)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Two tiny BERTs (seeds 0 and 1) with their tokenizer, and a GPT-2 without one."""
    root = tmp_path_factory.mktemp("saved")
    m0, tok = tiny_model("bert", seed=0)
    m1, _ = tiny_model("bert", seed=1)
    g, _ = tiny_model("gpt2")
    return {"a": _save(m0, tok, root / "a"), "b": _save(m1, tok, root / "b"),
            "gpt2": _save(g, None, root / "gpt2"), "models": (m0, m1), "tok": tok, "root": root}


def test_cli_logs_folders_in_the_order_given(saved, tmp_path):
    text_file = tmp_path / "texts.txt"
    text_file.write_text("the cat sat on the mat\n\nwhy did the dog run\n", encoding="utf-8")
    logdir = tmp_path / "logs"
    assert cli.main(["log", saved["b"], saved["a"], "--text-file", str(text_file),
                     "--logdir", str(logdir), "--neurons", "--run", "pair"]) == 0
    log = tb_attention.load(str(logdir))
    m0, m1 = saved["models"]
    tok = saved["tok"]
    for tag, text in probe_tags(TEXTS):
        assert log.steps("pair", tag) == [0, 1]
        for step, model in ((0, m1), (1, m0)):  # b first: step 0
            rec = log.get("pair", tag, step)
            want = tb_attention.capture(model, tok(text, return_tensors="pt"), tokenizer=tok)
            assert rec.tokens() == want.tokens() and rec.has_neurons
            assert np.abs(rec.attention() - want.attention()).max() <= 1 / 510 + 1e-6


def _fails(args, capsys, *needles):
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("tb-attention: error: "), err
    for n in needles:
        assert n in err, (n, err)
    return err


def test_cli_errors(saved, tmp_path, capsys):
    logdir = str(tmp_path / "logs")
    base = ["--text", "the cat", "--logdir", logdir]
    missing = str(tmp_path / "nope")
    _fails(["log", saved["a"], missing, *base], capsys, missing, "no such folder")
    a_file = tmp_path / "weights.bin"
    a_file.write_bytes(b"x")
    _fails(["log", str(a_file), *base], capsys, str(a_file), "is not a folder")
    empty = tmp_path / "empty"
    empty.mkdir()
    _fails(["log", str(empty), *base], capsys, str(empty), "not a transformers checkpoint", "config.json")
    config_only = tmp_path / "config-only"
    config_only.mkdir()
    shutil.copy(os.path.join(saved["a"], "config.json"), str(config_only))
    _fails(["log", str(config_only), *base], capsys, str(config_only), "no model weights")
    bad_config = tmp_path / "bad-config"
    shutil.copytree(saved["a"], str(bad_config))
    (bad_config / "config.json").write_text("{not json", encoding="utf-8")
    _fails(["log", str(bad_config), *base], capsys, str(bad_config), "config.json does not load")
    long_text = " ".join(["cat"] * 70)
    _fails(["log", saved["a"], "--text", "the cat", "--text", long_text, "--logdir", logdir], capsys,
           saved["a"], "72 tokens long", "at most 64", "max_position_embeddings")
    _fails(["log", saved["gpt2"], *base], capsys, saved["gpt2"], "no tokenizer", "--tokenizer")
    for parent in ("x", "y"):
        shutil.copytree(saved["a"], str(tmp_path / parent / "checkpoint-5"))
    _fails(["log", str(tmp_path / "x" / "checkpoint-5"), str(tmp_path / "y" / "checkpoint-5"), *base],
           capsys, "both be logged at step 5")
    empty_texts = tmp_path / "empty.txt"
    empty_texts.write_text("\n \n", encoding="utf-8")
    _fails(["log", saved["a"], "--text-file", str(empty_texts), "--logdir", logdir], capsys,
           str(empty_texts), "holds no text")
    with pytest.raises(SystemExit) as e:  # argparse: neither --text nor --text-file
        cli.main(["log", saved["a"], "--logdir", logdir])
    assert e.value.code == 2
    capsys.readouterr()
    assert not os.path.exists(logdir)  # every check ran before anything was written


def test_cli_gpt2_with_tokenizer_option(saved, tmp_path):
    """A checkpoint without tokenizer files, given --tokenizer (any tokenizer whose
    ids fit the model's vocabulary)."""
    tok_dir = str(saved["root"] / "a")
    assert cli.main(["log", saved["gpt2"], "--text", "the cat sat", "--tokenizer", tok_dir,
                     "--logdir", str(tmp_path)]) == 0
    log = tb_attention.load(str(tmp_path))
    assert log.runs() == ["gpt2"]
    rec = log.get("gpt2", "probe/the_cat_sat", 0)
    assert rec.model_type == "gpt2" and rec.kind().causal


def test_installed_console_script(saved, tmp_path):
    """`tb-attention` as pip installs it (pyproject.toml [project.scripts]), not this checkout."""
    exe = os.path.join(os.path.dirname(sys.executable), "tb-attention")
    assert os.path.isfile(exe), "pip install the package first: no %s" % exe
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    ok = subprocess.run([exe, "log", saved["a"], "--text", "the cat sat", "--logdir", str(tmp_path)],
                        env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert tb_attention.load(str(tmp_path)).steps("a", "probe/the_cat_sat") == [0]
    bad = subprocess.run([exe, "log", str(tmp_path / "missing"), "--text", "x", "--logdir", str(tmp_path)],
                         env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and str(tmp_path / "missing") in bad.stderr
