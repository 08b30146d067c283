"""Aggregates over heads: the mean or the max of stacked attention maps (the
heads of a layer, or every head of every layer), as the `attention` route
answers them for `head=mean|max` (docs/routes.md). frontend/aggregate.js does
the same arithmetic for the head view and for data handed in without a server;
tests/fixtures/golden/aggregate.json pins both.

Maps are added a few at a time (a layer's blobs as they are read), so the
aggregate of every layer never holds them all. Stored uint8 maps (weight =
byte / 255) average to the mean of the bytes rounded half up, computed in
integers: floor((2 * sum + n) / (2 * n)); it is within 1/255 of the mean of
the weights they quantise. float16 maps average and max in float32 and are
answered as float16.
"""
import numpy as np

HOWS = ("mean", "max")


class Aggregate:
    """The mean or max of the maps given to add(), answered by result()."""

    def __init__(self, how):
        if how not in HOWS:
            raise ValueError("aggregate must be one of %s, not %r" % (", ".join(HOWS), how))
        self.how = how
        self.acc = None
        self.count = 0
        self.dtype = None

    def add(self, maps):
        """maps: [n, Tq, Tk] of one dtype (uint8 or float16), as stored."""
        maps = np.asarray(maps)
        if self.dtype is None:
            self.dtype = maps.dtype
        elif maps.dtype != self.dtype:
            raise ValueError("cannot aggregate %s maps with %s maps" % (maps.dtype, self.dtype))
        exact = maps.dtype == np.uint8
        if self.how == "max":
            part = maps.max(axis=0) if exact else maps.astype(np.float32).max(axis=0)
            self.acc = part if self.acc is None else np.maximum(self.acc, part)
        else:
            part = maps.sum(axis=0, dtype=np.int64 if exact else np.float32)
            self.acc = part if self.acc is None else self.acc + part
        self.count += maps.shape[0]

    def result(self):
        """[1, Tq, Tk] in the maps' dtype."""
        if self.acc is None:
            raise ValueError("no maps to aggregate")
        if self.how == "max":
            out = self.acc
        elif self.dtype == np.uint8:
            out = (2 * self.acc + self.count) // (2 * self.count)
        else:
            out = self.acc / np.float32(self.count)
        return out.astype(self.dtype)[None]


def aggregate(maps, how):
    """The mean or max of [n, Tq, Tk] maps: [1, Tq, Tk]."""
    agg = Aggregate(how)
    agg.add(maps)
    return agg.result()
