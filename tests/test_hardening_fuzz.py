"""Hostile input through the routes (issue 7): fuzzed parameters of every
route and static path, hostile tokens, run / tag names and steps.

Routes are exercised through TensorBoard's own WSGI app over a real
EventMultiplexer and MultiplexerDataProvider (what `--load_fast=false` runs,
in process: fast enough to fuzz) and one real `tensorboard --load_fast=true`
subprocess (Rust data server), both over the session's `served` logdir
(tests/support/logdirs.py: build_served; fixtures in conftest.py).
"""
import os
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tb_attention import plugin as plugin_module
from tests.support.backends import PREFIX, get_ok as ok, quoted_url as q
from tests.support.logdirs import (HOSTILE_TOKENS, INVALID_UTF8_SHOWN, LONG_TOKEN, NAMED, NAMED_TAGS, STEPS,
                                   quiet_load, runs_listed)
from tests.support.records import stored


@pytest.fixture(params=["wsgi", "rust"])
def backend(request, served_backends):
    return served_backends[request.param]


def test_hostile_tokens_written_read_back_and_served_as_json_text(backend, served):
    assert len(LONG_TOKEN) == 100000
    rec = quiet_load(served.root).get("hostile", "tokens", 0)
    assert rec.tokens() == (tuple(HOSTILE_TOKENS), tuple(HOSTILE_TOKENS))
    r = ok(backend, "header", run="hostile", tag="tokens", step=0)
    assert r.headers["Content-Type"] == "application/json"
    kind = r.json()["kinds"][0]
    assert kind["query_tokens"] == HOSTILE_TOKENS and kind["key_tokens"] == HOSTILE_TOKENS
    # Invalid UTF-8 from another writer: U+FFFD (docs/routes.md), never an error.
    shown = ok(backend, "header", run="foreign/bytes", tag="tokens", step=0).json()["kinds"][0]["query_tokens"]
    assert shown == INVALID_UTF8_SHOWN
    assert quiet_load(served.root).get("foreign/bytes", "tokens", 0).tokens()[0] == tuple(INVALID_UTF8_SHOWN)


def test_run_and_tag_names_with_slashes_unicode_and_spaces(backend, served):
    listed = runs_listed(backend)
    assert {tag for run, tag in listed if run == NAMED} == set(NAMED_TAGS) | {"steps"}
    for tag in NAMED_TAGS:
        body = ok(backend, "attention", run=NAMED, tag=tag, step=7, kind="self", layer=0).body
        assert body == stored(served.written[(NAMED, tag, 7)].attention()[0]).tobytes()
        assert ok(backend, "stats", run=NAMED, tag=tag).json()["tag"] == tag
    r = backend.get(q("header", run=NAMED + "/..", tag="steps", step=0))
    assert r.status == 404 and NAMED + "/.." in r.error()


def test_steps_at_0_and_up_to_2_63_minus_1_are_exact_in_json(backend, served):
    r = backend.get(q("steps", run=NAMED, tag="steps"))
    assert r.status == 200
    # JSON integers, digit for digit (a JavaScript client parses the ones
    # above 2**53 to the nearest double: see the report to the coordinator)
    for step in STEPS:
        assert (b" %d," % step in r.body) or (b" %d]" % step in r.body) or (b"[%d," % step in r.body), step
    r = backend.get(q("tags"))
    assert r.status == 200 and b'"max_step": %d}' % max(STEPS) in r.body
    assert runs_listed(backend)[(NAMED, "steps")]["steps"] == STEPS
    for step in STEPS:
        assert ok(backend, "header", run=NAMED, tag="steps", step=step).json()["step"] == step
        body = ok(backend, "attention", run=NAMED, tag="steps", step=step, kind="self", layer=0).body
        assert body == stored(served.written[(NAMED, "steps", step)].attention()[0]).tobytes()
    for bad in (2 ** 63, 2 ** 64, -1, -(2 ** 63)):
        r = backend.get(q("header", run=NAMED, tag="steps", step=bad))
        assert r.status == 400 and "'step'" in r.error(), r
    r = backend.get(q("header", run=NAMED, tag="steps", step=2 ** 62 - 1))
    assert r.status == 404 and "no step %d" % (2 ** 62 - 1) in r.error()


# --------------------------------------------------------------------------
# Fuzzing every route's parameters

ROUTES = ("tags", "steps", "header", "attention", "overview", "neurons", "stats")
PARAMS = ("run", "tag", "step", "kind", "layer", "head", "size")
KNOWN = ["good", "probe", "self", "encoder", "cross", "format-v1", "probe/v1", "hostile", "tokens", NAMED,
         "steps", "foreign/ours", "garbage", "floats", "good/..", "0", "1", "2", "3", "5", "7", "10", "64",
         str(2 ** 62), str(2 ** 63 - 1), str(2 ** 63), str(2 ** 31), str(2 ** 31 - 1), "-1", "-0"]
NASTY = ["", "..", "../..", "%2e%2e", "%2e%2e%2f", "%00", "\x00", "%ff%fe", "%", "%zz", "%%", "%2", "9" * 400,
         "-" + "9" * 40, "+1", "1e3", "0x10", " 1", "1 ", "\u0661", "1.0", "1_0", "NaN", "inf", "null", "[]",
         "{}", "<script>", "\u202e", "\u200b", "%u0041", "%C0%AE%C0%AE", "..%5c..", "/etc/passwd"]
# Parameter values: what a page could send, what a script could send.
VALUES = st.one_of(
    st.sampled_from(KNOWN),
    st.sampled_from(NASTY),
    st.integers(min_value=-(2 ** 80), max_value=2 ** 80).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(alphabet=st.characters(exclude_categories=()), max_size=30),  # any code point, surrogates too
    st.binary(max_size=12).map(lambda b: "".join("%%%02X" % c for c in b)),  # raw percent-encoded bytes
)
STATIC_PARTS = st.one_of(
    st.sampled_from(["..", ".", "", "%2e%2e", "%2E%2E", "%2f", "%5c", "..%2f", "..%5c", "%00", "index.js",
                     "app.js", "style.css", "views", "tests", "README.md", "%2e%2e%2f%2e%2e%2fplugin.py",
                     "etc", "passwd", "..;", "~", "%252e%252e", "index.js%00.txt", "\\..\\"]),
    st.text(alphabet=st.characters(exclude_categories=()), max_size=8),
)
BAD_IN_BODY = (b"Traceback", b"object at 0x", b'File "', b"site-packages", b"Exception(", b"Error(")


def encode(value, keep_percent):
    # keep_percent: the value's own %xx reach the server undecoded by us
    return urllib.parse.quote(value, safe="%" if keep_percent else "", errors="surrogatepass")


@st.composite
def data_requests(draw):
    route = draw(st.sampled_from(ROUTES))
    keys = draw(st.lists(st.one_of(st.sampled_from(PARAMS), st.sampled_from(["", "x", "step[]", "%00"])),
                         max_size=9))
    query = "&".join("%s=%s" % (encode(k, True), encode(draw(VALUES), draw(st.booleans()))) for k in keys)
    return PREFIX + route + ("?" + query if query or draw(st.booleans()) else "")


VALID = [  # requests that answer 200; mutated_requests() breaks one or two parameters
    ("header", dict(run="good", tag="probe", step="1")),
    ("attention", dict(run="good", tag="probe", step="1", kind="self", layer="5", head="2")),
    ("overview", dict(run="format-v1", tag="probe/v1", step="10", kind="cross", size="3")),
    ("neurons", dict(run="format-v1", tag="probe/v1", step="0", kind="encoder", layer="3", head="1")),
    ("stats", dict(run="format-v1", tag="probe/v1", kind="encoder")),
    ("stats", dict(run="good", tag="probe")),
    ("steps", dict(run=NAMED, tag="steps")),
    ("header", dict(run=NAMED, tag="steps", step=str(2 ** 62))),
    ("attention", dict(run="foreign/ours", tag="good", step="0", kind="self", layer="0")),
    ("attention", dict(run="split", tag="probe", step="1", kind="self", layer="9", head="3")),
    ("overview", dict(run="split", tag="probe", step="0", kind="self", size="3")),
]


@st.composite
def mutated_requests(draw):
    route, params = draw(st.sampled_from(VALID))
    params = dict(params)
    for _ in range(draw(st.integers(1, 2))):
        key = draw(st.sampled_from(PARAMS))
        if draw(st.integers(0, 4)) == 0:
            params.pop(key, None)
        else:
            params[key] = draw(VALUES)
    keep = draw(st.booleans())
    return PREFIX + route + "?" + "&".join("%s=%s" % (k, encode(v, keep)) for k, v in params.items())


@st.composite
def static_requests(draw):
    parts = draw(st.lists(STATIC_PARTS, min_size=1, max_size=6))
    return PREFIX + "static/" + "/".join(encode(p, True) for p in parts)


def frontend_files():
    """Every file the installed package's frontend directory holds, by content."""
    root = plugin_module._frontend_root()
    contents = set()
    for dirpath, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(dirpath, name), "rb") as f:
                contents.add(f.read())
    return contents


def check_response(path, r, served_files):
    is_static = path.startswith(PREFIX + "static/")
    if not (is_static and r.status == 200):  # the dashboard's own JS may say "Error("
        for bad in BAD_IN_BODY:
            assert bad not in r.body, (path, r)
    if r.status == 200:
        if is_static:
            assert r.body in served_files, path  # nothing outside the frontend directory
        else:
            assert r.headers["Content-Type"] in ("application/json", "application/octet-stream"), (path, r)
        return
    if is_static and r.headers.get("Content-Type", "").startswith("text/plain") and r.status == 404:
        return  # TensorBoard's own 404 for a path no route matches (e.g. ".../static/" alone)
    assert r.status in (400, 404, 500), (path, r)
    message = r.error()  # {"error": {"message": str}} and nothing else
    assert isinstance(message, str) and message, (path, r)
    if r.status == 500:  # only the documented case: a step whose payload is corrupt
        assert "corrupt" in message or "not attention data" in message, (path, r)


def fuzz(backend, examples):
    served_files = frontend_files()
    assert served_files, "the installed package has no frontend files"
    seen = []

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(data_requests(), mutated_requests(), mutated_requests(), static_requests()))
    def one(path):
        r = backend.get(path)
        seen.append((path, r.status))
        check_response(path, r, served_files)

    one()
    return seen


FUZZ_EXAMPLES = {"wsgi": 1000, "rust": 300}


@pytest.mark.parametrize("name", sorted(FUZZ_EXAMPLES))
def test_fuzzed_route_parameters_never_500_nor_leak(served_backends, name):
    seen = fuzz(served_backends[name], FUZZ_EXAMPLES[name])
    assert len(seen) == FUZZ_EXAMPLES[name]
    statics = sum(p.startswith(PREFIX + "static/") for p, _ in seen)
    tally = {}
    for p, status in seen:
        key = ("static " if p.startswith(PREFIX + "static/") else "data ") + str(status)
        tally[key] = tally.get(key, 0) + 1
    print("fuzzed %s: %d requests (%d static paths): %s" % (name, len(seen), statics, sorted(tally.items())))
    # the fuzz reached past the parameter checks, not only into them
    assert statics > FUZZ_EXAMPLES[name] // 10
    assert all(tally.get("data %d" % s, 0) > 0 for s in (200, 400, 404)), tally
