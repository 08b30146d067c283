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
    check_record(record, dtype)
    blobs = step_blobs(record, sequence, writer_id or codec.new_writer_id(), dtype)
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


def check_record(record, dtype):
    """Every check add_attention promises on a record; raises AttentionInputError."""
    if not isinstance(record.model_type or "", str):
        raise AttentionInputError("model_type must be a str, got %r" % (record.model_type,))
    for name in record.kinds:
        validate_kind(record.kind(name))
    validate_image(record)
    stored = _stored_nbytes(record, codec.weight_bytes(dtype))
    if stored > MAX_EVENT_BYTES:
        shapes = "; ".join("%s %s" % (n, "x".join(map(str, record.kind(n).attention.shape)))
                           for n in record.kinds)
        raise AttentionInputError(
            "this step would store %.2f GiB (%d bytes: %s as %s) in one TensorBoard event, which is a "
            "protobuf message of at most 2 GiB: log fewer layers (layer_ids=, or "
            "capture(..., layers=[...])), fewer tokens, or use dtype='uint8'"
            % (stored / 2 ** 30, stored, shapes, dtype))


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


def step_blobs(record, sequence, writer_id, dtype="uint8"):
    """The blobs of one step: each kind's statistics (stats.compute, from the
    float attention before quantization) and codec.encode_step."""
    statistics = {}
    for name in record.kinds:
        k = record.kind(name)
        _, _, Tq, Tk = k.attention.shape
        statistics[name] = stats.compute(k.attention, k.key_special,
                                         stats.relative_positions_defined(name, Tq, Tk))
    return codec.encode_step(record, sequence, writer_id, dtype, statistics=statistics)


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
