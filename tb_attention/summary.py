"""Attention summaries: an AttentionRecord as a TensorBoard Summary proto, for any writer.

    from tb_attention import summary
    file_writer.add_summary(summary.pb("probe/cat", record), global_step=step)

As TensorBoard's own plugins' summary.py files do: pb() returns a
`summary_pb2.Summary` whose one value is the step's blob sequence (blob 0
the StepHeader with the per-head statistics, then one payload per stored
layer; proto/attention.proto) with the attention plugin's SummaryMetadata.
A Summary has no step: the step goes into the Event (add_summary's
global_step). AttentionWriter builds its Events from the same parts
(step_blobs, add_value) on its background thread.
"""
import struct

import numpy as np
from tensorboard.compat.proto import summary_pb2, types_pb2

from tb_attention import codec, metadata, stats
from tb_attention.record import AttentionInputError, AttentionRecord, validate_image, validate_kind

# One step is one Event, a protobuf message: serializing one of 2 GiB or more
# fails. Refuse such a record up front; the margin covers the header and the
# Event's own fields.
MAX_EVENT_BYTES = 2 ** 31 - 2 ** 24


def pb(tag, record, *, sequence=0, writer_id=None, dtype="uint8", description=""):
    """A Summary holding record under tag.

    sequence: how many steps this writer wrote to the tag before (the
    dashboard's "showing KEPT of WRITTEN" counts them); writer_id: a string
    naming the writer (a new random one by default); dtype "uint8" or
    "float16". Checks record as AttentionWriter.add_attention does (raises
    AttentionInputError) and computes the statistics in the calling thread.
    """
    check_tag(tag)
    if not isinstance(record, AttentionRecord):
        raise AttentionInputError("record must be an AttentionRecord (tb_attention.capture), got %s"
                                  % type(record).__name__)
    check_record(record, dtype, compressed=True)
    blobs = step_blobs(record, sequence, writer_id or codec.new_writer_id(), dtype)
    check_event_size(blobs, tag, record, dtype)
    summary = summary_pb2.Summary()
    add_value(summary, tag, blobs, metadata.create_summary_metadata(description))
    return summary


def check_name(what, name):
    bad = metadata.name_breakers(name)
    if bad:
        raise AttentionInputError(
            "%s %r contains %s: TensorBoard's default data server (--load_fast=true) cannot read "
            "attention logged under a run or tag name with a double quote, a backslash or a "
            "control character; rename it" % (what, name, ", ".join(bad)))


def check_tag(tag):
    if not isinstance(tag, str) or not tag.strip():
        raise AttentionInputError("tag must be a non-empty string, got %r" % (tag,))
    check_name("tag", tag)


class RecordTooLarge(AttentionInputError):
    """A step whose blobs, as they would be written, exceed one TensorBoard Event."""


def check_record(record, dtype, compressed=False):
    """Every check add_attention promises on a record; raises AttentionInputError.

    compressed: the payloads will be compressed (format 4), so their size is
    known only once they are (check_event_size, on the writer's thread); a
    32 x 32 x 2048 uint8 record is 4 GiB before compression and ~1 after."""
    if not isinstance(record.model_type or "", str):
        raise AttentionInputError("model_type must be a str, got %r" % (record.model_type,))
    for name in record.kinds:
        validate_kind(record.kind(name))
    validate_image(record)
    if not compressed:
        stored = _stored_nbytes(record, codec.weight_bytes(dtype))
        if stored > MAX_EVENT_BYTES:
            raise RecordTooLarge(_too_large(record, dtype, stored, "uncompressed"))


def check_event_size(blobs, tag, record, dtype):
    """Raise RecordTooLarge unless the blobs fit one Event (they are what is written)."""
    total = sum(len(b) for b in blobs)
    if total > MAX_EVENT_BYTES:
        raise RecordTooLarge("%r: %s" % (tag, _too_large(record, dtype, total, "compressed")))


def _too_large(record, dtype, nbytes, how):
    shapes = "; ".join("%s %s" % (n, "x".join(map(str, record.kind(n).attention.shape)))
                       for n in record.kinds)
    return ("this step would store %.2f GiB %s (%d bytes: %s as %s) in one TensorBoard event, which "
            "is a protobuf message of at most 2 GiB: log fewer layers (layer_ids=, or "
            "capture(..., layers=[...])), fewer heads (capture(..., heads=[...])) or fewer tokens%s"
            % (nbytes / 2 ** 30, how, nbytes, shapes, dtype,
               ", or use dtype='uint8'" if dtype != "uint8" else ""))


def _stored_nbytes(record, itemsize):
    """Bytes the step's blobs will take (attention as stored, neurons as float16)."""
    total = 0
    for name in record.kinds:
        k = record.kind(name)
        total += k.attention.size * itemsize
        total += sum(len(t) for t in k.query_tokens) + sum(len(t) for t in k.key_tokens)
        n = k.neurons
        if n is not None:
            total += 2 * (n.queries.size + n.keys.size) + n.masked.size
            total += 0 if n.bias is None else 2 * n.bias.size
    return total


# Weights quantized and measured at once by stored_layers: 1 MiB as float32,
# half of a core's L2 cache here (the other half holds the temporaries).
CACHE_ELEMENTS = 2 ** 18


def step_blobs(record, sequence, writer_id, dtype="uint8", compress=True, pmap=map):
    """The blobs of one step (codec.encode_step): each kind's attention as
    stored and the statistics of those stored weights (stored_layers).
    pmap: as codec.encode_step's (the writer's thread pool)."""
    layers, accumulators = {}, {}
    for name in record.kinds:
        layers[name], accumulators[name] = stored_layers(record.kind(name), dtype)
    return codec.encode_step(
        record, sequence, writer_id, dtype, stored=layers, compress_payloads=compress, pmap=pmap,
        statistics=lambda: {name: acc.result() for name, acc in accumulators.items()})


def stored_layers(kind, dtype):
    """(function(layer) -> that layer of the kind's attention as stored,
    dtype [H, Tq, Tk]; the stats.Accumulator it feeds).

    One pass per layer: the layer is quantized and its statistics taken
    while it is in the cache, from the record's own weights: float when the
    record holds floats; a record already quantized (capture(...,
    dtype="uint8")) is stored as it is and its statistics are those of the
    uint8 weights, whose error stats.compute documents (diffuse rows of long
    sequences lose entropy and distance). Layers may be asked for from
    several threads at once: each writes its own part of the accumulator."""
    a = kind.attention
    acc = stats.Accumulator(a.shape, kind.key_special,
                            stats.relative_positions_defined(kind.name, a.shape[2], a.shape[3]))
    want = codec.numpy_dtype(dtype)
    as_stored = a.dtype == want  # stored as it is, never written to

    def layer_stored(layer):
        stored = a[layer] if as_stored else np.empty(a.shape[1:], want)
        # a few heads at a time, about a core's cache of float32: quantized
        # and measured while in it (at 512 tokens a layer is 12 MB, and each
        # pass over it from memory took as long as the pass's arithmetic)
        step = max(1, CACHE_ELEMENTS // (a.shape[2] * a.shape[3]))
        for h0 in range(0, a.shape[1], step):
            heads = a[layer, h0:h0 + step]
            if not as_stored:
                # in range: every record reaching here passed check_record
                codec.quantize_into(heads, stored[h0:h0 + step], in_range=True)
            acc.add(layer, heads, first_head=h0)
        return stored
    return layer_stored, acc


def add_value(summary, tag, blobs, summary_metadata):
    """Append the blob sequence as a value of summary (an Event's own
    `summary` field, or a new Summary), in place: a Summary built apart and
    copied into an Event copies the whole payload once more, and handing
    sub-messages to constructors more still (measured, building and
    serializing the Event of a 38 MB record, 12 x 12 heads at 512 tokens:
    93 ms in place, 285 ms through a separate Summary, 447 ms through the
    constructor)."""
    value = summary.value.add(tag=tag)
    value.metadata.CopyFrom(summary_metadata)
    value.tensor.dtype = types_pb2.DT_STRING
    value.tensor.tensor_shape.dim.add(size=len(blobs))
    value.tensor.string_val.extend(blobs)
    return value


# --------------------------------------------------------------------------
# The Event's wire format, built by hand: the payloads are copied once, into
# the joined event, instead of into protobuf strings and again by
# SerializeToString. tests/test_writer.py checks it byte for byte against
# protobuf's own serialization of the same Event.


def _varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number, payload_len):
    """Key and length of a length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(payload_len)


def event_bytes(wall_time, step, tag, blobs, metadata_bytes):
    """The serialized Event {wall_time, step, summary {value {tag, tensor
    {DT_STRING, shape [len(blobs)], string_val: blobs}, metadata}}}: what
    add_value into an Event's summary and SerializeToString give (fields in
    number order, proto3 zeros left out). metadata_bytes: the serialized
    SummaryMetadata."""
    lengths = [len(b) for b in blobs]
    dim = b"\x08" + _varint(len(blobs))  # Dim.size
    shape = _field(2, len(dim) + 2) + _field(2, len(dim)) + dim  # tensor_shape { dim { size } }
    tensor_head = b"\x08" + _varint(types_pb2.DT_STRING) + shape
    keys = [_field(8, n) for n in lengths]  # string_val
    tensor_len = len(tensor_head) + sum(len(k) + n for k, n in zip(keys, lengths))
    tag_bytes = tag.encode("utf-8")
    tail = _field(9, len(metadata_bytes)) + metadata_bytes
    value_head = _field(1, len(tag_bytes)) + tag_bytes + _field(8, tensor_len) + tensor_head
    value_len = len(value_head) + tensor_len - len(tensor_head) + len(tail)
    summary_len = len(_field(1, value_len)) + value_len
    head = b""
    if wall_time:
        head += b"\x09" + struct.pack("<d", wall_time)
    if step:
        head += b"\x10" + _varint(step & (2 ** 64 - 1))
    parts = [head + _field(5, summary_len) + _field(1, value_len) + value_head]
    for key, blob in zip(keys, blobs):
        parts.append(key)
        parts.append(blob)
    parts.append(tail)
    return b"".join(parts)
