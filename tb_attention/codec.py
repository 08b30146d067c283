"""AttentionRecord <-> blobs of one step (the layout in proto/attention.proto).

encode_step() runs on the writer's background thread; the decode_* functions
run in the plugin (one blob at a time) and in load().
"""
import uuid

import google_crc32c
import numpy as np

from tb_attention import metadata, stats
from tb_attention.metadata import FormatError
from tb_attention.proto import attention_pb2
from tb_attention.record import AttentionRecord, KindRecord, Neurons

DTYPES = {"uint8": attention_pb2.UINT8, "float16": attention_pb2.FLOAT16}
_NUMPY = {attention_pb2.UINT8: np.dtype(np.uint8), attention_pb2.FLOAT16: np.dtype("<f2")}
DTYPE_NAMES = {attention_pb2.UINT8: "uint8", attention_pb2.FLOAT16: "float16"}


def new_writer_id():
    return uuid.uuid4().hex


def _token_bytes(tokens):
    return [t.encode("utf-8", "surrogatepass") for t in tokens]


def _token_string(b):
    try:
        return b.decode("utf-8", "surrogatepass")  # any Python str written round-trips
    except UnicodeDecodeError:
        return b.decode("utf-8", "replace")  # foreign bytes: show U+FFFD, never fail


def token_strings(raw):
    return [_token_string(b) for b in raw]


# quantize() converts at most this many weights at once (64 MiB of float32
# temporaries, not 2 GiB for 32 heads at 4096 tokens).
QUANTIZE_CHUNK = 16 * 2 ** 20


def quantize(attention, dtype):
    if dtype != attention_pb2.UINT8:
        return attention.astype("<f2")
    attention = np.asarray(attention)
    out = np.empty(attention.shape, np.uint8)
    flat_in, flat_out = attention.reshape(-1), out.reshape(-1)
    for i in range(0, flat_in.size, QUANTIZE_CHUNK):
        x = np.multiply(flat_in[i:i + QUANTIZE_CHUNK], np.float32(255.0), dtype=np.float32)
        np.clip(x, 0.0, 255.0, out=x)
        np.rint(x, out=x)
        flat_out[i:i + QUANTIZE_CHUNK] = x
    return out


def encode_step(record: AttentionRecord, sequence: int, writer_id: str, dtype: str = "uint8"):
    """Blobs of one step: [StepHeader, payload, payload, ...]. The header also
    holds each kind's per-head statistics (stats.compute, on the float
    attention before quantization): this runs on the writer's thread."""
    if dtype not in DTYPES:
        raise ValueError("dtype must be one of %s, got %r" % (sorted(DTYPES), dtype))
    header = attention_pb2.StepHeader(
        version=metadata.FORMAT_VERSION, sequence=sequence, writer_id=writer_id,
        model_type=record.model_type or "")
    blobs = [b""]

    def add_blob(payload):
        blobs.append(payload)
        return attention_pb2.BlobRef(
            index=len(blobs) - 1, length=len(payload), crc32c=google_crc32c.value(payload))

    for name in record.kinds:
        k = record.kind(name)
        L, H, Tq, Tk = k.attention.shape
        kh = header.kinds.add(
            name=k.name, num_heads=H, layer_ids=list(k.layer_ids), dtype=DTYPES[dtype],
            query_segment_b=k.query_segment_b, key_segment_b=k.key_segment_b,
            causal=k.causal)
        kh.query_tokens.extend(_token_bytes(k.query_tokens))
        kh.key_tokens.extend(_token_bytes(k.key_tokens))
        stats.to_proto(header.stats.add(), k.name,
                       stats.compute(k.attention, k.key_special,
                                     stats.relative_positions_defined(k.name, Tq, Tk)),
                       k.key_special)
        for layer in range(L):  # layer by layer: temporaries of one layer, not of the record
            kh.attention.append(add_blob(quantize(k.attention[layer], DTYPES[dtype]).tobytes()))
        n = k.neurons
        if n is not None:
            kh.head_dim = n.queries.shape[-1]
            for layer in range(L):
                parts = [n.queries[layer].astype("<f2").tobytes(), n.keys[layer].astype("<f2").tobytes(),
                         np.ascontiguousarray(n.masked[layer], dtype=np.uint8).tobytes()]
                has_bias = n.bias is not None
                if has_bias:
                    parts.append(n.bias[layer].astype("<f2").tobytes())
                kh.neurons.append(attention_pb2.NeuronLayer(
                    blob=add_blob(b"".join(parts)), scale=float(n.scales[layer]), has_bias=has_bias))
    blobs[0] = header.SerializeToString()
    return blobs


# --------------------------------------------------------------------------
# Decoding


def parse_header(blob: bytes) -> attention_pb2.StepHeader:
    try:
        header = attention_pb2.StepHeader.FromString(blob)
    except Exception as e:  # protobuf's DecodeError
        raise FormatError("the step header is corrupt (%s)" % e) from e
    if header.version > metadata.FORMAT_VERSION:
        raise FormatError(
            "this step was written in format version %d; this tb-attention reads up to %d: "
            "upgrade tb-attention" % (header.version, metadata.FORMAT_VERSION))
    if header.version < 1 or not header.kinds:
        raise FormatError("the step header is corrupt (version %d, %d kinds)"
                          % (header.version, len(header.kinds)))
    return header


def find_kind(header, name):
    for k in header.kinds:
        if k.name == name:
            return k
    raise KeyError(name)


def check_blob(ref, blob, what):
    if len(blob) != ref.length:
        raise FormatError("%s is truncated or corrupt: %d bytes where %d were written"
                          % (what, len(blob), ref.length))
    if google_crc32c.value(blob) != ref.crc32c:
        raise FormatError("%s is corrupt: its checksum does not match what was written" % what)


def attention_layer(kind, layer_index, blob):
    """Stored bytes of one layer, checked, as dtype [H, Tq, Tk] (no copy)."""
    ref = kind.attention[layer_index]
    check_blob(ref, blob, "%s attention of layer %d" % (kind.name, kind.layer_ids[layer_index]))
    shape = (kind.num_heads, len(kind.query_tokens), len(kind.key_tokens))
    dt = _NUMPY.get(kind.dtype)
    if dt is None:
        raise FormatError("unknown attention dtype %d" % kind.dtype)
    if int(np.prod(shape)) * dt.itemsize != len(blob):
        raise FormatError("%s attention of layer %d has %d bytes, not the %s %s its header says"
                          % (kind.name, kind.layer_ids[layer_index], len(blob), shape, DTYPE_NAMES[kind.dtype]))
    return np.frombuffer(blob, dtype=dt).reshape(shape)


def to_float(stored):
    if stored.dtype == np.uint8:
        return stored.astype(np.float32) / np.float32(255.0)
    return stored.astype(np.float32)


def neuron_layer(kind, layer_index, blob):
    """(queries f16 [H,Tq,D], keys f16 [H,Tk,D], masked u8 [Tq,Tk], bias f16 [H,Tq,Tk] or None, scale)."""
    nl = kind.neurons[layer_index]
    check_blob(nl.blob, blob, "%s neurons of layer %d" % (kind.name, kind.layer_ids[layer_index]))
    H, Tq, Tk, D = kind.num_heads, len(kind.query_tokens), len(kind.key_tokens), kind.head_dim
    sizes = [H * Tq * D * 2, H * Tk * D * 2, Tq * Tk, H * Tq * Tk * 2 if nl.has_bias else 0]
    if sum(sizes) != len(blob):
        raise FormatError("%s neurons of layer %d have %d bytes, not the %d their header implies"
                          % (kind.name, kind.layer_ids[layer_index], len(blob), sum(sizes)))
    o = np.cumsum([0] + sizes)
    q = np.frombuffer(blob, "<f2", count=H * Tq * D, offset=o[0]).reshape(H, Tq, D)
    k = np.frombuffer(blob, "<f2", count=H * Tk * D, offset=o[1]).reshape(H, Tk, D)
    masked = np.frombuffer(blob, np.uint8, count=Tq * Tk, offset=o[2]).reshape(Tq, Tk)
    bias = None
    if nl.has_bias:
        bias = np.frombuffer(blob, "<f2", count=H * Tq * Tk, offset=o[3]).reshape(H, Tq, Tk)
    return q, k, masked, bias, nl.scale


def decode_step(blobs, model_type=None) -> AttentionRecord:
    """Every blob of a step -> AttentionRecord (load() uses this)."""
    if not blobs:
        raise FormatError("the step has no blobs")
    header = parse_header(blobs[0])

    def blob(ref):
        if not 1 <= ref.index < len(blobs):
            raise FormatError("the step header points at blob %d of %d" % (ref.index, len(blobs)))
        return blobs[ref.index]

    kinds = []
    for k in header.kinds:
        attention = np.stack([to_float(attention_layer(k, i, blob(ref))) for i, ref in enumerate(k.attention)])
        neurons = None
        if len(k.neurons):
            parts = [neuron_layer(k, i, blob(nl.blob)) for i, nl in enumerate(k.neurons)]
            has_bias = any(p[3] is not None for p in parts)
            neurons = Neurons(
                queries=np.stack([p[0] for p in parts]).astype(np.float32),
                keys=np.stack([p[1] for p in parts]).astype(np.float32),
                scales=np.array([p[4] for p in parts], np.float32),
                masked=np.stack([p[2] for p in parts]).astype(bool),
                bias=np.stack([p[3] if p[3] is not None else np.zeros(attention.shape[1:], "<f2")
                               for p in parts]).astype(np.float32) if has_bias else None)
        kinds.append(KindRecord(
            name=k.name, attention=attention,
            query_tokens=tuple(token_strings(k.query_tokens)),
            key_tokens=tuple(token_strings(k.key_tokens)),
            layer_ids=tuple(k.layer_ids), query_segment_b=k.query_segment_b,
            key_segment_b=k.key_segment_b, causal=k.causal, neurons=neurons,
            key_special=stats.special_keys(header, k.name)))
    return AttentionRecord(kinds, model_type=header.model_type)
