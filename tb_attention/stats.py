"""Per-head statistics of attention, one number per (layer, head) and step: the maths.

    stats.compute(attention)            # float or uint8 [L, H, Tq, Tk] -> {name: [L, H] or None}
    tb_attention.load("runs").stats("run", "probe/cat")   # {name: [steps, L, H], "steps": ...}

This module is the maths only. The writer's background thread computes them
from the record's weights (float, or uint8 when capture quantized them on
the model's device; tb_attention.summary quantizes a layer and hands it to
an Accumulator while it is in the cache) and the codec stores them in the step header (StepHeader.stats,
proto/attention.proto) and reads them back, so a chart of a statistic over
steps reads only the small headers, never the attention itself.

Every statistic is a mean over the query rows i that are not fully masked
(rows whose weights sum to more than ROW_EPSILON; capture removes padding, so
such rows only come from raw tensors), with a_ij the weight of query i on key j:

  entropy          -sum_j a_ij ln a_ij, in nats (0 ln 0 = 0)
  max_weight       max_j a_ij
  first_token      a_i0: mass on the first token (the "attention sink")
  special_tokens   sum of a_ij over the keys j the tokenizer marks special
                   ([CLS], [SEP], <s>, ...); not known (NaN) for raw tensors
                   logged without special_tokens=
  distance         sum_j a_ij |i - j|: mean attention distance in tokens
  previous_token   a_i,i-1, over rows i >= 1: previous-token score

distance and previous_token compare positions in one sequence: they are not
defined (NaN) for cross attention, nor when the query and key lengths differ.
"""
import math
from typing import Dict, Iterable, NamedTuple, Optional, Sequence

import numpy as np

NAMES = ("entropy", "max_weight", "first_token", "special_tokens", "distance", "previous_token")

DESCRIPTIONS = {
    "entropy": "entropy of each query row's attention, in nats (mean over rows)",
    "max_weight": "largest weight of each query row (mean over rows)",
    "first_token": "weight on the first token, the attention sink (mean over rows)",
    "special_tokens": "weight on the tokens the tokenizer marks special (mean over rows)",
    "distance": "mean attention distance in tokens: sum_j a_ij |i - j| (mean over rows)",
    "previous_token": "weight on the previous token, a_i,i-1 (mean over rows i >= 1)",
}

# A query row whose weights sum to no more than this is fully masked.
ROW_EPSILON = 1e-6
# compute() works on at most this many weights at once (64 MiB as float32).
CHUNK_ELEMENTS = 16 * 2 ** 20


def relative_positions_defined(kind_name: str, query_len: int, key_len: int) -> bool:
    """distance and previous_token need queries and keys from one sequence."""
    return kind_name != "cross" and query_len == key_len


def _row_means(values, valid):
    """Means of values [k, ..., R] over the valid rows [..., R]: [k, ...];
    NaN where no row is valid."""
    count = valid.sum(axis=-1)
    total = np.where(valid, values, 0.0).sum(axis=-1, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    return np.where(count > 0, mean, np.nan).astype(np.float32)


# log(v + _TINY) is log(v) for every float32 v >= 1e-30 and finite for v = 0,
# where v * log(...) is then 0: the 0 ln 0 = 0 of the entropy without a mask.
_TINY = np.float32(np.finfo(np.float32).tiny)
# numpy's log2 is a third faster than its log on float32 (measured, 128 and
# 512 tokens); ln w = ln 2 * log2 w.
_LN2 = np.float32(math.log(2.0))


class _Plan:
    """What compute() needs per shape, made once per kind: the |i - j|
    matrix and the special key columns."""

    def __init__(self, Tq, Tk, special, relative):
        self.relative = relative
        self.dist = None
        if relative:
            pos = np.arange(Tq, dtype=np.float32)
            self.dist = np.abs(pos[:, None] - pos[None, :])  # [Tq, Tk]: |i - j|
        self.special = special


def _heads(raw, scale, plan, rows_out, valid_out):
    """The per-row statistics of a few heads raw [h, Tq, Tk] (float weights,
    or uint8 weights / scale) into rows_out [len(NAMES), h, Tq] and whether
    each row counts into valid_out [h, Tq]: one pass per term, no temporary
    larger than the heads as float32; the sums and the entropy and distance
    are fused multiply-sums (einsum: measured 3x faster than ndarray.sum over
    the key axis at 128 tokens), not products then sums. (Measured: a BLAS
    product with the few key columns instead of the sums below took 13 ms
    per layer of 12 heads at 512 tokens, the sums 1.5 ms.)"""
    v = np.asarray(raw, dtype=np.float32)  # [h, Tq, Tk]
    s = np.float32(scale)
    rows = np.einsum("hij->hi", v)
    np.greater(rows * s, ROW_EPSILON, out=valid_out)
    lg = np.add(v, _TINY)
    np.log2(lg, out=lg)
    # -sum_j w ln w with w = s v: -s (ln 2 sum_j v log2 v + ln s sum_j v)
    vlogv = np.einsum("hij,hij->hi", v, lg)
    del lg
    rows_out[_ENTROPY] = -s * (_LN2 * vlogv + np.float32(math.log(scale)) * rows)
    rows_out[_MAX_WEIGHT] = raw.max(axis=-1) * s
    rows_out[_FIRST_TOKEN] = v[..., 0] * s
    if plan.special is not None and plan.special.size:
        rows_out[_SPECIAL_TOKENS] = v[..., plan.special].sum(axis=-1) * s
    if plan.relative:
        rows_out[_DISTANCE] = np.einsum("hij,ij->hi", v, plan.dist) * s
        # a_i,i-1 in row i; row 0 has none and is left out of its mean
        rows_out[_PREVIOUS_TOKEN, :, 1:] = np.diagonal(v, offset=-1, axis1=-2, axis2=-1) * s


_ENTROPY, _MAX_WEIGHT, _FIRST_TOKEN, _SPECIAL_TOKENS, _DISTANCE, _PREVIOUS_TOKEN = range(len(NAMES))


def compute(attention: np.ndarray, key_special: Optional[Sequence[int]] = None,
            relative: bool = True) -> Dict[str, Optional[np.ndarray]]:
    """Statistics of one attention kind.

    attention: [L, H, Tq, Tk] float (rows are softmax distributions; fully
        masked rows are all zero and left out of every mean), or uint8, the
        stored form round(w * 255) of the weights w (codec.quantize): the
        statistics are then those of v / 255, the weights a reader gets back.
        Their error against the float statistics, measured: max_weight,
        first_token and previous_token within 1/510 (the rounding);
        special_tokens within n/510 for n special keys. Entropy and
        distance move most: weights below 1/510 round to 0, and a diffuse
        row of a long sequence has many. Random softmax rows, 12 heads:
        entropy off by up to 0.18 nats (of ~3) at 128 tokens and 0.50 at
        512, distance by 1 and 10 tokens (of ~40 and ~170); the pretrained
        MiniLM over 512 tokens of text: entropy up to 1.8 nats (of ~4.3),
        distance up to 48 tokens (of ~115). The writer computes them from
        floats whenever the record holds floats (summary.stored_layers).
    key_special: key positions of special tokens; None when not known, and
        then "special_tokens" is None.
    relative: whether query i and key i are the same position of one sequence
        (False for cross attention); when False "distance" and
        "previous_token" are None.

    Returns {name: float32 [L, H] or None} for every name in NAMES; NaN for a
    (layer, head) without a row to average over. Works a few heads at a time,
    so its temporaries are a few times those heads' size as float32.
    """
    if getattr(attention, "ndim", None) != 4:
        raise ValueError("attention must be [layers, heads, query_len, key_len], got shape %s"
                         % (getattr(attention, "shape", None),))
    acc = Accumulator(attention.shape, key_special, relative)
    for layer in range(attention.shape[0]):
        acc.add(layer, attention[layer])
    return acc.result()


class Accumulator:
    """compute(), one layer at a time: the writer quantizes a layer and
    takes its statistics while it is still in the cache.

        acc = Accumulator((L, H, Tq, Tk), key_special, relative)
        for layer in range(L): acc.add(layer, stored[layer])   # [H, Tq, Tk]
        acc.result()     # as compute()
    """

    def __init__(self, shape, key_special=None, relative=True):
        L, H, Tq, Tk = shape
        special = None
        if key_special is not None:
            special = np.asarray(sorted({int(j) for j in key_special}), dtype=np.int64)
            if special.size and (special[0] < 0 or special[-1] >= Tk):
                raise ValueError("special key positions %s are outside 0..%d"
                                 % (special.tolist(), Tk - 1))
        relative = bool(relative) and Tq == Tk
        self._plan = _Plan(Tq, Tk, special, relative)
        self._special_known = special is not None
        self._shape = (L, H, Tq, Tk)
        # Each row's statistics, averaged once in result(): averaging per
        # layer was a tenth of the writer's time at 128 tokens (numpy's
        # overhead per call). 24 bytes per row: 100 MB at 32 x 32 x 4096.
        self._rows = np.zeros((len(NAMES), L, H, Tq), np.float32)
        self._valid = np.zeros((L, H, Tq), bool)

    def add(self, layer, heads_of_layer, first_head=0):
        """The statistics of heads_of_layer [h, Tq, Tk], float or uint8 (see
        compute): heads first_head.. of the layer (all of them by default).
        Threads may add different heads at once."""
        _, H, Tq, Tk = self._shape
        scale = 1.0 / 255.0 if heads_of_layer.dtype == np.uint8 else 1.0
        # A few heads at a time: the temporaries are each as large as the
        # heads they work on (32 heads at 4096 tokens are 2 GiB as float32).
        step = max(1, CHUNK_ELEMENTS // max(1, Tq * Tk))
        for h0 in range(0, heads_of_layer.shape[0], step):
            h1 = min(heads_of_layer.shape[0], h0 + step)
            heads = slice(first_head + h0, first_head + h1)
            _heads(heads_of_layer[h0:h1], scale, self._plan, self._rows[:, layer, heads],
                   self._valid[layer, heads])

    def result(self):
        means = _row_means(self._rows[:_PREVIOUS_TOKEN], self._valid)
        out = dict(zip(NAMES, means))
        out["previous_token"] = _row_means(self._rows[_PREVIOUS_TOKEN, ..., 1:][None],
                                           self._valid[..., 1:])[0]
        if not self._special_known:
            out["special_tokens"] = None
        if not self._plan.relative:
            out["distance"] = out["previous_token"] = None
        return out


# --------------------------------------------------------------------------
# Over steps (the stored values come from codec.stored_stats)


def choose_kind(names: Iterable[str], kind: Optional[str]) -> str:
    """kind, checked against the kind names the steps hold (repeats allowed);
    None picks the only kind there is. Raises UnknownKind, or AmbiguousKind
    when kind is None and there are several."""
    names = list(dict.fromkeys(names))
    if kind is None:
        if len(names) == 1:
            return names[0]
        if not names:
            raise UnknownKind("no readable step holds attention", names)
        raise AmbiguousKind("several attention kinds %s: name one" % (names,), names)
    if kind not in names:
        raise UnknownKind("no attention kind %r; kinds: %s" % (kind, names), names)
    return kind


class UnknownKind(KeyError):
    """choose_kind(): no such kind, or no kind at all. .names: the kinds there are."""

    def __init__(self, message, names):
        super().__init__(message)
        self.names = names


class AmbiguousKind(UnknownKind):
    """choose_kind(kind=None) over steps holding several kinds."""


# The most values of one statistic collect() returns (the stats route's
# answer: six statistics, at most ~60 MB of JSON; 32 x 32 heads answer 512
# steps whole). Beyond it, steps are
# sampled evenly (the first and the newest kept) and, when one step alone
# has more layers x heads than this, only the first layers / heads are kept.
MAX_VALUES = 2 ** 19


class Bounds(NamedTuple):
    """What collect() left out to stay within MAX_VALUES: the totals there are."""

    steps: int
    layers: int
    heads: int
    limit: int


def _union(per_step):
    """(every layer id, the most heads) of the steps that stored values; of
    every step when none did. A header's counts without values behind them
    (a step without statistics, or a crafted one) shape nothing else."""
    items = [item for item in per_step if item is not None]
    valued = [item for item in items if any(v is not None for v in item[2].values())]
    layer_set, heads = set(), 0
    for ids, h, _ in valued or items:
        layer_set.update(ids)
        heads = max(heads, h)
    return sorted(layer_set), heads


def sample_evenly(count, keep):
    """Indices of `keep` of `count` items spread evenly, first and last included."""
    if count <= keep:
        return list(range(count))
    if keep <= 1:
        return [count - 1]
    return sorted({round(i * (count - 1) / (keep - 1)) for i in range(keep)})


def collect(steps: Sequence[int], per_step: Sequence[Optional[tuple]],
            limit: Optional[int] = MAX_VALUES):
    """Stack codec.stored_stats() results into arrays of at most `limit`
    values each (None: every value).

    steps: the steps, in order; per_step: stored_stats() of each (None for a step
    without the kind or whose header is unreadable).
    Returns (steps int64 [S], layer_ids int64 [L], num_heads, {name: float32
    [S, L, H]}, Bounds or None), layers being every layer id any step stored
    (sorted) and H the most heads any step had; what a step lacks is NaN.
    Bounds (the totals) when steps, layers or heads were left out. The
    arrays are sized after bounding: nothing larger is ever allocated.
    """
    all_layers, all_heads = _union(per_step)
    limit = len(steps) * max(1, len(all_layers)) * max(1, all_heads) if limit is None else limit
    heads = min(all_heads, limit)
    layer_ids = all_layers[:max(1, limit // max(1, heads))]
    kept = sample_evenly(len(steps), max(1, limit // max(1, len(layer_ids) * heads)))
    bounds = None
    if (len(kept), len(layer_ids), heads) != (len(steps), len(all_layers), all_heads):
        bounds = Bounds(len(steps), len(all_layers), all_heads, limit)
    row = {lid: i for i, lid in enumerate(layer_ids)}
    arrays = {name: np.full((len(kept), len(layer_ids), heads), np.nan, np.float32) for name in NAMES}
    for s, index in enumerate(kept):
        item = per_step[index]
        if item is None:
            continue
        ids, h, values = item
        pairs = [(r, row[i]) for r, i in enumerate(ids) if i in row]
        src, dst = [p[0] for p in pairs], [p[1] for p in pairs]
        h = min(h, heads)
        for name, v in values.items():
            if v is not None:
                arrays[name][s, dst, :h] = v[src, :h]
    return (np.asarray([steps[i] for i in kept], np.int64), np.asarray(layer_ids, np.int64),
            heads, arrays, bounds)


def json_rows(array: np.ndarray):
    """[S, L, H] -> [[L*H floats, row-major by layer then head] per step];
    NaN -> None (JSON null)."""
    S = array.shape[0]
    flat = array.reshape(S, -1)
    return [[None if math.isnan(x) else x for x in row.tolist()] for row in flat]
