"""tb-attention: watch transformer attention change while the model trains.

    record = tb_attention.capture(model, inputs, tokenizer=tok, neurons=True)
    with tb_attention.AttentionWriter("runs/exp1") as writer:
        writer.add_attention("probe/cat", record, global_step=step)
    log = tb_attention.load("runs")
    tb_attention.show(record)                     # in a notebook
    tb_attention.save_html(record, "attention.html")
"""
__version__ = "0.1.0"

from tb_attention.files import RemoteLogdirError
from tb_attention.reader import AttentionLog, load
from tb_attention.record import AttentionInputError, AttentionRecord, ImageLayout, KindRecord, Neurons
from tb_attention.writer import AttentionWriter, AttentionWriterError
from tb_attention.probe import Probe  # imports torch only when a probe logs


def capture(model, inputs=None, tokenizer=None, neurons=False, layers=None, **model_inputs):
    """Run model on inputs once and return its attention as an AttentionRecord
    (a list of them for a batch). See tb_attention.capturing for details."""
    from tb_attention import capturing  # imports torch, so only when asked
    return capturing.capture(model, inputs, tokenizer=tokenizer, neurons=neurons, layers=layers,
                             **model_inputs)


def show(x, view="head", **options):
    """Draw attention in a notebook with the dashboard's views (x: a record, a
    list of records, a dict of runs, or load(logdir)). See tb_attention.notebook.show."""
    from tb_attention import notebook  # imports IPython only when asked
    return notebook.show(x, view, **options)


def save_html(x, path, view="head", **options):
    """Write x as one self-contained HTML file (no server, no network). See
    tb_attention.page.save_html."""
    from tb_attention import page
    return page.save_html(x, path, view, **options)


__all__ = ["capture", "show", "save_html", "AttentionWriter", "AttentionWriterError", "load", "AttentionLog",
           "RemoteLogdirError",
           "AttentionRecord", "AttentionInputError", "ImageLayout", "KindRecord", "Neurons", "Probe"]
