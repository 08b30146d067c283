"""The sizes a step header claims, checked against the blob sizes it lists
before anything is sized by them.

A step header says how many layers, heads and tokens a kind has, and lists
the BlobRef (index, length) of every blob. The plugin sizes arrays by those
numbers (stats over steps, the overview, a step's answers in the browser)
before it reads any blob: one crafted header claiming num_heads = 2**31 - 1
made the stats route allocate steps x layers x 2**31 values and the kernel
killed TensorBoard. So a header whose counts do not multiply out to the
lengths of the blobs it lists is corrupt (FormatError), and every read then
checks each blob against its BlobRef (codec.check_blob), so no size comes
from anywhere but bytes that exist.
"""
from tb_attention.metadata import FormatError
from tb_attention.proto import attention_pb2

_ITEMSIZE = {attention_pb2.UINT8: 1, attention_pb2.FLOAT16: 2}  # bytes per stored weight


def payload_length(ref):
    """Bytes of a blob's payload: inflated when compressed (format 4)."""
    return ref.raw_length if ref.compression else ref.length


def check_header(header):
    """FormatError naming the first kind whose sizes do not add up."""
    for kind in header.kinds:
        _check_counts(kind)
        _check_attention(kind)
        _check_neurons(kind)


def _check_counts(kind):
    L, H = len(kind.layer_ids), kind.num_heads
    if L < 1 or H < 1:
        raise FormatError("the %s header lists %d layers of %d heads: nothing to show"
                          % (kind.name, L, H))
    if kind.dtype not in _ITEMSIZE:
        raise FormatError("unknown attention dtype %d" % kind.dtype)


def _check_attention(kind):
    L, H = len(kind.layer_ids), kind.num_heads
    per_blob = kind.heads_per_blob if kind.heads_per_blob > 0 else H
    parts = -(-H // per_blob)
    if len(kind.attention) != parts * L:  # before any loop over the claimed heads
        raise FormatError("the %s header claims %d layers of %d heads (%d blobs each) but "
                          "lists %d attention blobs" % (kind.name, L, H, parts, len(kind.attention)))
    per_head = len(kind.query_tokens) * len(kind.key_tokens) * _ITEMSIZE[kind.dtype]
    for i, ref in enumerate(kind.attention):
        heads = min(H, (i % parts + 1) * per_blob) - (i % parts) * per_blob
        if payload_length(ref) != heads * per_head:
            raise FormatError(
                "the %s header claims %d heads of %d x %d weights for layer %d, %d bytes, "
                "but lists its blob %d with %d bytes"
                % (kind.name, heads, len(kind.query_tokens), len(kind.key_tokens),
                   kind.layer_ids[i // parts], heads * per_head, ref.index, payload_length(ref)))


def neuron_sizes(H, Tq, Tk, D, has_bias, key_heads=None):
    """Bytes of queries, keys, mask and bias in one layer's neuron blob
    (keys of key_heads heads: grouped keys; H when None)."""
    Hk = H if key_heads is None else key_heads
    return [H * Tq * D * 2, Hk * Tk * D * 2, Tq * Tk, H * Tq * Tk * 2 if has_bias else 0]


def _check_neurons(kind):
    L = len(kind.layer_ids)
    if len(kind.neurons) not in (0, L):
        raise FormatError("the %s header lists neurons for %d of its %d layers"
                          % (kind.name, len(kind.neurons), L))
    H, Tq, Tk, D = kind.num_heads, len(kind.query_tokens), len(kind.key_tokens), kind.head_dim
    Hk = kind.key_heads or H
    if Hk < 0 or H % Hk:
        raise FormatError("the %s header claims %d key heads for %d query heads, which do not "
                          "group over them" % (kind.name, Hk, H))
    for i, nl in enumerate(kind.neurons):
        want = sum(neuron_sizes(H, Tq, Tk, D, nl.has_bias, Hk))
        if payload_length(nl.blob) != want:
            raise FormatError("the %s header claims %d bytes of neurons for layer %d but lists "
                              "its blob %d with %d bytes"
                              % (kind.name, want, kind.layer_ids[i], nl.blob.index, payload_length(nl.blob)))
