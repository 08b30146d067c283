"""Sizes a hostile or unlucky logdir claims (issue 14): a step header's
counts are checked against the blobs it lists before anything is sized by
them, and the stats answer stays within stats.MAX_VALUES values a statistic.

Real `tensorboard` processes under both loaders over hand-built event files
(tests/support/events.py); each one's peak RSS is read from /proc.
"""
import os

import numpy as np
import pytest

from tb_attention import AttentionRecord, codec, load, stats, summary
from tb_attention.metadata import FormatError
from tb_attention.proto import attention_pb2
from tests.support import wait_until
from tests.support.backends import PREFIX, url
from tests.support.events import attention_event, write_event_file
from tests.support.records import self_record

HUGE = 2 ** 31 - 1
# A TensorBoard serving these small logdirs stays far below this; the crafted
# header made the plugin allocate steps x layers x 2**31 float32 values six
# times (the kernel killed it at 23 GB).
RSS_BOUND = 1500 * 2 ** 20
WIDE_STEPS = 800  # one layer id per step: 800 layers x 2 heads x 800 steps > MAX_VALUES


def blobs_of(record, sequence=0):
    return summary.step_blobs(record, sequence, "w" * 32)


def with_header(blobs, change):
    header = attention_pb2.StepHeader.FromString(blobs[0])
    change(header.kinds[0])
    return [header.SerializeToString()] + blobs[1:]


def huge_heads(kind):
    kind.num_heads = HUGE


def huge_heads_and_lengths(kind):
    """The crafted claim made consistent with itself: every BlobRef says it
    holds 2**31 - 1 heads (the blobs do not)."""
    kind.num_heads = HUGE
    for ref in kind.attention:
        ref.length = HUGE * len(kind.query_tokens) * len(kind.key_tokens)


def write_logdir(root):
    rng = np.random.default_rng(0)
    record = self_record(rng, 2, 2, list("abc"))
    crafted = [blobs_of(record, s) for s in range(3)]
    crafted.append(with_header(blobs_of(record, 3), huge_heads))
    crafted.append(with_header(blobs_of(record, 4), huge_heads_and_lengths))
    write_event_file(os.path.join(root, "crafted"),
                     [attention_event("probe", s, b) for s, b in enumerate(crafted)])
    wide = [attention_event("probe", s, blobs_of(self_record(rng, 1, 2, list("ab"), layer_ids=[s]), s))
            for s in range(WIDE_STEPS)]
    write_event_file(os.path.join(root, "wide"), wide)


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("sizes"))
    write_logdir(root)
    return root


def peak_rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM for pid %d" % pid)


def test_a_header_whose_counts_exceed_its_blobs_is_corrupt():
    rng = np.random.default_rng(1)
    blobs = blobs_of(self_record(rng, 2, 2, list("abc")))
    with pytest.raises(FormatError, match="claims 2147483647 heads of 3 x 3 weights for layer 0, "
                                          "19327352823 bytes, but lists its blob 1 with 18 bytes"):
        codec.parse_header(with_header(blobs, huge_heads)[0])

    def one_head_a_blob(kind):
        kind.num_heads, kind.heads_per_blob = HUGE, 1
    with pytest.raises(FormatError, match=r"claims 2 layers of 2147483647 heads \(2147483647 blobs "
                                          r"each\) but lists 2 attention blobs"):
        codec.parse_header(with_header(blobs, one_head_a_blob)[0])
    with pytest.raises(FormatError, match="lists 0 layers of 2 heads"):
        codec.parse_header(with_header(blobs, lambda k: k.ClearField("layer_ids"))[0])


def test_load_names_the_crafted_steps_and_reads_the_others(logdir):
    data = load(logdir)
    assert data.steps("crafted", "probe") == [0, 1, 2, 3, 4]
    assert data.get("crafted", "probe", 2).kind("self").attention.shape == (2, 2, 3, 3)
    with pytest.raises(FormatError, match="2147483647 heads"):
        data.get("crafted", "probe", 3)
    with pytest.raises(FormatError, match="18 bytes where 19327352823 were written"):
        data.get("crafted", "probe", 4)


@pytest.mark.parametrize("load_fast", [True, False], ids=["rust", "python"])
def test_crafted_and_wide_logdirs_keep_tensorboard_small(tensorboard_factory, logdir, load_fast):
    tb = tensorboard_factory(logdir, load_fast=load_fast, extra_args=("--samples_per_plugin", "attention=0"))

    def kept():
        listing = {run: tb.get_json(url("steps", run=run, tag="probe"))["kept"] for run in ("crafted", "wide")}
        return listing == {"crafted": 5, "wide": WIDE_STEPS}
    wait_until(lambda: tb.attention_tags().get("wide") and kept(), timeout=180, interval=0.5,
               what="both runs loaded")
    status, _, body = tb.get(url("header", run="crafted", tag="probe", step=3))
    assert status == 500 and b"step 3 of tag 'probe'" in body and b"2147483647 heads" in body, body[:300]
    answer = tb.get_json(url("stats", run="crafted", tag="probe"))
    # step 4's claim has no values behind it: it shapes nothing
    assert answer["steps"] == [0, 1, 2, 3, 4] and answer["num_heads"] == 2 and answer["bounded"] is None
    assert answer["stats"]["entropy"][3:] == [[None] * 4] * 2 and None not in answer["stats"]["entropy"][0]
    assert [e["step"] for e in answer["errors"]] == [3]
    status, _, body = tb.get(url("attention", run="crafted", tag="probe", step=4, kind="self", layer=0))
    assert status == 500 and b"step 4" in body, body[:300]

    wide = tb.get_json(url("stats", run="wide", tag="probe"))
    per_step = len(wide["layer_ids"]) * wide["num_heads"]
    assert per_step == WIDE_STEPS * 2 and len(wide["steps"]) == stats.MAX_VALUES // per_step
    assert wide["steps"][0] == 0 and wide["steps"][-1] == WIDE_STEPS - 1
    assert wide["bounded"]["steps"] == WIDE_STEPS
    # the newest step's own value: layer id WIDE_STEPS - 1, its 2 heads
    assert all(v is not None for v in wide["stats"]["entropy"][-1][-2:])
    assert peak_rss(tb.proc.pid) < RSS_BOUND, peak_rss(tb.proc.pid) / 2 ** 20


def test_malformed_headers_answer_json_naming_run_tag_and_step(tmp_path):
    """Issue 14: overview of a header without layers (np.stack([])) and
    neurons of a header with fewer neuron layers than layers (IndexError)
    answered HTML 500 with no message."""
    from tests.support.backends import WsgiBackend
    from tests.support.records import neuron_kind
    rng = np.random.default_rng(2)
    with_neurons = AttentionRecord([neuron_kind("self", 2, 2, list("abc"), list("abc"), rng)])

    def no_layers(kind):
        kind.ClearField("layer_ids")
        kind.ClearField("attention")
        kind.ClearField("neurons")

    steps = [with_header(blobs_of(with_neurons, 0), no_layers),
             with_header(blobs_of(with_neurons, 1), lambda kind: kind.neurons.pop())]
    write_event_file(str(tmp_path / "bad run"), [attention_event("bad/tag", s, b) for s, b in enumerate(steps)])
    backend = WsgiBackend(tmp_path)
    for step, layer, says in ((0, 0, "lists 0 layers of 2 heads"), (1, 1, "lists neurons for 1 of its 2 layers")):
        for route, params in (("header", {}), ("overview", dict(kind="self")),
                              ("neurons", dict(kind="self", layer=layer, head=0)),
                              ("attention", dict(kind="self", layer=layer))):
            r = backend.get(url(route, run="bad run", tag="bad/tag", step=step, **params))
            assert r.status == 500, (route, step, r)
            message = r.error()
            assert message.startswith("step %d of tag 'bad/tag' of run 'bad run': " % step), message
            assert says in message, message
