"""Comparing two logged steps of one probe: how much each head's attention moved.

    compare.mean_jsd(a, b)          # [..., Tq, Tk] x 2 -> [...] mean JSD over query rows, nats
    compare.token_differences(a, b) # where two token lists disagree

The plugin's `compare` route (docs/routes.md) runs these over the stored
layers of two steps; they are pure numpy so tests check them against values
worked out by hand.

Jensen-Shannon divergence of two distributions p and q over the keys, with
m = (p + q) / 2 and natural logarithms (nats, 0 ln 0 = 0):

    JSD(p, q) = 1/2 sum_j p_j ln(p_j / m_j) + 1/2 sum_j q_j ln(q_j / m_j)

It is symmetric, 0 for identical rows and at most ln 2 (disjoint rows). Each
row is divided by its sum first: stored uint8 weights are rounded, so a row
sums to 1 only within T / 510, and without renormalizing two identical
distributions quantized differently would not give 0.

A query row counts when it is not fully masked in either step (its weights
sum to more than stats.ROW_EPSILON in both); a row masked in one step and not
the other has no distribution to compare on one side and is left out too.
"""
import math
from typing import Dict, List, Optional, Sequence

import numpy as np

from tb_attention.stats import ROW_EPSILON

LN2 = math.log(2.0)
_TINY = np.float32(np.finfo(np.float32).tiny)
# Token positions listed per side when two steps' tokens differ: enough to
# see the pattern, bounded so a 4096-token probe does not answer megabytes.
MAX_LISTED_DIFFERENCES = 50


def _entropy_terms(x):
    """sum_j x_j ln x_j over the last axis (0 ln 0 = 0: 0 * ln(tiny) is 0)."""
    return (x * np.log(np.maximum(x, _TINY))).sum(axis=-1, dtype=np.float64)


def jsd_rows(a: np.ndarray, b: np.ndarray):
    """Per-row JSD (nats) of two attention arrays [..., Tq, Tk] of one shape.

    Returns (jsd [..., Tq] float64, valid [..., Tq] bool); jsd is 0 where a
    row is not valid (fully masked in a or b).
    """
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if a.shape != b.shape:
        raise ValueError("cannot compare attention of shape %s with %s" % (a.shape, b.shape))
    if a.ndim < 2:
        raise ValueError("attention must be [..., query_len, key_len], got shape %s" % (a.shape,))
    sa = a.sum(axis=-1, dtype=np.float64)
    sb = b.sum(axis=-1, dtype=np.float64)
    valid = (sa > ROW_EPSILON) & (sb > ROW_EPSILON)
    p = a / np.where(valid, sa, 1.0).astype(np.float32)[..., None]
    q = b / np.where(valid, sb, 1.0).astype(np.float32)[..., None]
    # JSD = H(m) - (H(p) + H(q)) / 2 with m = (p + q) / 2: three passes over
    # the rows instead of two KL terms' six. Identical rows give m = p
    # exactly, so exactly 0; float32 keeps a 512-token layer's temporaries
    # small (the sums are float64).
    half_sum = 0.5 * (_entropy_terms(p) + _entropy_terms(q))
    m = p
    m += q
    m *= 0.5
    jsd = np.clip(half_sum - _entropy_terms(m), 0.0, LN2)  # rounding can stray just outside
    return np.where(valid, jsd, 0.0), valid


def mean_jsd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean JSD (nats) over the valid query rows: [..., Tq, Tk] x 2 -> float32 [...];
    NaN where no row is valid."""
    jsd, valid = jsd_rows(a, b)
    count = valid.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = jsd.sum(axis=-1) / count
    return np.where(count > 0, mean, np.nan).astype(np.float32)


def _side_differences(side: str, a: Sequence[str], b: Sequence[str]) -> Dict:
    positions = [i for i in range(min(len(a), len(b))) if a[i] != b[i]]
    listed = [{"position": i, "a": a[i], "b": b[i]} for i in positions[:MAX_LISTED_DIFFERENCES]]
    first = positions[0] if positions else (min(len(a), len(b)) if len(a) != len(b) else None)
    return {
        "side": side, "match": first is None, "len_a": len(a), "len_b": len(b),
        "first": first, "count": len(positions), "differences": listed,
    }


def token_differences(query_a: Sequence[str], key_a: Sequence[str],
                      query_b: Sequence[str], key_b: Sequence[str]) -> Dict:
    """Whether two steps' tokens are the same, and if not exactly where not.

    Returns {"match": bool, "message": str or None, "query": {...}, "key": {...}};
    each side says its lengths, the first differing position (the shorter
    length when one list is a prefix of the other; None when equal), how many
    positions of the common length differ, and the first few of them as
    {"position", "a", "b"}.
    """
    sides = {"query": _side_differences("query", query_a, query_b),
             "key": _side_differences("key", key_a, key_b)}
    bad = [s for s in ("query", "key") if not sides[s]["match"]]
    message = None
    if bad:
        s = sides[bad[0]]
        if s["first"] < min(s["len_a"], s["len_b"]):
            d = s["differences"][0]
            message = ("the %s tokens differ at position %d: A has %r, B has %r (%d of %d positions differ)"
                       % (bad[0], d["position"], d["a"], d["b"], s["count"], min(s["len_a"], s["len_b"])))
        else:
            message = ("A has %d %s tokens, B has %d (the first %d are the same)"
                       % (s["len_a"], bad[0], s["len_b"], s["first"]))
        message += ": the rows and columns cannot be aligned, so there is no difference to show"
    return {"match": not bad, "message": message, **sides}


def structure_mismatch(layer_ids_a: Sequence[int], heads_a: int,
                       layer_ids_b: Sequence[int], heads_b: int) -> Optional[str]:
    """Why two steps' layers cannot be compared head by head, or None."""
    if list(layer_ids_a) != list(layer_ids_b):
        return "A stores layers %s, B stores layers %s" % (list(layer_ids_a), list(layer_ids_b))
    if heads_a != heads_b:
        return "A has %d heads per layer, B has %d" % (heads_a, heads_b)
    return None


def json_matrix(values: np.ndarray) -> List[List[Optional[float]]]:
    """[L, H] floats as JSON rows, NaN as null."""
    return [[None if not np.isfinite(v) else float(v) for v in row] for row in values]
