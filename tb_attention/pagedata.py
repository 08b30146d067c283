"""The data of a page of attention (tb_attention.page): steps in, payload out.

Every step goes through the same functions as a logged one: a record is
encoded into its blob sequence by summary.step_blobs (as the writer does), a
step read from a logdir (load()) keeps its blobs as they are on disk, and the
page's header, stats and compare answers are built from the blobs by
tb_attention.answers, as the plugin's routes build them. The payload is
[u32 length][manifest JSON][blobs], deflated (frontend/payload.js reads it):
attention as the uint8 bytes a step stores, never as JSON numbers.
"""
import json
import struct
import zlib
from typing import List, NamedTuple

import numpy as np
from tensorboard import errors

from tb_attention import answers, codec, pagestate, summary
from tb_attention.pagestate import PageError
from tb_attention.reader import AttentionLog
from tb_attention.record import AttentionRecord

PAYLOAD_FORMAT = 1  # frontend/payload.js PAYLOAD_FORMAT
# The compare view's answers are computed when the page is written: every
# pair of steps while their weights add up to at most this many, else each
# step with the B the view picks by default (its run's newest step, or the
# oldest when it is the newest; every other run's newest).
COMPARE_ALL_PAIRS_WEIGHTS = 10 ** 8
DEFAULT_RUN = "notebook"
DEFAULT_TAG = "attention"


class PageStep(NamedTuple):
    run: str
    tag: str
    step: int
    wall_time: float
    blobs: List[bytes]  # the step's blob sequence, as stored (codec.encode_step)


class _Key(NamedTuple):  # what answers.* read of a step's key
    run: str
    tag: str
    step: int


# -- what goes in --------------------------------------------------------------


def page_steps(x, runs=None, tags=None, steps=None):
    """The PageSteps of x: an AttentionRecord, a list of records (steps 0, 1,
    ... or `steps`), a dict {run: record | list | {step: record}}, or an
    AttentionLog (load(logdir)) narrowed by runs / tags / steps."""
    if isinstance(x, AttentionLog):
        return _log_steps(x, runs, tags, steps)
    if isinstance(x, list) and x and all(isinstance(s, PageStep) for s in x):
        return x  # read by the plugin from TensorBoard's store (its "Save as HTML")
    if isinstance(x, dict):
        if not x:
            raise PageError("x is an empty dict: give {run name: record or list of records}")
        out = []
        for run, value in x.items():
            if not isinstance(run, str) or not run:
                raise PageError("x's keys are run names (non-empty str), got %r" % (run,))
            out.extend(_record_steps(value, run, tags[0] if tags else DEFAULT_TAG, steps, "x[%r]" % run))
        return out
    run = runs[0] if runs else DEFAULT_RUN
    return _record_steps(x, run, tags[0] if tags else DEFAULT_TAG, steps, "x")


def _record_steps(value, run, tag, steps, what):
    if isinstance(value, AttentionRecord):
        pairs = [(steps[0] if steps else 0, value)]
    elif isinstance(value, dict):
        pairs = sorted(value.items(), key=lambda kv: kv[0])
    elif isinstance(value, (list, tuple)):
        if not value:
            raise PageError("%s is an empty list: give one AttentionRecord per step" % what)
        numbers = list(steps) if steps is not None else list(range(len(value)))
        if len(numbers) != len(value):
            raise PageError("steps names %d steps but %s holds %d records" % (len(numbers), what, len(value)))
        pairs = list(zip(numbers, value))
    else:
        raise PageError("%s must be an AttentionRecord (tb_attention.capture), a list of them, a dict "
                        "{run: records} or tb_attention.load(logdir); got %s" % (what, type(value).__name__))
    out = []
    writer_id = codec.new_writer_id()
    for sequence, (step, record) in enumerate(pairs):
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise PageError("steps must be non-negative ints, got %r" % (step,))
        if not isinstance(record, AttentionRecord):
            raise PageError("%s step %d is a %s, not an AttentionRecord" % (what, step, type(record).__name__))
        summary.check_record(record, "uint8")
        out.append(PageStep(run, tag, int(step), 0.0, summary.step_blobs(record, sequence, writer_id, "uint8")))
    if len({s.step for s in out}) != len(out):
        raise PageError("%s gives two records the same step" % what)
    return out


def _log_steps(log, runs, tags, steps):
    chosen = list(runs) if runs else log.runs()
    out = []
    for run in chosen:
        if run not in log.runs():
            raise PageError("runs: no run %r with attention in %s; runs: %s" % (run, log.logdir, log.runs()))
        for tag in (list(tags) if tags else log.tags(run)):
            if tag not in log.tags(run):
                if tags and runs:
                    raise PageError("tags: no attention tag %r in run %r; tags: %s" % (tag, run, log.tags(run)))
                continue
            kept = log.steps(run, tag) if steps is None else [s for s in log.steps(run, tag) if s in set(steps)]
            out.extend(PageStep(run, tag, s, log.wall_time(run, tag, s), log.blobs(run, tag, s)) for s in kept)
    if not out:
        raise PageError("nothing to show: no step of runs=%r tags=%r steps=%r in %s"
                        % (runs, tags, steps, log.logdir))
    return out


# -- the page's data -----------------------------------------------------------


def answer_key(*parts):
    """The key MemoryData looks an answer up by: JSON.stringify of the parts (no spaces, no escapes)."""
    return json.dumps(list(parts), separators=(",", ":"), ensure_ascii=False)


class _Blobs:
    """The payload's binary part: byte strings appended, [offset, length] handed back."""

    def __init__(self):
        self.parts, self.size = [], 0

    def add(self, data):
        ref = [self.size, len(data)]
        self.parts.append(data)
        self.size += len(data)
        return ref


def _kind_attention(kind, blobs):
    """uint8 bytes [L, H, Tq, Tk] of one kind (float16 steps rounded to uint8 as the views draw them)."""
    layers = []
    for i in range(len(kind.layer_ids)):
        for p, (ref, _, _) in enumerate(codec.layer_parts(kind, i)):
            stored = codec.attention_part(kind, i, p, _blob(blobs, ref))
            if stored.dtype != np.uint8:
                stored = codec.quantize(codec.to_float(stored), codec.DTYPES["uint8"])
            layers.append(stored.tobytes())
    return b"".join(layers)


def _blob(blobs, ref):
    if not 1 <= ref.index < len(blobs):
        raise codec.FormatError("the step header points at blob %d of %d" % (ref.index, len(blobs)))
    return blobs[ref.index]


def _step_entry(s, header, out):
    head = answers.header(s.step, s.wall_time, header)
    entry = {"run": s.run, "tag": s.tag, "step": s.step, "header": head, "attention": {}, "neurons": {}}
    for kind, summary_kind in zip(header.kinds, head["kinds"]):
        summary_kind["dtype"] = "uint8"
        entry["attention"][kind.name] = out.add(_kind_attention(kind, s.blobs))
        if len(kind.neurons):
            layers = []
            for i, nl in enumerate(kind.neurons):
                # checked, inflated (format 4), grouped keys expanded per query head
                blob = codec.neuron_payload_per_head(kind, i, _blob(s.blobs, nl.blob))
                # format 3's score steps, as the neurons route sends them: soft-cap (0: none), sinks per head
                sinks = ([float(x) if np.isfinite(x) else None for x in nl.sinks]  # -inf: that head has none
                         if len(nl.sinks) == kind.num_heads else None)
                layers.append(out.add(blob) + [nl.scale, bool(nl.has_bias), float(nl.softcap), sinks])
            entry["neurons"][kind.name] = layers
    return entry


def _stats(groups):
    """The `stats` answer of every run, probe and kind, keyed as MemoryData looks it up."""
    out = {}
    for (run, tag), items in groups.items():
        per_step = [{k.name: codec.stored_stats(h, k.name) for k in h.kinds} for _, h in items]
        for name in dict.fromkeys(k.name for _, h in items for k in h.kinds):
            out[answer_key(run, tag, name)] = answers.stats(
                run, tag, name, [s.step for s, _ in items], per_step, [])
    return out


def _compare_pairs(steps, weights):
    """Which (a, b) the page answers: all when cheap enough, else the view's default Bs."""
    if len(steps) ** 2 * weights <= COMPARE_ALL_PAIRS_WEIGHTS:
        return [(a, b) for a in steps for b in steps], "every pair of steps"
    newest, oldest = {}, {}
    for s in steps:
        newest[s.run] = max(newest.get(s.run, s.step), s.step)
        oldest[s.run] = min(oldest.get(s.run, s.step), s.step)
    by_key = {(s.run, s.step): s for s in steps}
    pairs = []
    for a in steps:
        own = newest[a.run] if a.step != newest[a.run] else oldest[a.run]
        pairs.append((a, by_key[(a.run, own)]))
        pairs.extend((a, by_key[(run, step)]) for run, step in newest.items() if run != a.run)
    return pairs, ("each step with its run's newest step (the oldest for the newest) and with every "
                   "other run's newest step")


def _compare(groups):
    out, said = {}, ""
    by_tag = {}
    for (run, tag), items in groups.items():
        by_tag.setdefault(tag, []).extend(items)
    for tag, items in by_tag.items():
        headers = {(s.run, s.step): (s, h) for s, h in items}
        for name in dict.fromkeys(k.name for _, h in items for k in h.kinds):
            having = [(s, h) for s, h in items if any(k.name == name for k in h.kinds)]
            k0 = codec.find_kind(having[0][1], name)
            weights = len(k0.layer_ids) * k0.num_heads * len(k0.query_tokens) * len(k0.key_tokens)
            pairs, said = _compare_pairs([s for s, _ in having], weights)
            floats = {}
            for a, b in pairs:
                key = answer_key(tag, name, a.run, a.step, b.run, b.step)
                out[key] = _compare_one(tag, name, headers[(a.run, a.step)], headers[(b.run, b.step)], floats)
    return out, "this page holds the comparisons of %s; compare other steps in TensorBoard" % said


def _compare_one(tag, name, side_a, side_b, floats):
    (a, ha), (b, hb) = side_a, side_b
    kind_a, kind_b = codec.find_kind(ha, name), codec.find_kind(hb, name)
    key_a, key_b = _Key(a.run, tag, a.step), _Key(b.run, tag, b.step)
    try:
        answers.check_comparable(name, key_a, kind_a, key_b, kind_b)
    except errors.InvalidArgumentError as e:
        return {"error": {"status": 400, "message": str(e)}}
    tokens = answers.token_differences(kind_a, kind_b)
    jsd = None
    if tokens["match"]:
        def layer(s, kind, i):
            if (s.run, s.step, i) not in floats:
                if len(floats) > 64:  # bounded: a few steps' layers as float
                    floats.clear()
                parts = [codec.attention_part(kind, i, p, _blob(s.blobs, ref))
                         for p, (ref, _, _) in enumerate(codec.layer_parts(kind, i))]
                floats[(s.run, s.step, i)] = codec.to_float(np.concatenate(parts))
            return floats[(s.run, s.step, i)]
        jsd = [answers.head_jsd(layer(a, kind_a, i), layer(b, kind_b, i)) for i in range(len(kind_a.layer_ids))]
    return answers.compare(tag, name, key_a, key_b, kind_a, tokens, jsd, (a.wall_time, b.wall_time))


class Payload(NamedTuple):
    data: bytes  # deflated [u32 length][manifest][blobs]
    manifest: dict
    blobs: bytes  # the binary part (offsets in the manifest point here)
    shown: tuple  # (step entry, kind) the page opens on


def payload(steps, view, state, views, theme=None):
    """The Payload of steps (PageSteps) opening on view and state (checked:
    tb_attention.pagestate)."""
    out = _Blobs()
    groups = {}
    entries = []
    for s in steps:
        header = codec.parse_header(s.blobs[0])
        entries.append(_step_entry(s, header, out))
        groups.setdefault((s.run, s.tag), []).append((s, header))
    keys, shown = pagestate.page_state(view, state, entries, views)
    for items in groups.values():
        items.sort(key=lambda item: item[0].step)
    manifest = {"format": PAYLOAD_FORMAT, "state": keys, "views": list(views), "theme": theme,
                "steps": entries, "stats": _stats(groups) if "stats" in views else {},
                "compare": {}, "missing": ""}
    if "compare" in views:
        manifest["compare"], manifest["missing"] = _compare(groups)
    text = json.dumps(manifest, separators=(",", ":"), allow_nan=False).encode("utf-8")
    blobs = b"".join(out.parts)
    return Payload(zlib.compress(struct.pack("<I", len(text)) + text + blobs, 6), manifest, blobs, shown)
