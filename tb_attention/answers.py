"""The bodies of the plugin's answers (docs/routes.md), built from what was read: pure functions.

Nothing here reads or caches: tb_attention.store reads the steps, the
plugin's routes hand what it read to these functions and send the result.
They raise TensorBoard's NotFoundError / InvalidArgumentError for a request
that names something the data does not hold.
"""
import base64
import collections
import math

import numpy as np
from tensorboard import errors

from tb_attention import codec
from tb_attention import compare as _compare
from tb_attention import provenance as _provenance
from tb_attention import stats as _stats


def tags(infos):
    """`tags`: {(run, tag): store.TagInfo} -> every run and its tags, sorted."""
    by_run = collections.defaultdict(dict)
    for (run, tag), info in infos.items():
        entry = {"tag": tag, "max_step": info.max_step}
        if info.metadata_error:
            entry["error"] = info.metadata_error
        by_run[run][tag] = entry
    return {"runs": [{"run": run, "tags": [by_run[run][tag] for tag in sorted(by_run[run])]}
                     for run in sorted(by_run)]}


def step_version(wall_time):
    """The version of a kept step (the `v` of docs/routes.md): its wall time
    in whole microseconds. A step logged again (the run deleted and logged
    anew, or logged again into its folder) has another one, so a URL that
    carries it names one step's data for good."""
    return int(round(float(wall_time) * 1e6))


def kind_summary(kind):
    return {
        "name": kind.name, "layer_ids": list(kind.layer_ids), "num_heads": kind.num_heads,
        "query_len": len(kind.query_tokens), "key_len": len(kind.key_tokens),
        "has_neurons": len(kind.neurons) > 0, "causal": kind.causal,
    }


def steps(run, tag, data, newest, error, writers=()):
    """`steps`: data the tag's kept steps; newest (header, how many newer
    steps were unreadable) of the newest readable step, header None when
    none is; error the first problem met, or None; writers (writer_id, wall
    time) of some steps (provenance.concurrent_writers)."""
    header, newer = newest
    body = {"run": run, "tag": tag, "steps": [d.step for d in data], "kept": len(data),
            "versions": [step_version(d.wall_time) for d in data]}
    if header is None:
        body.update(model_type="", kinds=[], written=len(data))
    else:
        body.update(model_type=header.model_type,
                    written=max(len(data), header.sequence + 1 + newer),
                    kinds=[kind_summary(k) for k in header.kinds])
    if error:
        body["error"] = error
    concurrent = _provenance.concurrent_writers(writers)
    if concurrent:
        body["warning"] = _provenance.warning(run, tag, concurrent)
    return body


def header(step, wall_time, step_header):
    """`header` of one step: its kinds with their tokens."""
    return {
        "step": step, "wall_time": wall_time, "sequence": step_header.sequence,
        "model_type": step_header.model_type,
        "kinds": [dict(kind_summary(k),
                       query_tokens=codec.token_strings(k.query_tokens),
                       key_tokens=codec.token_strings(k.key_tokens),
                       query_segment_b=k.query_segment_b, key_segment_b=k.key_segment_b,
                       dtype=codec.DTYPE_NAMES.get(k.dtype, "unknown"), head_dim=k.head_dim,
                       no_neurons=k.no_neurons, has_sinks=k.has_sinks)
                  for k in step_header.kinds],
        "image": image_json(step_header),
    }


def image_json(step_header):
    """The header's "image": where an image's patches are among the positions
    and a small RGB copy of it (base64 of uint8 rows), or None."""
    if not step_header.HasField("image"):
        return None
    im = step_header.image
    return {"rows": im.rows, "cols": im.cols, "first_patch": im.first_patch,
            "patch_height": im.patch_height, "patch_width": im.patch_width,
            "height": im.height, "width": im.width,
            "thumbnail_height": im.thumbnail_height, "thumbnail_width": im.thumbnail_width,
            "thumbnail_rgb": base64.b64encode(im.thumbnail).decode("ascii")}


def layer_index(kind, layer, step):
    """Index of model layer `layer` among the kind's stored layers; 404 when not stored."""
    layer_ids = list(kind.layer_ids)
    if layer not in layer_ids:
        raise errors.NotFoundError("no layer %d in %s attention at step %d; layers: %s"
                                   % (layer, kind.name, step, layer_ids))
    return layer_ids.index(layer)


def check_head(kind, head):
    if head is not None and head >= kind.num_heads:
        raise errors.NotFoundError("no head %d: %s attention has %d heads (0..%d)"
                                   % (head, kind.name, kind.num_heads, kind.num_heads - 1))


def max_pool(maps, size):
    """[H, Tq, Tk] -> [H, ceil(Tq/pq), ceil(Tk/pk)] by max over pq x pk cells,
    with pq = ceil(Tq/size) (1 when the map already fits)."""
    H, Tq, Tk = maps.shape
    pq, pk = max(1, math.ceil(Tq / size)), max(1, math.ceil(Tk / size))
    if pq == 1 and pk == 1:
        return maps, 1, 1
    Sq, Sk = math.ceil(Tq / pq), math.ceil(Tk / pk)
    padded = maps
    if (Sq * pq, Sk * pk) != (Tq, Tk):
        padded = np.zeros((H, Sq * pq, Sk * pk), dtype=maps.dtype)
        padded[:, :Tq, :Tk] = maps
    if pk > 16:
        return padded.reshape(H, Sq, pq, Sk, pk).max(axis=(2, 4)), pq, pk
    # numpy reduces short strided axes slowly (34 ms for 12 heads at 512 tokens):
    # take the max over the key cell as pk strided slices (5 ms), then over
    # the query rows, which are contiguous.
    cells = padded.reshape(H, Sq * pq, Sk, pk)
    cols = cells[..., 0].copy()
    for k in range(1, pk):
        np.maximum(cols, cells[..., k], out=cols)
    return cols.reshape(H, Sq, pq, Sk).max(axis=2), pq, pk


def overview(num_layers, parts, size):
    """`overview`: parts (layer index, stored [heads, Tq, Tk]) of every blob
    of every layer, in order -> (uint8 [L, H, Sq, Sk], (pq, pk)): each map
    max-pooled to at most size x size."""
    pooled = collections.defaultdict(list)
    pq = pk = 1
    for index, stored in parts:
        maps, pq, pk = max_pool(stored, size)
        if maps.dtype != np.uint8:
            maps = codec.quantize(maps.astype(np.float32), codec.DTYPES["uint8"])
        pooled[index].append(maps)
    return np.stack([np.concatenate(pooled[i]) for i in range(num_layers)]), (pq, pk)


def stats(run, tag, kind, steps, per_step, problems):
    """`stats`: per_step the {kind: codec.stored_stats} of each step (None
    when unreadable), problems those steps' errors; kind None picks the only one."""
    try:
        kind = _stats.choose_kind((name for item in per_step for name in item or ()), kind)
    except _stats.AmbiguousKind as e:
        raise errors.InvalidArgumentError("tag %r has several attention kinds %s: "
                                          "pass kind=" % (tag, e.names)) from None
    except _stats.UnknownKind as e:
        if kind is None:
            raise errors.NotFoundError("no readable step of tag %r in run %r" % (tag, run)) from None
        raise errors.NotFoundError("no attention kind %r in tag %r; kinds: %s"
                                   % (kind, tag, e.names)) from None
    steps, layer_ids, heads, arrays, bounds = _stats.collect(
        steps, [(item or {}).get(kind) for item in per_step])
    return {
        "run": run, "tag": tag, "kind": kind,
        "steps": steps.tolist(), "layer_ids": layer_ids.tolist(), "num_heads": heads,
        "stats": {n: _stats.json_rows(arrays[n]) for n in _stats.NAMES},
        "descriptions": dict(_stats.DESCRIPTIONS),
        "errors": problems,
        # null, or the totals there are when steps / layers / heads were left out
        "bounded": None if bounds is None else {
            "steps": bounds.steps, "layers": bounds.layers, "heads": bounds.heads,
            "max_values": bounds.limit},
    }


def check_comparable(name, key_a, kind_a, key_b, kind_b):
    """400 naming both steps when their layers or head counts differ."""
    problem = _compare.structure_mismatch(kind_a.layer_ids, kind_a.num_heads,
                                          kind_b.layer_ids, kind_b.num_heads)
    if problem is not None:
        other = "" if key_b.tag == key_a.tag else " of tag %r" % (key_b.tag,)
        raise errors.InvalidArgumentError(
            "cannot compare %s attention of run %r step %d with run %r step %d%s: %s"
            % (name, key_a.run, key_a.step, key_b.run, key_b.step, other, problem))


def token_differences(kind_a, kind_b):
    return _compare.token_differences(
        codec.token_strings(kind_a.query_tokens), codec.token_strings(kind_a.key_tokens),
        codec.token_strings(kind_b.query_tokens), codec.token_strings(kind_b.key_tokens))


def head_jsd(a, b):
    """float32 [H]: mean JSD of each head of two layers as float [H, Tq, Tk];
    a head at a time bounds the temporaries (a few times one head's map)."""
    return np.array([_compare.mean_jsd(a[h], b[h]) for h in range(a.shape[0])], np.float32)


def compare(tag, name, key_a, key_b, kind, tokens, jsd, wall_times, verdict=False):
    """`compare`: jsd the head_jsd() of each layer of the two steps, or None
    when their tokens differ or only the verdict was asked for; wall_times
    those of the two steps (their versions)."""
    b = {"run": key_b.run, "step": key_b.step, "wall_time": wall_times[1]}
    if key_b.tag != tag:
        b["tag"] = key_b.tag
    body = {
        "tag": tag, "kind": name,
        "a": {"run": key_a.run, "step": key_a.step, "wall_time": wall_times[0]}, "b": b,
        "layer_ids": list(kind.layer_ids), "num_heads": kind.num_heads,
        "units": "nats", "max": _compare.LN2,
        "jsd": None if jsd is None else _compare.json_matrix(np.stack(jsd)), "tokens": tokens,
    }
    if verdict:
        body["verdict"] = True
    return body
