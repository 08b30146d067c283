"""Bad arguments (issue 7): a bad value in every argument of the writer and of
capture is refused with a clear error naming it, and nothing is written
(the cases tests/test_writer.py does not try)."""
import os
import re
import warnings

import numpy as np
import pytest

from tb_attention import AttentionInputError, AttentionRecord, AttentionWriter, KindRecord, load, summary
from tests.support.records import softmax


_A = np.full((2, 3, 4, 4), 0.25, np.float32)
_T = list("abcd")
_REC = AttentionRecord([KindRecord("self", _A, tuple(_T), tuple(_T), (0, 1))])
ADD_CASES = {  # name: (add_attention keyword arguments over the good ones, pattern)
    "tag bytes": (dict(tag=b"probe"), r"tag must be a non-empty string, got b'probe'"),
    "tag int": (dict(tag=5), "tag must be a non-empty string, got 5"),
    "attention None": (dict(attention=None), "no attention given: pass attention"),
    "attention dict": (dict(attention={"a": 1}), "attentions is not a numeric array"),
    "attention text": (dict(attention="abc"), "attentions is not a numeric array"),
    "attention objects": (dict(attention=np.array([object()] * 16).reshape(1, 1, 4, 4)),
                          "attentions is not a numeric array"),
    "tokens int": (dict(tokens=5), "tokens must be a list of token strings, got int"),
    # issue 14: the imaginary part was dropped silently
    "attention complex": (dict(attention=_A.astype(np.complex64)), "attentions is a complex array"),
    "tokens triple": (dict(tokens=(_T, _T, _T)), r"query tokens\[0\] is list, not a str"),
    "step text": (dict(global_step="5"), "global_step must be an int, got '5'"),
    "step numpy float": (dict(global_step=np.float64(5)), "global_step must be an int"),
    "walltime text": (dict(walltime="now"), "walltime must be a finite number"),
    "walltime NaN": (dict(walltime=float("nan")), "walltime must be a finite number"),
    "walltime inf": (dict(walltime=float("inf")), "walltime must be a finite number"),
    "walltime bool": (dict(walltime=True), "walltime must be a finite number"),
    "layer_ids repeated": (dict(layer_ids=(1, 1)), "layer_ids must be distinct"),
    "layer_ids negative": (dict(layer_ids=(-1, 0)), "layer_ids must be distinct non-negative ints"),
    "layer_ids text": (dict(layer_ids="01"), "layer_ids must be ints"),
    "layer_ids int": (dict(layer_ids=5), "layer_ids must be a sequence of ints"),
    # used to break the writer: int32 overflow in the background thread
    "layer_ids above int32": (dict(layer_ids=(0, 2 ** 40)), r"layer_ids must be below 2\*\*31"),
    "segment_b bool": (dict(segment_b=True), "segment_b must be an int, got bool"),
    "segment_b float": (dict(segment_b=1.0), "segment_b must be an int, got float"),
    "segment_b negative": (dict(segment_b=-1), r"segment_b = -1 is outside 0..3"),
    "segment_b triple": (dict(segment_b=(1, 2, 3)), r"segment_b must be an int or a pair"),
    "segment_b pair of text": (dict(segment_b=("a", 1)), "segment_b must be an int, got str"),
    "causal text": (dict(causal="no"), "causal must be True or False, got 'no'"),
    "causal None": (dict(causal=None), "causal must be True or False, got None"),
    "causal int": (dict(causal=2), "causal must be True or False, got 2"),
    "kind None": (dict(kind=None), "attention kind None is not one of"),
    "kind int": (dict(kind=5), "attention kind 5 is not one of"),
    "kind empty": (dict(kind=""), "attention kind '' is not one of"),
    "special_tokens int": (dict(special_tokens=5), "special_tokens must be a sequence of token positions"),
    "special_tokens text": (dict(special_tokens="0"), "special_tokens must be ints"),
    "special_tokens outside": (dict(special_tokens=[9]), r"special_tokens must be distinct positions in 0..3"),
    "special_tokens repeated": (dict(special_tokens=[0, 0]), "special_tokens must be distinct positions"),
    "special_tokens bool": (dict(special_tokens=[True]), "special_tokens must be ints"),
    "record plus causal": (dict(attention=_REC, tokens=None, causal=True), "come from the record"),
    "record plus kind": (dict(attention=_REC, tokens=None, kind="cross"), "come from the record"),
    "record plus special_tokens": (dict(attention=_REC, tokens=None, special_tokens=[0]), "come from the record"),
    "record plus segment_b": (dict(attention=_REC, tokens=None, segment_b=1), "come from the record"),
    "record plus layer_ids": (dict(attention=_REC, tokens=None, layer_ids=(0, 1)), "come from the record"),
}


@pytest.mark.parametrize("case", sorted(ADD_CASES))
def test_add_attention_bad_argument_named_and_nothing_written(tmp_path, case):
    changes, pattern = ADD_CASES[case]
    with AttentionWriter(tmp_path) as w:
        w.add_attention("probe", _A, tokens=_T, global_step=0)
        w.flush()
        size = os.path.getsize(w._sink.path)
        kwargs = dict(tag="probe", attention=_A, tokens=_T, global_step=1)
        kwargs.update(changes)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(AttentionInputError, match=pattern):
                w.add_attention(**kwargs)
        w.flush()
        assert os.path.getsize(w._sink.path) == size  # nothing written
        w.add_attention("probe", _A, tokens=_T, global_step=2)  # and the writer still works
    assert load(tmp_path).steps(".", "probe") == [0, 2]
    assert load(tmp_path).header(".", "probe", 2).sequence == 1  # no sequence number used up


WRITER_CASES = {  # AttentionWriter(...) arguments: (kwargs, exception, pattern)
    "logdir empty": (dict(logdir_or_summary_writer=""), ValueError, "logdir is empty"),
    "logdir None": (dict(logdir_or_summary_writer=None), TypeError, "a logdir path, a torch.utils.tensorboard SummaryWriter or a tensorboardX SummaryWriter, got NoneType"),
    "logdir bytes": (dict(logdir_or_summary_writer=b"/tmp/x"), TypeError, "got bytes"),
    "dtype None": (dict(dtype=None), ValueError, r"dtype must be one of \['float16', 'uint8'\], got None"),
    "dtype upper case": (dict(dtype="UINT8"), ValueError, "dtype must be one of"),
    "dtype numpy": (dict(dtype=np.uint8), ValueError, "dtype must be one of"),
    "max_queue bool": (dict(max_queue=True), ValueError, "max_queue must be a positive int, got True"),
    "max_queue float": (dict(max_queue=1.5), ValueError, "max_queue must be a positive int, got 1.5"),
    "max_queue text": (dict(max_queue="8"), ValueError, "max_queue must be a positive int, got '8'"),
    "max_queue negative": (dict(max_queue=-3), ValueError, "max_queue must be a positive int, got -3"),
}


@pytest.mark.parametrize("case", sorted(WRITER_CASES))
def test_attention_writer_bad_argument_named_and_nothing_created(tmp_path, case):
    kwargs, exception, pattern = WRITER_CASES[case]
    kwargs = dict(kwargs)
    kwargs.setdefault("logdir_or_summary_writer", str(tmp_path / "run"))
    with pytest.raises(exception, match=pattern):
        AttentionWriter(**kwargs)
    assert not (tmp_path / "run").exists() and not os.path.exists("/tmp/x")


@pytest.fixture(scope="module")
def bert():
    from tests.models import tiny_model
    model, tok = tiny_model("bert")
    return model, tok, tok("the cat sat", return_tensors="pt")


def _capture_cases():
    import torch
    return {  # capture(...) arguments over the good ones: pattern of the AttentionInputError
        "model text": (dict(model="bert"), "model must be a transformers model .* got str"),
        "model None": (dict(model=None), "model must be a transformers model .* got NoneType"),
        "model a plain torch module": (dict(model=torch.nn.Linear(2, 2)), "model must be a transformers model"),
        "inputs None": (dict(inputs=None), "inputs must be a BatchEncoding"),
        "inputs empty": (dict(inputs=torch.zeros(1, 0, dtype=torch.long)), "input_ids hold no tokens"),
        "inputs outside the vocabulary": (dict(inputs=torch.tensor([[2, 500, 3]])),
                                          r"token id 500, outside the model's vocabulary 0..98"),
        "inputs negative id": (dict(inputs=torch.tensor([[2, -1, 3]])), "token id -1, outside"),
        "tokenizer text": (dict(tokenizer="bert"), "tokenizer must be a transformers tokenizer .* got str"),
        "neurons text": (dict(neurons="yes"), "neurons must be True or False, got 'yes'"),
        "neurons None": (dict(neurons=None), "neurons must be True or False, got None"),
        "layers float": (dict(layers=[0.5]), "layers must be ints, got 0.5"),
        "layers text": (dict(layers="0"), "layers must be ints, got '0'"),
        "layers bool": (dict(layers=[True]), "layers must be ints, got True"),
        "layers empty": (dict(layers=[]), "layers selects no self layer"),
        "layers outside": (dict(layers={"self": [5]}), r"layer 5 is not in the self attention, which has layers 0..1"),
    }


@pytest.mark.parametrize("case", sorted(_capture_cases()))
def test_capture_bad_argument_named(bert, case):
    from tb_attention import capture
    model, tok, inputs = bert
    changes, pattern = _capture_cases()[case]
    kwargs = dict(model=model, inputs=inputs, tokenizer=tok)
    kwargs.update(changes)
    with pytest.raises(AttentionInputError, match=pattern):
        capture(**kwargs)
    assert model.config._attn_implementation == "sdpa"  # the model is left as it was


def test_a_step_too_large_for_one_event_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    """The real bound is 2 GiB (a protobuf message); a smaller one keeps the test small.
    Uncompressed, the size is known on the training thread; compressed steps are
    sized as written (tests/test_scale_big.py)."""
    monkeypatch.setattr(summary, "MAX_EVENT_BYTES", 4 * 16 * 16 * 3 + 500)
    rng = np.random.default_rng(3)
    with AttentionWriter(tmp_path, compress=False) as w:
        w.add_attention("probe", softmax(rng, 3, 4, 16, 16), tokens=["t%d" % i for i in range(16)], global_step=0)
        w.flush()
        size = os.path.getsize(w._sink.path)
        with pytest.raises(AttentionInputError, match=r"in one TensorBoard event.*log fewer layers") as info:
            w.add_attention("probe", softmax(rng, 4, 4, 16, 16), tokens=["t%d" % i for i in range(16)],
                            global_step=1)
        assert "self 4x4x16x16 as uint8" in str(info.value)
        w.flush()
        assert os.path.getsize(w._sink.path) == size
        w.add_attention("probe", softmax(rng, 3, 4, 16, 16), tokens=["t%d" % i for i in range(16)], global_step=2)
    assert load(tmp_path).steps(".", "probe") == [0, 2]


def test_bytes_tokens_are_refused_by_the_writer(tmp_path):
    a = np.full((1, 1, 2, 2), 0.5, np.float32)
    with AttentionWriter(tmp_path) as w:
        with pytest.raises(AttentionInputError, match=r"query tokens\[0\] is bytes, not a str"):
            w.add_attention("t", a, tokens=[b"\xff", "x"], global_step=0)
    assert load(tmp_path).runs() == []


@pytest.mark.parametrize("step,says", [
    (2 ** 63, "global_step must be at most 2**63-1 = 9223372036854775807, got 9223372036854775808"),
    (2 ** 64, "global_step must be at most 2**63-1"),
    (np.uint64(2 ** 63), "global_step must be at most 2**63-1"),
    (-1, "global_step must be >= 0, got -1"),
    (-(2 ** 63), "global_step must be >= 0")])
def test_steps_outside_int64_are_refused_naming_the_range(tmp_path, step, says):
    a = np.full((1, 1, 2, 2), 0.5, np.float32)
    with AttentionWriter(tmp_path) as w:
        with pytest.raises(AttentionInputError, match=re.escape(says)):
            w.add_attention("t", a, tokens=list("ab"), global_step=step)
        w.add_attention("t", a, tokens=list("ab"), global_step=np.int64(2 ** 63 - 1))
    assert load(tmp_path).steps(".", "t") == [2 ** 63 - 1]


# --------------------------------------------------------------------------
# Names the Rust data server cannot read a blob under (issue 14)

BREAKERS = ['"', "\\", "\t", "\n", "\x01", "\x1f"]


@pytest.mark.parametrize("char", BREAKERS, ids=lambda c: "%02x" % ord(c))
def test_names_the_default_loader_cannot_read_are_refused_naming_the_character(tmp_path, char):
    """Under --load_fast=true every step of such a run or tag answered 500
    "TensorBoard cannot read its blob 0"; the writer took them silently."""
    from tests.support.records import self_record
    record = self_record(np.random.default_rng(0), 1, 1, list("ab"))
    with AttentionWriter(str(tmp_path / "ok")) as w:
        with pytest.raises(AttentionInputError, match="contains .*default data server.*rename it") as e:
            w.add_attention("a%sb" % char, record, global_step=0)
        assert "contains %s:" % repr(char) in str(e.value)
        w.add_attention("a b", record, global_step=0)  # the writer goes on
    assert load(str(tmp_path)).steps("ok", "a b") == [0]
    bad_dir = str(tmp_path / ("run%sx" % char))
    with pytest.raises(AttentionInputError, match="run directory .* contains") as e:
        AttentionWriter(bad_dir)
    assert "contains %s:" % repr(char) in str(e.value)
    assert not os.path.exists(bad_dir)  # refused before any file was made
    with pytest.raises(AttentionInputError, match=re.escape(repr(char))):
        summary.check_tag("a%sb" % char)  # what summary.pb refuses too


def test_writer_input_oddities_are_taken_or_named(tmp_path):
    """Issue 14: tokens as a generator gave "key tokens has 0 tokens"; a torch
    meta tensor raised NotImplementedError; complex tensors lost their
    imaginary part silently."""
    import torch
    with AttentionWriter(tmp_path) as w:
        w.add_attention("probe", _A, tokens=(t for t in _T), global_step=0)  # any iterable
        for bad, says in ((torch.empty(2, 3, 4, 4, device="meta"),
                           r"attentions is a tensor on the 'meta' device: it has a shape \(2, 3, 4, 4\) but no data"),
                          (torch.from_numpy(_A).to(torch.complex64), "attentions is a complex tensor")):
            with pytest.raises(AttentionInputError, match=says):
                w.add_attention("probe", bad, tokens=_T, global_step=1)
    record = load(tmp_path).get(".", "probe", 0)
    assert record.kind("self").query_tokens == tuple(_T) == record.kind("self").key_tokens
