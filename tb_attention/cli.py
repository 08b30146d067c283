"""The `tb-attention` command.

    tb-attention log CHECKPOINT... (--text T ... | --text-file F) --logdir DIR
                     [--run NAME] [--neurons] [--tokenizer PATH] [--tag-prefix P]

`log` loads local transformers checkpoints (folders written by
save_pretrained or by the Trainer) one after the other and logs each one's
attention on the same probe texts into one run, so the dashboard can scrub
and compare them like the steps of a training run:

- a Trainer's `checkpoint-N` folder is logged at step N;
- any other folder at step 0, 1, 2, ... in the order given (a mix of both
  must not give two checkpoints the same step).

The tokenizer comes from --tokenizer, else from the checkpoint folder, else
from its parent folder (where the Trainer saves it at the end). Tags are
tag-prefix + a name made from each text's first words, the same names
tb_attention.Probe gives the same texts during training.

Everything is checked before the first model is loaded: a missing folder, a
folder that is not a checkpoint, a text longer than a model takes each stop
the command with exit status 2 and a message naming the path.

    tb-attention html LOGDIR [--run R ...] [--tag T ...] [--steps S ...] [--view V] -o FILE.html

`html` writes what is logged under LOGDIR (the runs, probes and steps
named, else all) as one self-contained HTML file with the dashboard's views
(tb_attention.save_html): no server, no network.
"""
import argparse
import os
import re
import sys

from tb_attention.probe import DEFAULT_TAG_PREFIX

EXIT_USAGE = 2
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json",
                    "spiece.model", "tokenizer.model", "sentencepiece.bpe.model")


class CliError(Exception):
    """A problem with the command's input: printed, exit status 2."""


def _parser():
    from tb_attention import __version__

    p = argparse.ArgumentParser(
        prog="tb-attention",
        description="Log transformer attention for TensorBoard's Attention tab.")
    p.add_argument("--version", action="version", version="%(prog)s " + __version__)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    log = sub.add_parser(
        "log", help="log the attention of saved checkpoints on probe texts",
        description="Load local transformers checkpoints and log each one's attention on "
                    "the same texts into one TensorBoard run (checkpoint-N folders at step N, "
                    "other folders at steps 0, 1, ... in the order given).")
    log.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT",
                     help="a folder written by save_pretrained or a Trainer's checkpoint-N folder")
    texts = log.add_mutually_exclusive_group(required=True)
    texts.add_argument("--text", action="append", metavar="T",
                       help="a probe text (repeat for several)")
    texts.add_argument("--text-file", metavar="F",
                       help="a UTF-8 file with one probe text per line (blank lines skipped)")
    log.add_argument("--logdir", required=True, metavar="DIR", help="TensorBoard logdir")
    log.add_argument("--run", metavar="NAME",
                     help="run name (a folder under DIR); default: the folder holding the "
                          "checkpoint-N folders, or the checkpoint's own name when there is one")
    log.add_argument("--neurons", action="store_true", help="also log queries and keys (neuron view)")
    log.add_argument("--tokenizer", metavar="PATH",
                     help="tokenizer folder (default: the checkpoint's, else its parent's)")
    log.add_argument("--tag-prefix", default=DEFAULT_TAG_PREFIX, metavar="P",
                     help="prefix of the tags (default %(default)r)")
    page = sub.add_parser(
        "html", help="write logged attention as one self-contained HTML file",
        description="Write the attention logged under LOGDIR as one HTML file with the dashboard's "
                    "views, opened from disk with no server and no network.")
    page.add_argument("logdir", metavar="LOGDIR", help="TensorBoard logdir")
    page.add_argument("--run", action="append", metavar="R", help="a run (repeat for several; default all)")
    page.add_argument("--tag", action="append", metavar="T", help="a probe tag (repeat for several; default all)")
    page.add_argument("--steps", nargs="+", type=int, metavar="S", help="the steps (default every logged one)")
    page.add_argument("--view", default="head", metavar="V", help="the view shown first (default %(default)s)")
    page.add_argument("--max-mb", type=float, default=50, metavar="MB",
                      help="refuse a file larger than this (default %(default)s; 0: no limit)")
    page.add_argument("-o", "--output", required=True, metavar="FILE", help="the HTML file to write")
    return p


def write_html(args):
    from tb_attention import page, reader
    from tb_attention.pagestate import PageError

    try:
        log = reader.load(args.logdir)
    except FileNotFoundError as e:
        raise CliError(str(e)) from None
    try:
        path = page.save_html(log, args.output, args.view, runs=args.run, tags=args.tag, steps=args.steps,
                              max_bytes=int(args.max_mb * 2 ** 20) if args.max_mb > 0 else None)
    except PageError as e:
        raise CliError(str(e)) from None
    print("wrote %s (%.1f MB)" % (path, os.path.getsize(path) / 2 ** 20))
    return 0


def main(argv=None):
    from tb_attention.files import RemoteLogdirError

    args = _parser().parse_args(argv)
    try:
        if args.command == "log":
            return log_checkpoints(args)
        if args.command == "html":
            return write_html(args)
    except (CliError, RemoteLogdirError) as e:  # an s3:// --logdir / LOGDIR that fails: its URL and cause
        sys.stderr.write("tb-attention: error: %s\n" % e)
        return EXIT_USAGE
    return EXIT_USAGE


# --------------------------------------------------------------------------
# log


def _read_texts(args):
    if args.text is not None:
        texts = list(args.text)
    else:
        path = args.text_file
        try:
            with open(path, encoding="utf-8") as f:
                texts = [line.strip() for line in f]
        except OSError as e:
            raise CliError("cannot read the text file %s: %s" % (path, e.strerror or e)) from None
        except UnicodeDecodeError as e:
            raise CliError("the text file %s is not UTF-8: %s" % (path, e)) from None
        texts = [t for t in texts if t]
        if not texts:
            raise CliError("the text file %s holds no text" % path)
    for i, t in enumerate(texts):
        if not t.strip():
            raise CliError("text %d is empty" % (i + 1))
    return texts


def _check_checkpoint(path):
    if not os.path.exists(path):
        raise CliError("%s: no such folder" % path)
    if not os.path.isdir(path):
        raise CliError("%s is not a folder: give a checkpoint folder (one with config.json "
                       "and model weights)" % path)
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise CliError("%s is not a transformers checkpoint: it has no config.json" % path)
    if not any(os.path.isfile(os.path.join(path, f)) for f in _WEIGHT_FILES):
        raise CliError("%s is not a transformers checkpoint: it has no model weights (%s)"
                       % (path, ", ".join(_WEIGHT_FILES)))


def _steps(paths):
    """Step of each checkpoint: N for checkpoint-N, else its place among the others."""
    steps, order = [], 0
    for p in paths:
        m = _CHECKPOINT_RE.match(os.path.basename(os.path.normpath(p)))
        if m:
            steps.append(int(m.group(1)))
        else:
            steps.append(order)
            order += 1
    seen = {}
    for p, s in zip(paths, steps):
        if s in seen:
            raise CliError("%s and %s would both be logged at step %d: give them in separate "
                           "runs (--run)" % (seen[s], p, s))
        seen[s] = p
    return steps


def _default_run(paths):
    names = [os.path.basename(os.path.normpath(os.path.abspath(p))) for p in paths]
    if all(_CHECKPOINT_RE.match(n) for n in names):
        parents = {os.path.dirname(os.path.normpath(os.path.abspath(p))) for p in paths}
        if len(parents) == 1:
            return os.path.basename(parents.pop()) or "checkpoints"
    if len(paths) == 1:
        return names[0]
    return "checkpoints"


def _has_tokenizer(folder):
    return any(os.path.isfile(os.path.join(folder, f)) for f in _TOKENIZER_FILES)


def _tokenizer_folder(path, explicit):
    if explicit:
        if not os.path.isdir(explicit):
            raise CliError("--tokenizer %s: no such folder" % explicit)
        return explicit
    if _has_tokenizer(path):
        return path
    parent = os.path.dirname(os.path.normpath(os.path.abspath(path)))
    if _CHECKPOINT_RE.match(os.path.basename(os.path.normpath(path))) and _has_tokenizer(parent):
        return parent
    raise CliError("%s has no tokenizer files (%s): pass --tokenizer PATH"
                   % (path, ", ".join(_TOKENIZER_FILES[:3])))


def _load_tokenizer(folder, cache):
    if folder not in cache:
        from transformers import AutoTokenizer

        try:
            cache[folder] = AutoTokenizer.from_pretrained(folder)
        except Exception as e:
            raise CliError("cannot load the tokenizer in %s: %s" % (folder, e)) from None
    return cache[folder]


def _load_config(path):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path)
    except Exception as e:
        raise CliError("%s is not a transformers checkpoint: its config.json does not load (%s)"
                       % (path, e)) from None


def _model_class(config):
    """The class the checkpoint was saved from (config.architectures), so module
    names match training; AutoModel when transformers does not have it."""
    import transformers

    for name in getattr(config, "architectures", None) or ():
        cls = getattr(transformers, name, None)
        if cls is not None:
            return cls
    return transformers.AutoModel


def _load_model(path, config):
    try:
        model = _model_class(config).from_pretrained(path)
    except Exception as e:
        raise CliError("cannot load the model in %s: %s" % (path, e)) from None
    model.eval()
    return model


def _check_installed():
    """`log` loads models: say which extra brings what it needs, not a traceback."""
    import importlib.util

    missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        raise CliError("tb-attention log loads transformers checkpoints and needs %s, which is "
                       "not installed: pip install 'tb-attention[transformers]'" % " and ".join(missing))


def log_checkpoints(args):
    import warnings

    _check_installed()

    from tb_attention.probe import check_length, describe, encode_text, probe_tags
    from tb_attention.record import AttentionInputError

    texts = _read_texts(args)
    paths = list(args.checkpoints)
    for p in paths:
        _check_checkpoint(p)
    steps = _steps(paths)
    run = args.run if args.run is not None else _default_run(paths)
    if not run or run.startswith(("/", "..")) or "\\" in run:
        raise CliError("--run %r is not a run name (a relative folder name)" % run)
    tags = probe_tags(texts, args.tag_prefix)

    # Everything that can be checked without loading weights, before writing.
    tokenizers, plan = {}, []
    for path, step in zip(paths, steps):
        config = _load_config(path)
        tok = _load_tokenizer(_tokenizer_folder(path, args.tokenizer), tokenizers)
        inputs = []
        for tag, text in tags:
            enc = encode_text(text, tok)
            try:
                check_length(enc, config, "text %s" % describe(text))
            except AttentionInputError as e:
                raise CliError("%s: %s" % (path, e)) from None
            inputs.append((tag, enc))
        plan.append((step, path, config, tok, inputs))
    plan.sort(key=lambda item: item[0])

    from tqdm.auto import tqdm

    from tb_attention import capturing
    from tb_attention.writer import AttentionWriter

    logdir = os.path.join(args.logdir, run)
    with AttentionWriter(logdir) as writer:
        bar = tqdm(plan, desc="checkpoints", unit="ckpt", file=sys.stderr, disable=None)
        for step, path, config, tok, inputs in bar:
            bar.set_postfix_str("step %d" % step)
            model = _load_model(path, config)
            with warnings.catch_warnings():
                warnings.simplefilter("default")
                for tag, enc in inputs:
                    try:
                        record = capturing.capture(model, enc, tokenizer=tok, neurons=args.neurons)
                    except AttentionInputError as e:
                        raise CliError("%s: %s" % (path, e)) from None
                    writer.add_attention(tag, record, global_step=step)
            del model
        bar.close()
    sys.stderr.write("tb-attention: logged %d checkpoint%s x %d text%s to %s (tags %s)\n"
                     % (len(plan), "" if len(plan) == 1 else "s", len(tags),
                        "" if len(tags) == 1 else "s", logdir, ", ".join(t for t, _ in tags)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
