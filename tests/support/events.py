"""Event files built by hand: steps the real writer never writes (damaged,
foreign, from older or newer versions), framed by tb_attention.tfrecord (which
tests/test_hardening_format.py checks against TensorBoard's own framing)."""
import os

from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, types_pb2

from tb_attention import codec, metadata, summary, tfrecord
from tb_attention.proto import attention_pb2


def attention_event(tag, step, blobs, wall_time=1.7e9, summary_metadata=None):
    """The Event of one attention step of blobs at wall time wall_time + step."""
    event = event_pb2.Event(wall_time=wall_time + step, step=step)
    summary.add_value(event.summary, tag, blobs, summary_metadata or metadata.create_summary_metadata())
    return event


def foreign_event(tag, step, tensor, content=None):
    """An event under our plugin name holding another writer's tensor (and
    plugin content, when given)."""
    md = metadata.create_summary_metadata()
    if content is not None:
        md.plugin_data.content = content
    value = summary_pb2.Summary.Value(tag=tag, metadata=md, tensor=tensor)
    return event_pb2.Event(wall_time=1.7e9 + step, step=step, summary=summary_pb2.Summary(value=[value]))


def string_tensor(values):
    """A rank-1 DT_STRING tensor of values (what a blob sequence is)."""
    t = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=values)
    t.tensor_shape.dim.add(size=len(values))
    return t


def write_event_file(directory, events, suffix="handmade"):
    """An event file of events (Event protos or raw bytes) after the file_version event."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "events.out.tfevents.1700000000.%s" % suffix)
    with open(path, "wb") as f:
        tfrecord.write_record(f.write, event_pb2.Event(wall_time=1.7e9, file_version="brain.Event:2")
                              .SerializeToString())
        for e in events:
            tfrecord.write_record(f.write, e if isinstance(e, bytes) else e.SerializeToString())
    return path


def records(path):
    """[tfrecord.Record] of the event file at path."""
    with open(path, "rb") as f:
        return list(tfrecord.scan(f.read()))


def record_ends(path):
    """Byte offsets where each whole record ends; and whether the file ends in a torn one."""
    found = records(path)
    ends = [r.end for r in found if r.status in (tfrecord.OK, tfrecord.BAD_PAYLOAD)]
    return ends, bool(found) and found[-1].status == tfrecord.TORN


def step_without_stats(record, sequence, writer_id):
    """A step as written before statistics existed: StepHeader.stats absent."""
    blobs = summary.step_blobs(record, sequence, writer_id)
    header = attention_pb2.StepHeader.FromString(blobs[0])
    header.ClearField("stats")
    return [header.SerializeToString()] + blobs[1:]


def step_of_version(record, sequence, writer_id, version):
    """A step whose header claims format version `version` (a newer one does not load)."""
    blobs = summary.step_blobs(record, sequence, writer_id)
    header = codec.parse_header(blobs[0])
    header.version = version
    return [header.SerializeToString()] + blobs[1:]
