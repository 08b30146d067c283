"""AttentionRecord <-> the blobs of one step: the byte layout of proto/attention.proto.

encode_step() runs on the writer's background thread (tb_attention.summary
hands it the statistics stats.compute made); the decode functions run in the
plugin (one blob at a time) and in load(). Everything that reads or writes a
StepHeader, its per-head statistics included, is here.
"""
import functools
import threading
import uuid
import zlib

import google_crc32c
import numpy as np
import zstandard

from tb_attention import metadata, sizes
from tb_attention.metadata import FormatError
from tb_attention.proto import attention_pb2
from tb_attention.record import AttentionRecord, ImageLayout, KindRecord, Neurons, expand_keys

DTYPES = {"uint8": attention_pb2.UINT8, "float16": attention_pb2.FLOAT16}
_NUMPY = {attention_pb2.UINT8: np.dtype(np.uint8), attention_pb2.FLOAT16: np.dtype("<f2")}
DTYPE_NAMES = {attention_pb2.UINT8: "uint8", attention_pb2.FLOAT16: "float16"}


def weight_bytes(dtype: str) -> int:
    """Bytes per stored attention weight of a dtype name ("uint8", "float16")."""
    if dtype not in DTYPES:
        raise ValueError("dtype must be one of %s, got %r" % (sorted(DTYPES), dtype))
    return _NUMPY[DTYPES[dtype]].itemsize


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


def numpy_dtype(dtype: str):
    """The numpy dtype a dtype name ("uint8", "float16") is stored as."""
    weight_bytes(dtype)  # checks it
    return _NUMPY[DTYPES[dtype]]


def quantize(attention, dtype):
    """attention (float, or uint8 already quantized) as the stored dtype (a DType)."""
    attention = np.asarray(attention)
    out = np.empty(attention.shape, _NUMPY[dtype])
    quantize_into(attention, out)
    return out


def quantize_into(src, out, in_range=False):
    """src (float weights, or uint8 round(w * 255)) into out (uint8: round(w *
    255), half to even as np.rint and torch.round; or float16), chunk by chunk.
    in_range: src was checked to lie in [0, 1] (record.check_attention_values
    allows 1e-6 beyond, which rounds to 0 or 255), so nothing needs clipping;
    the clip was a third of quantizing (measured, 128 tokens)."""
    flat_in, flat_out = src.reshape(-1), out.reshape(-1)
    for i in range(0, flat_in.size, QUANTIZE_CHUNK):
        chunk = flat_in[i:i + QUANTIZE_CHUNK]
        if out.dtype != np.uint8:
            flat_out[i:i + QUANTIZE_CHUNK] = to_float(chunk)
            continue
        if chunk.dtype == np.uint8:
            flat_out[i:i + QUANTIZE_CHUNK] = chunk
            continue
        x = np.multiply(chunk, np.float32(255.0), dtype=np.float32)
        if not in_range:
            np.clip(x, 0.0, 255.0, out=x)
        np.rint(x, out=x)
        flat_out[i:i + QUANTIZE_CHUNK] = x


# A stored layer larger than this is split into blobs of whole heads (format
# version 2), so that one head is read without the rest of the layer: at 4096
# tokens one uint8 layer of 32 heads is 512 MiB, as large as the plugin's
# whole cache, and re-read for every head.
LAYER_BLOB_BYTES = 64 * 2 ** 20


def heads_per_blob(num_heads, query_len, key_len, itemsize, limit=None):
    """0 (the layer in one blob) or how many heads each blob of the layer holds."""
    limit = LAYER_BLOB_BYTES if limit is None else limit
    per_head = query_len * key_len * itemsize
    if num_heads * per_head <= limit:
        return 0
    return max(1, limit // max(1, per_head))


# The per-head statistics a step header stores for a kind: the float fields
# of KindStats, in field order (stats.NAMES names the same ones).
STAT_FIELDS = tuple(f.name for f in attention_pb2.KindStats.DESCRIPTOR.fields
                    if f.type == f.TYPE_FLOAT)


def _put_stats(kind_stats, name, values, key_special):
    """Fill a KindStats from {stat: float [L, H] or None} (stats.compute)."""
    kind_stats.kind = name
    for stat in STAT_FIELDS:
        v = values.get(stat)
        if v is not None:
            getattr(kind_stats, stat).extend(np.asarray(v, np.float32).ravel().tolist())
    if key_special is not None:
        kind_stats.special_known = True
        kind_stats.special_keys.extend(int(j) for j in key_special)


def encode_step(record: AttentionRecord, sequence: int, writer_id: str, dtype: str = "uint8", *,
                statistics, stored=None, compress_payloads=True, pmap=map):
    """Blobs of one step: [StepHeader, payload, payload, ...] (bytes).

    statistics: {kind name: {stat: float [L, H] or None}}, each kind's
    stats.compute() result, stored in the header; a kind left out stores
    none (as steps written before statistics existed). Or a function
    returning that dict, called once every payload is made (the stored
    functions may take the statistics as they go).
    stored: {kind name: function(layer) -> that layer of its attention in
    the stored dtype [H, Tq, Tk]} (summary.stored_layers). Kinds left out
    are quantized here.
    compress_payloads=False stores every payload as it is (format <= 3).
    pmap: map(function, jobs) over the step's jobs, one per layer of
    attention and one per layer of neurons, results in order: the writer
    passes its thread pool's map, so layers are quantized, measured and
    compressed side by side (numpy and zstd release the GIL)."""
    stored = stored or {}
    weight_bytes(dtype)  # checks it
    # Version 1 unless a layer is split: files readers of version 1 can read stay so.
    header = attention_pb2.StepHeader(
        version=1, sequence=sequence, writer_id=writer_id, model_type=record.model_type or "")
    jobs = []  # (the BlobRefs a job's payloads fill, in order; the job)

    for name in record.kinds:
        k = record.kind(name)
        L, H, Tq, Tk = k.attention.shape
        kh = header.kinds.add(
            name=k.name, num_heads=H, layer_ids=list(k.layer_ids), dtype=DTYPES[dtype],
            query_segment_b=k.query_segment_b, key_segment_b=k.key_segment_b,
            causal=k.causal, no_neurons=k.no_neurons, has_sinks=k.has_sinks)
        kh.query_tokens.extend(_token_bytes(k.query_tokens))
        kh.key_tokens.extend(_token_bytes(k.key_tokens))
        per_blob = heads_per_blob(H, Tq, Tk, weight_bytes(dtype))
        if per_blob:
            kh.heads_per_blob = per_blob
            header.version = max(header.version, 2)
        layer_of = stored.get(k.name) or functools.partial(_quantized_layer, k.attention, DTYPES[dtype])
        for layer in range(L):  # a layer per job: temporaries of a layer, not of the record
            refs = [kh.attention.add() for _ in range(0, H, per_blob or H)]
            jobs.append((refs, functools.partial(_attention_job, layer_of, layer, per_blob or H,
                                                 compress_payloads)))
        if k.neurons is not None:
            header.version = max(header.version, _put_neurons(kh, k.neurons, jobs, compress_payloads))

    blobs = [b""]
    for (refs, _), packed in zip(jobs, pmap(_run, [job for _, job in jobs])):
        for ref, (data, compression, raw_length, crc) in zip(refs, packed):
            blobs.append(data)
            ref.index, ref.length, ref.crc32c = len(blobs) - 1, len(data), crc
            if compression != attention_pb2.COMPRESSION_NONE:
                ref.compression, ref.raw_length = compression, raw_length
                header.version = max(header.version, 4)
    statistics = statistics() if callable(statistics) else statistics
    for name in record.kinds:
        if name in statistics:
            k = record.kind(name)
            _put_stats(header.stats.add(), k.name, statistics[name], k.key_special)
    put_image(header, record.image)
    blobs[0] = header.SerializeToString()
    return blobs


def _run(job):
    return job()


def _quantized_layer(attention, dtype, layer):
    return quantize(attention[layer], dtype)


def _attention_job(layer_of, layer, heads_per_part, compress_payloads):
    heads = np.ascontiguousarray(layer_of(layer))
    return [_pack(heads[h0:h0 + heads_per_part], compress_payloads)
            for h0 in range(0, heads.shape[0], heads_per_part)]


def _pack(payload, compress_payloads):
    """(bytes to store, Compression, raw length, crc32c of the stored bytes)
    of a payload (bytes, or a C-contiguous array compressed from its own
    memory, no copy)."""
    stored, compression = (compress(payload) if compress_payloads
                           else (payload, attention_pb2.COMPRESSION_NONE))
    if not isinstance(stored, bytes):
        stored = stored.tobytes()  # google_crc32c takes bytes and nothing else
    raw_length = payload.nbytes if isinstance(payload, np.ndarray) else len(payload)
    return stored, compression, raw_length, google_crc32c.value(stored)


def _put_neurons(kh, n, jobs, compress_payloads):
    """Each layer's neuron blob into Kind kh (proto/attention.proto
    NeuronLayer), made by a job of jobs; the format version the neurons need."""
    version = 1
    kh.head_dim = n.queries.shape[-1]
    if n.keys.shape[1] != kh.num_heads:  # grouped keys stored once per key head
        kh.key_heads = n.keys.shape[1]
        version = 4
    for layer in range(n.queries.shape[0]):
        has_bias = n.bias is not None
        neuron_layer = kh.neurons.add(scale=float(n.scales[layer]), has_bias=has_bias)
        jobs.append(([neuron_layer.blob], functools.partial(_neuron_job, n, layer, compress_payloads)))
        if put_score_steps(neuron_layer, n, layer):
            version = max(version, 3)
    return version


def _neuron_job(n, layer, compress_payloads):
    parts = [n.queries[layer].astype("<f2").tobytes(), n.keys[layer].astype("<f2").tobytes(),
             np.ascontiguousarray(n.masked[layer], dtype=np.uint8).tobytes()]
    if n.bias is not None:
        parts.append(n.bias[layer].astype("<f2").tobytes())
    return [_pack(b"".join(parts), compress_payloads)]


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
    sizes.check_header(header)
    return header


def find_kind(header, name):
    for k in header.kinds:
        if k.name == name:
            return k
    raise KeyError(name)


def check_blob(ref, blob, what):
    """Raise FormatError unless blob is the bytes ref says were stored."""
    if len(blob) != ref.length:
        raise FormatError("%s is truncated or corrupt: %d bytes where %d were written"
                          % (what, len(blob), ref.length))
    if google_crc32c.value(blob) != ref.crc32c:
        raise FormatError("%s is corrupt: its checksum does not match what was written" % what)


def open_blob(ref, blob, what):
    """The payload of a stored blob, checked (check_blob) and inflated."""
    check_blob(ref, blob, what)
    if ref.compression == attention_pb2.COMPRESSION_NONE:
        return blob
    try:
        if ref.compression == attention_pb2.ZSTD:
            raw = _zstd_decompressor().decompress(blob, max_output_size=ref.raw_length)
        elif ref.compression == attention_pb2.ZLIB:
            raw = zlib.decompress(blob)
        else:
            raise FormatError("%s is stored with compression %d, which this tb-attention does not "
                              "know: upgrade tb-attention" % (what, ref.compression))
    except (zlib.error, zstandard.ZstdError) as e:
        raise FormatError("%s does not inflate (%s)" % (what, e)) from e
    if len(raw) != ref.raw_length:
        raise FormatError("%s inflates to %d bytes where %d were written"
                          % (what, len(raw), ref.raw_length))
    return raw


# --------------------------------------------------------------------------
# Compression (format version 4). zstd at level 1, measured on random
# softmax attention (uint8, one layer of 12 heads; 2 loaded cores): at 128
# tokens 0.28 bytes per weight in ~0.6 ms, at 512 tokens 0.15; level 3
# gives the same sizes more slowly, negative levels save no time here and
# store up to 0.44. zlib takes 14 ms at level 1 for 0.32 and 100+ ms at
# level 6 for 0.26: it would be most of the writer's background time.
# Readers also inflate ZLIB.
ZSTD_LEVEL = 1
_local = threading.local()


def _zstd_compressor():
    c = getattr(_local, "compressor", None)
    if c is None:  # one per thread: a ZstdCompressor is not thread safe
        c = _local.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True,
                                                         write_content_size=True)
    return c


def _zstd_decompressor():
    d = getattr(_local, "decompressor", None)
    if d is None:
        d = _local.decompressor = zstandard.ZstdDecompressor()
    return d


def compress(payload):
    """(bytes to store, Compression): zstd unless that saves nothing; the
    payload as given when stored as it is. payload: bytes, or a C-contiguous
    array (zstd reads its memory)."""
    nbytes = payload.nbytes if isinstance(payload, np.ndarray) else len(payload)
    if nbytes < 64:
        return payload, attention_pb2.COMPRESSION_NONE
    packed = _zstd_compressor().compress(payload)
    if len(packed) >= nbytes:
        return payload, attention_pb2.COMPRESSION_NONE
    return packed, attention_pb2.ZSTD


def layer_parts(kind, layer_index):
    """[(BlobRef, first head, end head)] of one stored layer: one blob of
    every head, or (format 2, Kind.heads_per_blob > 0) blobs of whole heads."""
    H = kind.num_heads
    per_blob = kind.heads_per_blob
    if per_blob <= 0:
        if len(kind.attention) != len(kind.layer_ids):
            raise FormatError("the %s header lists %d attention blobs for %d layers"
                              % (kind.name, len(kind.attention), len(kind.layer_ids)))
        return [(kind.attention[layer_index], 0, H)]
    n = -(-H // per_blob)
    if len(kind.attention) != n * len(kind.layer_ids):
        raise FormatError("the %s header lists %d attention blobs for %d layers of %d blobs"
                          % (kind.name, len(kind.attention), len(kind.layer_ids), n))
    return [(kind.attention[layer_index * n + p], p * per_blob, min(H, (p + 1) * per_blob))
            for p in range(n)]


def part_of_head(kind, layer_index, head):
    """Index into layer_parts() of the blob holding head."""
    return 0 if kind.heads_per_blob <= 0 else head // kind.heads_per_blob


def _part_layout(kind, layer_index, part):
    """(BlobRef, shape [heads, Tq, Tk], what it is in words) of one blob of a layer."""
    ref, h0, h1 = layer_parts(kind, layer_index)[part]
    what = "%s attention of layer %d" % (kind.name, kind.layer_ids[layer_index])
    if kind.heads_per_blob > 0:
        what += " (heads %d..%d)" % (h0, h1 - 1)
    return ref, (h1 - h0, len(kind.query_tokens), len(kind.key_tokens)), what


def attention_part(kind, layer_index, part, blob):
    """Stored bytes of one blob of a layer, checked, as dtype [heads, Tq, Tk] (no copy)."""
    ref, shape, what = _part_layout(kind, layer_index, part)
    blob = open_blob(ref, blob, what)
    dt = _NUMPY.get(kind.dtype)
    if dt is None:
        raise FormatError("unknown attention dtype %d" % kind.dtype)
    if int(np.prod(shape)) * dt.itemsize != len(blob):
        raise FormatError("%s has %d bytes, not the %s %s its header says"
                          % (what, len(blob), shape, DTYPE_NAMES[kind.dtype]))
    return np.frombuffer(blob, dtype=dt).reshape(shape)


def attention_layer(kind, layer_index, blob):
    """Stored bytes of one layer kept in one blob, checked, as dtype [H, Tq, Tk] (no copy)."""
    if kind.heads_per_blob > 0:
        raise FormatError("%s attention is stored in blobs of %d heads: use layer_parts()"
                          % (kind.name, kind.heads_per_blob))
    return attention_part(kind, layer_index, 0, blob)


def zstd_layer(kind, layer_index, blob_of):
    """(the zstd bytes of a layer kept in one blob, checked; its shape) to
    send as they are stored (Content-Encoding: zstd, the browser inflates),
    or None when the layer is not one zstd blob of that shape (split,
    uncompressed, zlib). blob_of(index) reads a blob. The checks the
    plugin's own inflation makes on the way: the stored bytes' checksum, and
    a zstd frame declaring the raw length and carrying its checksum (which
    the browser's decoder verifies)."""
    ref, shape, what = _part_layout(kind, layer_index, 0)
    dt = _NUMPY.get(kind.dtype)
    if (kind.heads_per_blob > 0 or ref.compression != attention_pb2.ZSTD or dt is None
            or ref.raw_length != int(np.prod(shape)) * dt.itemsize):
        return None
    blob = blob_of(ref.index)
    check_blob(ref, blob, what)
    try:
        frame = zstandard.get_frame_parameters(blob)
    except zstandard.ZstdError as e:
        raise FormatError("%s is not a zstd frame (%s)" % (what, e)) from e
    if frame.content_size != ref.raw_length or not frame.has_checksum:
        raise FormatError("%s is a zstd frame of %d bytes%s where %d were written" % (
            what, frame.content_size, "" if frame.has_checksum else " without a checksum", ref.raw_length))
    return blob, shape


def to_float(stored):
    """Stored weights (uint8 round(w * 255), float16 or float) as float32."""
    if stored.dtype == np.uint8:
        return stored.astype(np.float32) / np.float32(255.0)
    return stored.astype(np.float32)


def key_heads(kind):
    """Key heads a Kind's neurons store: Kind.key_heads (grouped keys, format
    4), or one per query head."""
    return kind.key_heads or kind.num_heads


def neuron_layer(kind, layer_index, blob):
    """(queries f16 [H,Tq,D], keys f16 [Hk,Tk,D], masked u8 [Tq,Tk], bias f16 [H,Tq,Tk] or None,
    scale); Hk = key_heads(kind): query head h's keys are keys[h // (H // Hk)]."""
    return _neuron_parts(kind, layer_index, _open_neurons(kind, layer_index, blob))


def _open_neurons(kind, layer_index, blob):
    """One stored layer's neuron payload, checked, inflated and sized."""
    nl = kind.neurons[layer_index]
    raw = open_blob(nl.blob, blob, "%s neurons of layer %d" % (kind.name, kind.layer_ids[layer_index]))
    want = sum(sizes.neuron_sizes(kind.num_heads, len(kind.query_tokens), len(kind.key_tokens),
                                  kind.head_dim, nl.has_bias, key_heads(kind)))
    if want != len(raw):
        raise FormatError("%s neurons of layer %d have %d bytes, not the %d their header implies"
                          % (kind.name, kind.layer_ids[layer_index], len(raw), want))
    return raw


def _neuron_parts(kind, layer_index, raw):
    nl = kind.neurons[layer_index]
    H, Tq, Tk, D = kind.num_heads, len(kind.query_tokens), len(kind.key_tokens), kind.head_dim
    Hk = key_heads(kind)
    o = np.cumsum([0] + sizes.neuron_sizes(H, Tq, Tk, D, nl.has_bias, Hk))
    q = np.frombuffer(raw, "<f2", count=H * Tq * D, offset=o[0]).reshape(H, Tq, D)
    k = np.frombuffer(raw, "<f2", count=Hk * Tk * D, offset=o[1]).reshape(Hk, Tk, D)
    masked = np.frombuffer(raw, np.uint8, count=Tq * Tk, offset=o[2]).reshape(Tq, Tk)
    bias = None
    if nl.has_bias:
        bias = np.frombuffer(raw, "<f2", count=H * Tq * Tk, offset=o[3]).reshape(H, Tq, Tk)
    return q, k, masked, bias, nl.scale


def neuron_payload_per_head(kind, layer_index, blob):
    """One stored layer's neuron payload, checked and inflated (once), laid
    out with a key per query head (what the browser reads, whatever the step
    stores)."""
    raw = _open_neurons(kind, layer_index, blob)
    if key_heads(kind) == kind.num_heads:
        return raw
    q, k, masked, bias, _ = _neuron_parts(kind, layer_index, raw)
    parts = [q.tobytes(), expand_keys(k, kind.num_heads // k.shape[0], axis=0).tobytes(),
             masked.tobytes()]
    if bias is not None:
        parts.append(bias.tobytes())
    return b"".join(parts)


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
        attention = np.stack([
            np.concatenate([to_float(attention_part(k, i, p, blob(ref)))
                            for p, (ref, _, _) in enumerate(layer_parts(k, i))])
            for i in range(len(k.layer_ids))])
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
                               for p in parts]).astype(np.float32) if has_bias else None,
                **score_steps(k))
        kinds.append(KindRecord(
            name=k.name, attention=attention,
            query_tokens=tuple(token_strings(k.query_tokens)),
            key_tokens=tuple(token_strings(k.key_tokens)),
            layer_ids=tuple(k.layer_ids), query_segment_b=k.query_segment_b,
            key_segment_b=k.key_segment_b, causal=k.causal, neurons=neurons,
            no_neurons=k.no_neurons, has_sinks=k.has_sinks,
            key_special=special_keys(header, k.name)))
    return AttentionRecord(kinds, model_type=header.model_type, image=image_of(header))


# --------------------------------------------------------------------------
# Score steps beyond scale and bias (format version 3), and an image's layout


def put_score_steps(layer_proto, n, layer):
    """Store layer `layer`'s soft-cap and sinks of Neurons n in a NeuronLayer;
    True when it has either (the step then needs format version 3)."""
    used = False
    if n.softcaps is not None and n.softcaps[layer] > 0:
        layer_proto.softcap = float(n.softcaps[layer])
        used = True
    if n.sinks is not None and np.isfinite(n.sinks[layer]).any():
        layer_proto.sinks.extend(float(v) for v in n.sinks[layer])
        used = True
    return used


def score_steps(kind):
    """{"softcaps": float32 [L] or None, "sinks": float32 [L, H] or None} of a Kind header."""
    layers = kind.neurons
    softcaps = np.array([nl.softcap for nl in layers], np.float32)
    out = {"softcaps": softcaps if softcaps.any() else None, "sinks": None}
    if any(len(nl.sinks) for nl in layers):
        sinks = np.full((len(layers), kind.num_heads), -np.inf, np.float32)
        for i, nl in enumerate(layers):
            if len(nl.sinks):
                if len(nl.sinks) != kind.num_heads:
                    raise FormatError("the %s neurons of layer %d have %d sinks for %d heads"
                                      % (kind.name, kind.layer_ids[i], len(nl.sinks), kind.num_heads))
                sinks[i] = nl.sinks
        out["sinks"] = sinks
    return out


def put_image(header, image):
    if image is None:
        return
    im = header.image
    im.rows, im.cols, im.first_patch = image.rows, image.cols, image.first_patch
    im.patch_height, im.patch_width = image.patch_size
    im.height, im.width = image.size
    if image.thumbnail is not None:
        im.thumbnail_height, im.thumbnail_width = image.thumbnail.shape[:2]
        im.thumbnail = np.ascontiguousarray(image.thumbnail, np.uint8).tobytes()


def image_of(header):
    """The ImageLayout a step header stores, or None."""
    if not header.HasField("image"):
        return None
    im = header.image
    thumb = None
    if im.thumbnail:
        shape = (im.thumbnail_height, im.thumbnail_width, 3)
        if int(np.prod(shape)) != len(im.thumbnail):
            raise FormatError("the image thumbnail has %d bytes, not %s RGB" % (len(im.thumbnail), shape))
        thumb = np.frombuffer(im.thumbnail, np.uint8).reshape(shape).copy()
    return ImageLayout(rows=im.rows, cols=im.cols, first_patch=im.first_patch,
                       patch_size=(im.patch_height, im.patch_width), size=(im.height, im.width),
                       thumbnail=thumb)


# --------------------------------------------------------------------------
# The statistics a header stores


def _find_stats(header, kind_name):
    """The KindStats of kind_name in a StepHeader, or None (older steps have none)."""
    for s in header.stats:
        if s.kind == kind_name:
            return s
    return None


def special_keys(header, kind_name):
    """Key positions of special tokens stored with a step, or None when unknown."""
    s = _find_stats(header, kind_name)
    if s is None or not s.special_known:
        return None
    return tuple(int(j) for j in s.special_keys)


def stored_stats(header, kind_name):
    """(layer_ids, num_heads, {stat: float32 [L, H] or None}) of one step's
    stored statistics for kind_name, or None when the step has no such kind.
    A step written before statistics existed gives every value None."""
    try:
        kind = find_kind(header, kind_name)
    except KeyError:
        return None
    L, H = len(kind.layer_ids), kind.num_heads
    s = _find_stats(header, kind_name)
    values = {}
    for stat in STAT_FIELDS:
        raw = getattr(s, stat) if s is not None else ()
        values[stat] = np.asarray(raw, np.float32).reshape(L, H) if len(raw) == L * H else None
    return tuple(int(i) for i in kind.layer_ids), H, values
