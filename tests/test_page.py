"""Pages of attention without a browser: what tb_attention.save_html / show
put in a page (decoded here with plain zlib and json), bad input, the CLI,
and BertViz's arguments. The browser side is tests/test_page_e2e.py."""
import html
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import tb_attention
from tb_attention import page as tba_page
from tb_attention.pagestate import PageError
from tb_attention.record import AttentionInputError, from_raw
from tests.support.pages import H, L, T, TOKENS, planted_attention, planted_record, read_page


def one(text):
    pages = read_page(text)
    assert len(pages) == 1
    return pages[0]


def test_a_page_holds_the_stored_uint8_bytes_headers_and_query_key_vectors():
    rec = planted_record()
    manifest, blobs = one(tba_page.Page(rec, "matrix", layer=0, head=0).html())
    (entry,) = manifest["steps"]
    kind = entry["header"]["kinds"][0]
    assert (entry["run"], entry["tag"], entry["step"]) == ("notebook", "attention", 0)
    assert kind["query_tokens"] == list(TOKENS) and kind["layer_ids"] == [0, 1] and kind["num_heads"] == H
    off, n = entry["attention"]["self"]
    stored = np.frombuffer(blobs, np.uint8, count=n, offset=off).reshape(L, H, T, T)
    np.testing.assert_array_equal(stored, np.rint(planted_attention() * 255).astype(np.uint8))
    # neurons: each layer's blob as stored, queries first (float16 [H, T, D])
    off, n, scale, has_bias, softcap, sinks = entry["neurons"]["self"][1]
    q = np.frombuffer(blobs, "<f2", count=H * T * 4, offset=off).reshape(H, T, 4)
    np.testing.assert_array_equal(q, rec.neurons().queries[1].astype("<f2"))
    assert (scale, has_bias, softcap, sinks) == (0.5, False, 0.0, None)
    assert manifest["state"] == {"view": "matrix", "layer": "0", "head": "0"}
    assert manifest["views"] == ["head", "model", "neuron", "matrix", "text"]  # one step: no stats, no compare


def test_steps_runs_and_the_stats_answer():
    uniform = from_raw(np.full((L, H, T, T), 1 / T, np.float32), list(TOKENS))
    manifest, _ = one(tba_page.Page({"b": [planted_record(), uniform], "a": planted_record()}, steps=[10, 20]).html())
    assert sorted((e["run"], e["step"]) for e in manifest["steps"]) == [("a", 10), ("b", 10), ("b", 20)]
    stats = manifest["stats"]['["b","attention","self"]']
    assert stats["steps"] == [10, 20]
    entropy = np.array(stats["stats"]["entropy"], float).reshape(2, L, H)
    np.testing.assert_allclose(entropy[0], 0, atol=1e-6)  # one-hot rows
    np.testing.assert_allclose(entropy[1], math.log(T), atol=2e-3)  # uniform rows (uint8: 1/8 exactly 32/255)


def test_compare_answers_are_the_mean_jsd_of_the_heads():
    a, b = planted_record(k=5), planted_record(k=6)
    manifest, _ = one(tba_page.Page([a, b], "compare").html())
    answer = manifest["compare"]['["attention","self","notebook",0,"notebook",1]']
    jsd = np.array(answer["jsd"], float)
    expected = np.zeros((L, H))
    expected[0, 0] = math.log(2) / T  # one query row of T moved to a disjoint key
    np.testing.assert_allclose(jsd, expected, atol=1e-6)
    assert answer["tokens"]["match"] and manifest["missing"].startswith("this page holds the comparisons of every pair")
    # tokens that differ: the route's message, no JSD
    other = planted_record(tokens=("<s>", "a", "dog", "sat", "on", "the", "mat", "."))
    manifest, _ = one(tba_page.Page({"x": a, "y": other}, "compare").html())
    answer = manifest["compare"]['["attention","self","x",0,"y",0]']
    assert answer["jsd"] is None and not answer["tokens"]["match"] and "B has 'a'" in answer["tokens"]["message"]


def test_compare_of_steps_whose_layers_differ_is_the_routes_400():
    a = planted_record()
    b = from_raw(planted_attention()[:1], list(TOKENS))
    manifest, _ = one(tba_page.Page({"x": a, "y": b}, "compare").html())
    err = manifest["compare"]['["attention","self","x",0,"y",0]']["error"]
    assert err["status"] == 400 and "cannot compare" in err["message"]


def test_hostile_tokens_and_run_names_never_reach_the_html_as_markup():
    evil = "</script><img src=x onerror=alert(1)>"
    tokens = (evil, "\u202eabc", "<b>", "&amp;", "x", "y", "z", "'\"")
    run = "<svg onload=alert(2)>"
    text = tba_page.Page({run: planted_record(tokens=tokens)}).html()
    assert evil not in text and "<svg onload" not in text and "<b>" not in text
    assert html.escape(run) in text  # the fallback's caption, escaped
    (manifest, _), = read_page(text)
    assert manifest["steps"][0]["header"]["kinds"][0]["query_tokens"][0] == evil  # the data keeps it whole
    assert manifest["steps"][0]["run"] == run


@pytest.mark.parametrize("make, words", [
    (lambda p: tba_page.Page(planted_record(), "nope"), ["view='nope'", "head, model"]),
    (lambda p: tba_page.Page(planted_record(), lyer=1), ["lyer"]),
    (lambda p: tba_page.Page(planted_record(), layer=5), ["layer=5", "[0, 1]"]),
    (lambda p: tba_page.Page(planted_record(), head="1"), ["head"]),
    (lambda p: tba_page.Page(planted_record(), heads=[0, 7]), ["heads", "0..2"]),
    (lambda p: tba_page.Page(planted_record(), query=8), ["query=8"]),
    (lambda p: tba_page.Page(planted_record(), run="other"), ["run='other'", "notebook"]),
    (lambda p: tba_page.Page(planted_record(), cmode="grid"), ["cmode"]),
    (lambda p: tba_page.Page(planted_record(), views=["head", "graph"]), ["views"]),
    (lambda p: tba_page.Page(planted_record(), height=5), ["height"]),
    (lambda p: tba_page.Page("a record", "head"), ["AttentionRecord", "str"]),
    (lambda p: tba_page.Page([], "head"), ["empty list"]),
    (lambda p: tba_page.Page([planted_record()], steps=[1, 2]), ["steps", "2 steps", "1 records"]),
    (lambda p: tba_page.Page(planted_record(), max_bytes=1000), ["max_bytes=1000"]),
    (lambda p: tba_page.save_html(planted_record(), p / "no" / "such" / "dir.html"), ["path", "dir.html"]),
    (lambda p: tba_page.save_html(np.zeros((2, 2)), p / "x.html"), ["AttentionRecord", "ndarray"]),
])
def test_bad_input_is_a_clear_error_naming_the_argument(tmp_path, make, words):
    with pytest.raises(AttentionInputError) as e:
        make(tmp_path)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_save_html_writes_one_file_and_nothing_else(tmp_path):
    path = tb_attention.save_html([planted_record(), planted_record(k=6)], tmp_path / "a.html", view="model")
    assert os.listdir(tmp_path) == ["a.html"] and path == str(tmp_path / "a.html")
    text = open(path, encoding="utf-8").read()
    assert text.startswith("<!DOCTYPE html>") and "default-src 'none'" in text
    assert "http://" not in text.replace("http://www.w3.org", "") and "https://" not in text  # no URL to load
    (manifest, _), = read_page(text)
    assert [s["step"] for s in manifest["steps"]] == [0, 1] and manifest["views"][-2:] == ["stats", "compare"]


def test_a_records_repr_html_is_a_compact_head_view_and_a_notice_when_large(monkeypatch):
    (manifest, _), = read_page(planted_record()._repr_html_())
    assert manifest["views"] == ["head"]
    monkeypatch.setattr(tba_page, "REPR_MAX_BYTES", 200_000)  # the bundle alone is larger
    notice = planted_record()._repr_html_()
    assert not read_page(notice) and "tb_attention.show" in notice and "max_bytes=200000" in notice


# -- BertViz's calls -------------------------------------------------------------


def bertviz_tuple(a):
    """What transformers returns: one [1, heads, T, T] array per layer."""
    return tuple(a[i][None] for i in range(a.shape[0]))


def test_head_view_takes_bertvizs_arguments():
    from tb_attention.notebook import head_view, model_view
    out = head_view(bertviz_tuple(planted_attention()), list(TOKENS), sentence_b_start=4, layer=1, heads=[0, 2],
                    include_layers=[1], prettify_tokens=False, html_action="return")
    (manifest, _), = read_page(out.data)
    kind = manifest["steps"][0]["header"]["kinds"][0]
    assert kind["layer_ids"] == [1] and kind["query_segment_b"] == 4
    assert manifest["state"] == {"view": "head", "layer": "1", "heads": "0,2", "raw": "1"}
    enc = bertviz_tuple(planted_attention())
    cross = bertviz_tuple(planted_attention()[:, :, :3])
    out = model_view(encoder_attention=enc, decoder_attention=bertviz_tuple(planted_attention()[:, :, :3, :3]),
                     cross_attention=cross, encoder_tokens=list(TOKENS), decoder_tokens=["a", "b", "c"],
                     include_heads=[1], display_mode="light", html_action="return")
    (manifest, _), = read_page(out.data)
    kinds = {k["name"]: k for k in manifest["steps"][0]["header"]["kinds"]}
    assert set(kinds) == {"encoder", "decoder", "cross"} and kinds["decoder"]["causal"]
    assert kinds["cross"]["query_tokens"] == ["a", "b", "c"] and kinds["cross"]["key_tokens"] == list(TOKENS)
    assert manifest["state"]["mheads"] == "1" and manifest["theme"] == "light"


@pytest.mark.parametrize("kwargs, words", [
    (dict(attention=None), ["give attention"]),
    (dict(tokens=list(TOKENS[:7])), ["7 tokens", "8 positions"]),
    (dict(tokens=None), ["tokens is required"]),
    (dict(layer=0, include_layers=[1]), ["layer=0", "include_layers"]),
    (dict(include_layers=[5]), ["include_layers=[5]", "2 layers"]),
    (dict(html_action="show"), ["html_action"]),
    (dict(encoder_tokens=list(TOKENS)), ["not both"]),
])
def test_bertviz_calls_with_bad_arguments_name_them(kwargs, words):
    from tb_attention.notebook import head_view
    args = dict(attention=bertviz_tuple(planted_attention()), tokens=list(TOKENS), html_action="return")
    args.update(kwargs)
    with pytest.raises(ValueError) as e:
        head_view(**args)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_head_view_of_a_batch_says_pick_one_example():
    from tb_attention.notebook import head_view
    batch = tuple(np.repeat(a, 2, axis=0) for a in bertviz_tuple(planted_attention()))
    with pytest.raises(ValueError, match="batch of 2"):
        head_view(batch, list(TOKENS), html_action="return")


# -- the CLI ---------------------------------------------------------------------


def cli(*args):
    exe = os.path.join(os.path.dirname(sys.executable), "tb-attention")
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=120)


def test_cli_html_writes_the_logged_steps(tmp_path):
    with tb_attention.AttentionWriter(str(tmp_path / "runs" / "exp")) as w:
        for step in (5, 10, 15):
            w.add_attention("probe/cat", planted_record(k=step // 5 + 3), global_step=step)
    out = cli("html", tmp_path / "runs", "--run", "exp", "--tag", "probe/cat", "--steps", 10, 15,
              "--view", "matrix", "-o", tmp_path / "p.html")
    assert out.returncode == 0, out.stderr
    (manifest, blobs), = read_page((tmp_path / "p.html").read_text(encoding="utf-8"))
    assert [(s["run"], s["tag"], s["step"]) for s in manifest["steps"]] == [("exp", "probe/cat", 10), ("exp", "probe/cat", 15)]
    off, n = manifest["steps"][1]["attention"]["self"]
    np.testing.assert_array_equal(np.frombuffer(blobs, np.uint8, n, off).reshape(L, H, T, T)[0, 0, 2],
                                  np.rint(planted_attention(k=6)[0, 0, 2] * 255))
    bad = cli("html", tmp_path / "runs", "--run", "nope", "-o", tmp_path / "q.html")
    assert bad.returncode == 2 and "no run 'nope'" in bad.stderr and not (tmp_path / "q.html").exists()
    bad = cli("html", tmp_path / "missing", "-o", tmp_path / "q.html")
    assert bad.returncode == 2 and "no such logdir" in bad.stderr


def test_the_neuron_views_score_steps_travel_as_the_neurons_route_sends_them():
    """Soft-cap per layer and sink logit per head (format 3): the page's neuron
    view computes the same softmax as the dashboard's."""
    import dataclasses
    rec = planted_record()
    k = rec.kind()
    sinks = np.full((L, H), -np.inf, np.float32)
    sinks[1] = [0.5, -1.0, 2.0]
    n = dataclasses.replace(k.neurons, softcaps=np.array([0.0, 30.0], np.float32), sinks=sinks)
    rec = tb_attention.AttentionRecord([dataclasses.replace(k, neurons=n)], model_type="toy")
    manifest, _ = one(tba_page.Page(rec, "neuron").html())
    layers = manifest["steps"][0]["neurons"]["self"]
    assert [layer[4:] for layer in layers] == [[0.0, None], [30.0, [0.5, -1.0, 2.0]]]
