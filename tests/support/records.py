"""Attention records to log, and what the format stores for them (computed
here with plain numpy, never through the code under test)."""
import numpy as np

from tb_attention.record import AttentionRecord, KindRecord, Neurons

UINT8_TOL = 1.0 / 510 + 1e-6  # uint8 keeps a weight to within half of 1/255
FLOAT16_TOL = 2.0 ** -12 + 1e-7  # half of float16's spacing just below 1.0 (2**-11)


def softmax(rng, L, H, Tq, Tk, causal=False, sharpness=3.0):
    """Random attention rows that sum to 1 (peaked, like a trained model's);
    causal: key j > query i (aligned at the end) gets no weight."""
    x = rng.standard_normal((L, H, Tq, Tk)).astype(np.float32) * sharpness
    if causal:
        x = np.where(np.tril(np.ones((Tq, Tk), bool), Tk - Tq), x, -np.inf)
    e = np.exp(x - x.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def stored(att, dtype="uint8"):
    """The bytes the format stores for float weights att (docs/routes.md)."""
    if dtype == "uint8":
        return np.rint(np.clip(att, 0, 1) * 255).astype(np.uint8)
    return att.astype("<f2")


def plain(ref, blob):
    """A stored blob's raw bytes, inflated by the codec's library itself (not
    by tb_attention.codec): the oracle for what format 4 compresses."""
    from tb_attention.proto import attention_pb2
    if ref.compression == attention_pb2.ZSTD:
        import zstandard
        return zstandard.ZstdDecompressor().decompress(blob, max_output_size=ref.raw_length)
    if ref.compression == attention_pb2.ZLIB:
        import zlib
        return zlib.decompress(blob)
    return blob


def tokens(n, prefix="t"):
    return ["%s%d" % (prefix, i) for i in range(n)]


def self_record(rng, L, H, tokens, layer_ids=None, segment_b=0, causal=False, model_type=""):
    T = len(tokens)
    kind = KindRecord(name="self", attention=softmax(rng, L, H, T, T, causal),
                      query_tokens=tuple(tokens), key_tokens=tuple(tokens),
                      layer_ids=tuple(layer_ids if layer_ids is not None else range(L)),
                      query_segment_b=segment_b, key_segment_b=segment_b, causal=causal)
    return AttentionRecord([kind], model_type=model_type)


def neurons_for(rng, L, H, Tq, Tk, D, masked, bias):
    """(Neurons, the attention they give) of random queries and keys."""
    queries = rng.standard_normal((L, H, Tq, D)).astype(np.float32)
    keys = rng.standard_normal((L, H, Tk, D)).astype(np.float32)
    scales = np.full(L, 1 / np.sqrt(D), np.float32)
    b = rng.standard_normal((L, H, Tq, Tk)).astype(np.float32) if bias else None
    n = Neurons(queries=queries, keys=keys, scales=scales, masked=masked, bias=b)
    return n, reference_attention(queries, keys, scales, masked, b)


def row_softmax(x):
    """Softmax over the last axis, in plain numpy; a row of only -inf gives 0s."""
    top = np.max(x, axis=-1, keepdims=True)
    e = np.exp(x - np.where(np.isfinite(top), top, 0.0))
    total = e.sum(axis=-1, keepdims=True)
    return e / np.where(total > 0, total, 1.0)


def reference_attention(queries, keys, scales, masked, bias=None):
    """The attention queries and keys give (softmax of q.k * scale + bias,
    masked keys excluded), in float64 by einsum: the tests' oracle, not
    tb_attention.record.softmax_scores. Shapes as in Neurons."""
    scores = np.einsum("lhqd,lhkd->lhqk", np.asarray(queries, np.float64), np.asarray(keys, np.float64))
    scores = scores * np.asarray(scales, np.float64)[:, None, None, None]
    if bias is not None:
        scores = scores + np.asarray(bias, np.float64)
    scores = np.where(np.asarray(masked, bool)[:, None], -np.inf, scores)
    return row_softmax(scores).astype(np.float32)


def neuron_kind(name, L, H, q_tokens, k_tokens, rng, causal=False, bias=False, D=8):
    """A KindRecord with random queries and keys (and score bias) and the attention they give."""
    Tq, Tk = len(q_tokens), len(k_tokens)
    q = rng.standard_normal((L, H, Tq, D)).astype(np.float32)
    k = rng.standard_normal((L, H, Tk, D)).astype(np.float32)
    scales = np.full((L,), 1.0 / np.sqrt(D), np.float32)
    masked = np.zeros((L, Tq, Tk), bool)
    if causal:
        masked[:] = np.triu(np.ones((Tq, Tk), bool), 1)
    b = (rng.standard_normal((L, H, Tq, Tk)) * 0.5).astype(np.float32) if bias else None
    att = reference_attention(q, k, scales, masked, b)
    return KindRecord(name=name, attention=att, query_tokens=tuple(q_tokens), key_tokens=tuple(k_tokens),
                      layer_ids=tuple(range(L)), causal=causal,
                      neurons=Neurons(queries=q, keys=k, scales=scales, masked=masked, bias=b))
