"""Attention in a notebook: tb_attention.show() and BertViz's three calls.

    tb_attention.show(record)                       # the head view, inline
    tb_attention.show([r0, r1, r2], view="model")   # a step scrubber over three records
    tb_attention.show(tb_attention.load("runs"), runs=["exp1"], tags=["probe/cat"], view="stats")

    from tb_attention.notebook import head_view, model_view, neuron_view   # instead of bertviz's
    head_view(outputs.attentions, tokens)

Each draws one output with the dashboard's own views (tb_attention.page),
offline: nothing is loaded from a CDN, so it draws in Jupyter Notebook,
JupyterLab, VS Code and Colab alike, and a notebook saved with the output
reopens drawn when trusted (a notice and a still picture when not). A
re-run cell replaces its output; several outputs in one notebook do not
interfere.
"""
from tb_attention.page import DEFAULT_HEIGHT, DEFAULT_MAX_BYTES, Page
from tb_attention.pagestate import PageError
from tb_attention.record import AttentionRecord, from_raw

__all__ = ["show", "head_view", "model_view", "neuron_view"]


def _display(page, html_action):
    from IPython.display import HTML, display

    out = HTML(page.html())
    if html_action == "view":
        display(out)
        return None
    if html_action == "return":
        return out
    raise PageError("html_action must be 'view' or 'return', got %r" % (html_action,))


def show(x, view="head", *, runs=None, tags=None, steps=None, views=None, height=DEFAULT_HEIGHT,
         theme=None, title=None, max_bytes=DEFAULT_MAX_BYTES, html_action="view", **state):
    """Draw attention in the notebook, with the dashboard's views.

    x: an AttentionRecord (tb_attention.capture), a list of records (one per
    step: a step scrubber; their steps are 0, 1, ... or `steps`), a dict
    {run name: record or list of records} (several runs: the compare view's
    B), or tb_attention.load(logdir) (every run and probe, or those in
    `runs` / `tags`, and the `steps` listed).
    view: the view shown first, "head", "model", "neuron", "matrix",
    "stats" or "compare"; views: the view tabs (default all; stats and
    compare only when there are several steps). The compare view's answers
    are computed now: for every pair of steps when that is cheap, else for
    the pairs the view picks by default.
    state: what the view opens on, as in the dashboard's links: run, tag,
    step, kind, layer, head, heads (list), query, hover (("q", 3)), pair,
    raw, mlayers, mheads, zoom, stat, brun, bstep, cmode. A name or value
    that does not exist is an error naming it.
    height: of the output in pixels; theme: None (follow the notebook),
    "light" or "dark"; max_bytes: refuse an output larger than this (None:
    no limit). html_action "return" returns the IPython HTML object instead
    of displaying it.
    """
    page = Page(x, view, runs=runs, tags=tags, steps=steps, views=views, height=height, theme=theme,
                title=title, max_bytes=max_bytes, **state)
    return _display(page, html_action)


def _layers(attention, include_layers, what):
    """BertViz's include_layers: the listed layers of a tuple of per-layer tensors, and their ids."""
    if attention is None:
        return None, None
    if include_layers is None:
        return attention, None
    try:
        picked = [attention[i] for i in include_layers]
    except (IndexError, TypeError):
        raise PageError("include_layers=%r: %s has %d layers" % (include_layers, what, len(attention))) from None
    return picked, list(include_layers)


def _record(attention, tokens, sentence_b_start, encoder_attention, decoder_attention, cross_attention,
            encoder_tokens, decoder_tokens, include_layers):
    """BertViz's attention arguments -> one AttentionRecord (a kind per attention given)."""
    seq2seq = [a is not None for a in (encoder_attention, decoder_attention, cross_attention)]
    if attention is not None:
        if any(seq2seq) or encoder_tokens is not None or decoder_tokens is not None:
            raise PageError("give attention (self-attention models) or encoder_attention / decoder_attention / "
                            "cross_attention (encoder-decoder models), not both")
        if tokens is None:
            raise PageError("tokens is required with attention")
        att, ids = _layers(attention, include_layers, "attention")
        return from_raw(att, tokens, layer_ids=ids, segment_b=sentence_b_start or None)
    if not any(seq2seq):
        raise PageError("give attention, or encoder_attention / decoder_attention / cross_attention")
    kinds = []
    for name, att, toks, causal in (("encoder", encoder_attention, encoder_tokens, False),
                                    ("decoder", decoder_attention, decoder_tokens, True),
                                    ("cross", cross_attention, (decoder_tokens, encoder_tokens), False)):
        if att is None:
            continue
        if toks is None or (name == "cross" and None in toks):
            need = "encoder_tokens and decoder_tokens" if name == "cross" else "%s_tokens" % name
            raise PageError("%s is required with %s_attention" % (need, name))
        picked, ids = _layers(att, include_layers, "%s_attention" % name)
        kinds.append(from_raw(picked, toks, layer_ids=ids, causal=causal, kind=name).kind())
    return AttentionRecord(kinds)


def head_view(attention=None, tokens=None, sentence_b_start=None, prettify_tokens=True, layer=None, heads=None,
              encoder_attention=None, decoder_attention=None, cross_attention=None, encoder_tokens=None,
              decoder_tokens=None, include_layers=None, html_action="view", **options):
    """BertViz's head_view, drawn by tb-attention's head view (same arguments).

    attention: the tuple transformers returns (`outputs.attentions`: one
    tensor [1, heads, tokens, tokens] per layer), with tokens and optionally
    sentence_b_start; or encoder_attention / decoder_attention /
    cross_attention with encoder_tokens / decoder_tokens. layer, heads: the
    layer and heads shown first (layer as a model layer index, like
    BertViz); include_layers: only those layers are put in the output.

    Differences from BertViz: the output also has the model, neuron (empty:
    raw attention has no query/key vectors, see neuron_view) and matrix
    tabs; long inputs scroll and draw the strongest lines first instead of
    every line; the sentence-pair choice is the "pair" filter; the theme
    follows the notebook. Extra keyword arguments are show()'s (view=,
    height=, theme=, ...). Errors are ValueErrors (PageError) naming the
    argument, as BertViz's are ValueErrors.
    """
    record = _record(attention, tokens, sentence_b_start, encoder_attention, decoder_attention, cross_attention,
                     encoder_tokens, decoder_tokens, include_layers)
    if layer is not None and include_layers is not None and layer not in include_layers:
        raise PageError("layer=%r is not in include_layers: %s" % (layer, list(include_layers)))
    options.setdefault("view", "head")
    return show(record, layer=layer, heads=list(heads) if heads is not None else None, raw=not prettify_tokens,
                html_action=html_action, **options)


def model_view(attention=None, tokens=None, sentence_b_start=None, prettify_tokens=True, display_mode=None,
               encoder_attention=None, decoder_attention=None, cross_attention=None, encoder_tokens=None,
               decoder_tokens=None, include_layers=None, include_heads=None, html_action="view", **options):
    """BertViz's model_view, drawn by tb-attention's model view (same arguments).

    Every layer and head as a thumbnail. include_layers: only those layers
    are put in the output; include_heads: the model view shows only those
    heads (the other views show all).

    Differences from BertViz: display_mode defaults to None, following the
    notebook's theme (BertViz: always "dark"; pass "dark" or "light" to
    force one); beyond 40 tokens the thumbnails are heatmaps (BertViz draws
    every line and stops drawing at a few hundred tokens); clicking a
    thumbnail opens that head. Extra keyword arguments are show()'s.
    """
    record = _record(attention, tokens, sentence_b_start, encoder_attention, decoder_attention, cross_attention,
                     encoder_tokens, decoder_tokens, include_layers)
    options.setdefault("view", "model")
    options.setdefault("theme", display_mode)
    return show(record, mheads=list(include_heads) if include_heads is not None else None, raw=not prettify_tokens,
                html_action=html_action, **options)


def neuron_view(model, model_type=None, tokenizer=None, sentence_a=None, sentence_b=None, display_mode=None,
                layer=None, head=None, html_action="view", **options):
    """BertViz's neuron_view.show, drawn by tb-attention's neuron view (same arguments).

    Runs model once on sentence_a (and sentence_b, as a pair) with
    tb_attention.capture(..., neurons=True) and shows the query and key
    vectors behind each weight: q x k, q . k, scaled, softmax.

    Differences from BertViz: any architecture tb-attention captures
    neurons for works (BertViz: its own copies of BERT, GPT-2 and RoBERTa
    only), with the model and tokenizer you already have: model_type is
    accepted and ignored. display_mode defaults to the notebook's theme
    (BertViz: "dark"). layer / head: shown first (a model layer index and a
    head index). Extra keyword arguments are show()'s.
    """
    if tokenizer is None or sentence_a is None:
        raise PageError("neuron_view needs model, tokenizer and sentence_a")
    if not isinstance(sentence_a, str) or (sentence_b is not None and not isinstance(sentence_b, str)):
        raise PageError("sentence_a and sentence_b must be strings")
    from tb_attention import capture

    if sentence_b is None:
        inputs = tokenizer(sentence_a, return_tensors="pt")
    else:
        inputs = tokenizer(sentence_a, sentence_b, return_tensors="pt")
    record = capture(model, inputs, tokenizer=tokenizer, neurons=True)
    options.setdefault("view", "neuron")
    options.setdefault("theme", display_mode)
    return show(record, layer=layer, head=head, html_action=html_action, **options)
