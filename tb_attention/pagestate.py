"""The state a page of attention opens on: show()'s keyword arguments as the
dashboard's URL keys (frontend/state.js decodeState reads them), checked
against what the bundled frontend knows (its views and state keys, read from
page_bundle.js's tba-meta line, so they cannot drift) and against the steps
in the page: a wrong name or value is an error naming the argument, never a
silent fallback.
"""
import json
import os
import re

import numpy as np

from tb_attention.record import AttentionInputError
from tb_attention.stats import NAMES as STAT_NAMES

BUNDLE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page_bundle.js")


class PageError(AttentionInputError):
    """A page that cannot be made as asked: the message names the argument."""


_STR_KEYS = ("run", "tag", "kind", "stat", "brun", "cmode", "pair")
_INT_KEYS = ("step", "bstep", "layer", "head", "query", "zoom")
_LIST_KEYS = ("heads", "mlayers", "mheads")


def bundle_meta():
    """What the bundle says of the frontend it holds: views, state keys, version (tools/bundle.py)."""
    with open(BUNDLE_PATH, encoding="utf-8") as f:
        for line in f:
            if line.startswith("// tba-meta: "):
                return json.loads(line[len("// tba-meta: "):])
    raise RuntimeError("%s has no tba-meta line: rebuild it with tools/bundle.py" % BUNDLE_PATH)


def _int(key, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise PageError("%s must be a non-negative int, got %r" % (key, value))
    return int(value)


def _range(ints):
    """[0, 1, 2, 5] -> "0-2,5" (state.js formatRange)."""
    xs, parts, i = sorted(set(ints)), [], 0
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and xs[j + 1] == xs[j] + 1:
            j += 1
        parts.append("%d-%d" % (xs[i], xs[j]) if j > i else "%d" % xs[i])
        i = j + 1
    return ",".join(parts)


def _state_value(key, value, meta):
    """One state argument -> its text as the dashboard's URL keys hold it (state.js decodeState)."""
    if key in _STR_KEYS:
        if not isinstance(value, str) or not value:
            raise PageError("%s must be a non-empty str, got %r" % (key, value))
        choices = {"cmode": meta["cmodes"], "pair": meta["pairs"], "stat": STAT_NAMES}.get(key)
        if choices and value not in choices:
            raise PageError("%s=%r is not one of %s" % (key, value, list(choices)))
        return value
    if key in _INT_KEYS:
        return str(_int(key, value))
    if key in _LIST_KEYS:
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            value = [value]
        if isinstance(value, str) or not hasattr(value, "__iter__"):
            raise PageError("%s must be a list of ints, got %r" % (key, value))
        ints = [_int(key, v) for v in value]
        if not ints:
            if key != "heads":
                raise PageError("%s must name at least one; leave it out for all" % key)
            return "none"
        return _range(ints)
    if key == "hover":
        m = re.fullmatch(r"([qk])([0-9]{1,7})", value) if isinstance(value, str) else None
        if m:
            return value
        if not isinstance(value, tuple) or len(value) != 2 or value[0] not in ("q", "k"):
            raise PageError("hover must be ('q' or 'k', token index) or like 'q3', got %r" % (value,))
        return "%s%d" % (value[0], _int("hover's token index", value[1]))
    if key == "raw":
        if not isinstance(value, (bool, np.bool_)):
            raise PageError("raw must be True or False, got %r" % (value,))
        return "1" if value else "0"
    raise PageError("unknown state argument %r" % key)


def _shown(state, entries):
    """The run, probe, step entry and kind the page opens on (as resolveState picks them)."""
    runs = sorted({e["run"] for e in entries})
    run = state.get("run", runs[0])
    if run not in runs:
        raise PageError("run=%r is not in the page; runs: %s" % (run, runs))
    tags = sorted({e["tag"] for e in entries if e["run"] == run})
    tag = state.get("tag", tags[0])
    if tag not in tags:
        raise PageError("tag=%r is not a probe of run %r; probes: %s" % (tag, run, tags))
    mine = sorted((e for e in entries if e["run"] == run and e["tag"] == tag), key=lambda e: e["step"])
    step = state.get("step")
    entry = mine[-1] if step is None else next((e for e in mine if e["step"] == step), None)
    if entry is None:
        raise PageError("step=%r is not a step of %r in run %r; steps: %s" % (step, tag, run, [e["step"] for e in mine]))
    kinds = entry["header"]["kinds"]
    kind = next((k for k in kinds if k["name"] == state.get("kind", kinds[0]["name"])), None)
    if kind is None:
        raise PageError("kind=%r is not at that step; kinds: %s" % (state["kind"], [k["name"] for k in kinds]))
    return entry, kind


def _check_shown(state, entries):
    entry, kind = _shown(state, entries)
    layers, H, Tq = kind["layer_ids"], kind["num_heads"], len(kind["query_tokens"])
    if state.get("layer", layers[0]) not in layers:
        raise PageError("layer=%r: the attention has layers %s" % (state["layer"], layers))
    for key in ("head", "heads", "mheads"):
        bad = [h for h in np.atleast_1d(state.get(key, [])) if h >= H]
        if bad:
            raise PageError("%s=%r: the attention has heads 0..%d" % (key, state[key], H - 1))
    if [lid for lid in state.get("mlayers", []) if lid not in layers]:
        raise PageError("mlayers=%r: the attention has layers %s" % (state["mlayers"], layers))
    if state.get("query", 0) >= Tq:
        raise PageError("query=%r: there are %d query tokens (0..%d)" % (state["query"], Tq, Tq - 1))
    if "brun" in state and state["brun"] not in {e["run"] for e in entries}:
        raise PageError("brun=%r is not in the page; runs: %s" % (state["brun"], sorted({e["run"] for e in entries})))
    return entry, kind


def page_state(view, state, entries, views):
    """The state arguments as URL keys, checked against the views and the steps."""
    meta = bundle_meta()
    if view not in meta["views"]:
        raise PageError("view=%r is not a view; views: %s" % (view, ", ".join(meta["views"])))
    if view not in views:
        raise PageError("view=%r is not among views=%s" % (view, views))
    unknown = sorted(set(state) - set(meta["state_keys"]) - {"view"})
    if unknown:
        raise PageError("unknown state argument%s %s; state arguments: %s"
                        % ("s" if len(unknown) > 1 else "", ", ".join(unknown), ", ".join(k for k in meta["state_keys"] if k != "view")))
    given = {k: v for k, v in state.items() if v is not None}
    keys = {k: _state_value(k, v, meta) for k, v in given.items()}
    keys["view"] = view
    return keys, _check_shown(given, entries)
