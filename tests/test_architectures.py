"""capture on the architectures that do something between q.k and the
softmax, return attention in another layout, or take images and audio.

Every model is a real transformers class built from a tiny config (random
weights). References come from the model itself (its eager
output_attentions on a deep copy, tests/sweep.py) or, for layouts and
names, from an independent computation written out here.
"""
import copy
import warnings

import numpy as np
import pytest
import torch
import transformers as tr

from tb_attention.capturing import NeuronsNotSupportedWarning, capture, capture_batch
from tb_attention.record import AttentionInputError, softmax_scores
from tests import sweep
from tests.sweep import IDS, ids, tiny

def eager(model, **inputs):
    """kind -> float32 [L, H, Tq, Tk] of example 0 from the model's own eager output_attentions."""
    return {k: v[0] for k, v in sweep.eager_attentions(model, inputs).items()}


def assert_faithful(rec, ref, kinds=None):
    for kind in kinds or rec.kinds:
        np.testing.assert_allclose(rec.attention(kind), ref[kind], atol=1e-5, rtol=0)
        n = rec.neurons(kind)
        assert np.abs(rec.recompute_attention(kind) - ref[kind]).max() < 1e-4
        assert np.abs(sweep.recompute_fp16(n) - ref[kind]).max() < 1e-3


# --------------------------------------------------------------------------
# Score steps: soft-cap, sinks, windows and chunks, q/k norms


def test_gemma2_logit_softcap_is_a_logged_step():
    # a cap of 0.25 is well inside the logits of this model, so capping really changes them
    model = tiny("gemma2", attn_logit_softcapping=0.25)
    rec = capture(model, ids(), neurons=True)
    n = rec.neurons()
    np.testing.assert_array_equal(n.softcaps, [0.25, 0.25])
    assert_faithful(rec, eager(model, input_ids=ids()))
    uncapped = softmax_scores(n.queries, n.expanded_keys(), n.scales, n.masked, n.bias, None, n.sinks)
    assert np.abs(uncapped - rec.attention()).max() > 0.05  # the step matters here


def test_gpt_oss_sinks_are_logged_per_head():
    model = tiny("gpt_oss")
    rec = capture(model, ids(), neurons=True)
    n = rec.neurons()
    want = np.stack([layer.self_attn.sinks.detach().numpy() for layer in model.layers])
    np.testing.assert_array_equal(n.sinks, want)
    assert rec.kind().has_sinks
    assert_faithful(rec, eager(model, input_ids=ids()))
    sums = rec.attention().sum(-1)
    assert sums.max() < 1 and sums.mean() < 0.95  # the sink takes the rest of every row
    plain = softmax_scores(n.queries, n.expanded_keys(), n.scales, n.masked, n.bias, n.softcaps, None)
    assert np.abs(plain - rec.attention()).max() > 0.01


def test_sliding_window_and_chunked_masks_per_layer():
    # gpt-oss: layer 0 slides over 3 keys, layer 1 is full causal attention
    model = tiny("gpt_oss", sliding_window=3)
    rec = capture(model, ids(), neurons=True)
    T = len(IDS)
    i, j = np.indices((T, T))
    np.testing.assert_array_equal(rec.neurons().masked[0], (j > i) | (i - j >= 3))
    np.testing.assert_array_equal(rec.neurons().masked[1], j > i)
    assert rec.kind().causal
    # Llama 4: chunked attention in chunks of 4 tokens (layer 0), full in layer 1
    model = tiny("llama4_text", attention_chunk_size=4)
    rec = capture(model, ids(), neurons=True)
    assert model.config.layer_types[0] == "chunked_attention"
    np.testing.assert_array_equal(rec.neurons().masked[0], (j > i) | (i // 4 != j // 4))
    np.testing.assert_array_equal(rec.neurons().masked[1], j > i)
    assert_faithful(rec, eager(model, input_ids=ids()))


def test_qk_norms_are_inside_the_logged_queries_and_keys():
    # Qwen3 RMS-normalises each head's query and key (weights 1 at init) before RoPE, a
    # rotation: every logged vector has norm sqrt(head_dim).
    model = tiny("qwen3")
    rec = capture(model, ids(), neurons=True)
    n = rec.neurons()
    D = n.queries.shape[-1]
    np.testing.assert_allclose(np.linalg.norm(n.queries, axis=-1), np.sqrt(D), rtol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(n.keys, axis=-1), np.sqrt(D), rtol=1e-3)
    assert_faithful(rec, eager(model, input_ids=ids()))


def test_sink_applied_after_the_softmax_gets_no_neurons_with_the_reason():
    # Granite SWA hands its sink logits to the attention function but returns the plain
    # softmax and scales its output instead: neurons would not be its computation.
    model = tiny("granite_swa")
    with pytest.warns(NeuronsNotSupportedWarning) as caught:
        rec = capture(model, ids(), neurons=True)
    message = str(caught[0].message)
    assert "model type 'granite_swa' (GraniteSWAModel)" in message
    assert "returns the plain softmax without them" in message
    assert not rec.has_neurons and "applies the sink to its output" in rec.kind().no_neurons
    np.testing.assert_allclose(rec.attention(), eager(model, input_ids=ids())["self"], atol=1e-5)


# --------------------------------------------------------------------------
# Decoder-only variants and layouts


def test_causal_lm_of_an_encoder_decoder_family_is_decoder_only():
    model = tiny("bart", cls=tr.BartForCausalLM)
    rec = capture(model, ids(), neurons=True)
    assert rec.kinds == ("self",)
    assert rec.tokens()[0] == tuple("id:%d" % i for i in IDS)  # the input, not shifted
    assert rec.kind().causal
    assert_faithful(rec, eager(model, input_ids=ids()))
    pad = model.config.pad_token_id
    batch = {"input_ids": torch.tensor([IDS, IDS[:6] + [pad] * 4]),
             "attention_mask": torch.tensor([[1] * 10, [1] * 6 + [0] * 4])}
    short = capture_batch(model, batch, neurons=True)[1]
    assert short.tokens()[0] == tuple("id:%d" % i for i in IDS[:6])
    np.testing.assert_allclose(short.attention(), capture(model, ids(6)).attention(), atol=1e-6)


def longformer_oracle(model, input_ids, global_positions):
    """[L, H, T, T] of example 0 computed from each layer's weights and input
    hidden states: local rows see keys within the window and the global
    tokens (query/key projections), global rows see every key (the global
    projections); both scaled by head_dim ** -0.5."""
    gmask = torch.zeros_like(input_ids)
    gmask[0, global_positions] = 1
    with torch.no_grad():
        out = model(input_ids=input_ids, global_attention_mask=gmask, output_hidden_states=True)
    T = input_ids.shape[1]
    torch.set_grad_enabled(False)
    layers = []
    for layer, h in zip(model.encoder.layer, out.hidden_states):
        att = layer.attention.self
        H, D, w = att.num_heads, att.head_dim, att.one_sided_attn_window_size
        split = lambda x: x[0].reshape(T, H, D).transpose(0, 1).double()  # noqa: E731
        q, k = split(att.query(h)) / np.sqrt(D), split(att.key(h))
        qg, kg = split(att.query_global(h)) / np.sqrt(D), split(att.key_global(h))
        i, j = np.indices((T, T))
        allowed = torch.from_numpy((np.abs(i - j) <= w) | np.isin(j, global_positions))
        scores = (q @ k.transpose(1, 2)).masked_fill(~allowed, float("-inf"))
        probs = torch.softmax(scores, -1)
        probs[:, global_positions] = torch.softmax(qg @ kg.transpose(1, 2), -1)[:, global_positions]
        layers.append(probs.float().numpy())
    torch.set_grad_enabled(True)
    return np.stack(layers)


def test_longformer_windows_are_scattered_back_onto_the_token_matrix():
    model = tiny("longformer")
    assert model.config.attention_window == [4, 4]  # 2 keys each side: a real band at 10 tokens
    for globals_ in ([], [0], [0, 5]):
        gmask = torch.zeros(1, len(IDS), dtype=torch.long)
        gmask[0, globals_] = 1
        rec = capture(model, input_ids=ids(), global_attention_mask=gmask)
        want = longformer_oracle(model, ids(), globals_)
        np.testing.assert_allclose(rec.attention(), want, atol=1e-5, rtol=0)
        assert rec.attention().shape == (2, 4, 10, 10)
    # a padded batch: each example as alone (the shorter one without its padding)
    batch = {"input_ids": torch.tensor([IDS, IDS[:7] + [1] * 3]),
             "attention_mask": torch.tensor([[1] * 10, [1] * 7 + [0] * 3])}
    short = capture_batch(model, batch)[1]
    np.testing.assert_allclose(short.attention(), capture(model, ids(7)).attention(), atol=1e-5)


def test_led_encoder_windows_converted_decoder_as_is():
    model = tiny("led")
    dec = torch.tensor([[5, 6, 7, 8]])
    rec = capture(model, input_ids=ids(), decoder_input_ids=dec)
    assert rec.kinds == ("encoder", "decoder", "cross")
    assert rec.attention("encoder").shape == (2, 4, 10, 10)
    np.testing.assert_allclose(rec.attention("encoder").sum(-1), 1, atol=1e-5)
    band = np.abs(np.subtract.outer(np.arange(10), np.arange(10))) > 2
    assert np.all(rec.attention("encoder")[..., band] == 0)
    ref = eager(model, input_ids=ids(), decoder_input_ids=dec)
    for kind in ("decoder", "cross"):
        np.testing.assert_allclose(rec.attention(kind), ref[kind], atol=1e-5)


@pytest.mark.parametrize("model_type,shape,why", [
    ("funnel", "(1, 4, 5, 10)", "pooled"),
    ("canine", "(1, 4, 2, 2)", "pooled"),
])
def test_pooled_layouts_are_refused_naming_model_and_shape(model_type, shape, why):
    model = tiny(model_type)
    with pytest.raises(AttentionInputError) as e:
        capture(model, ids())
    message = str(e.value)
    assert "model type %r" % model_type in message and shape in message and why in message
    assert "layers" in message  # the layers that are token x token, to capture those


def test_windows_of_swin_are_refused_naming_model_and_shape():
    model = tiny("swin", window_size=4)
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(AttentionInputError, match=r"model type 'swin'.*\(4, 2, 16, 16\).*4 attention "
                                                  r"maps per example: attention within windows"):
        capture(model, pixel_values=x)


@pytest.mark.parametrize("model_type", ["prophetnet", "squeezebert"])
def test_scores_before_the_softmax_are_refused_naming_model_and_why(model_type):
    model = tiny(model_type)
    inputs = {"input_ids": ids()}
    if model.config.is_encoder_decoder:
        inputs["decoder_input_ids"] = torch.tensor([[5, 6, 7]])
    with pytest.raises(AttentionInputError) as e:
        capture(model, inputs)
    assert "model type %r" % model_type in str(e.value)
    assert "not softmax probabilities" in str(e.value)


def test_layers_with_different_head_counts_refused_and_selectable():
    model = tiny("inkling_text")
    with pytest.raises(AttentionInputError, match="different numbers of heads") as e:
        capture(model, ids())
    assert "inkling_text" in str(e.value)
    rec = capture(model, ids(), layers=[1])
    per_layer = sweep.eager_attentions(model, {"input_ids": ids()})["self"]  # a list: shapes differ
    np.testing.assert_allclose(rec.attention(), per_layer[1][0][None], atol=1e-5)


# --------------------------------------------------------------------------
# Images


@pytest.mark.parametrize("model_type,prefix", [
    ("vit", ("[CLS]",)), ("deit", ("[CLS]", "[DIST]")), ("beit", ("[CLS]",)),
    ("clip_vision_model", ("[CLS]",)), ("siglip_vision_model", ()),
])
def test_vision_transformers_name_patches_and_keep_the_image(model_type, prefix):
    model = tiny(model_type)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    recs = capture(model, pixel_values=x, neurons=True)
    ref = sweep.eager_attentions(model, {"pixel_values": x})["self"]
    for b, rec in enumerate(recs):
        names = rec.tokens()[0]
        assert names == prefix + tuple("patch (%d, %d)" % (r, c) for r in range(4) for c in range(4))
        img = rec.image
        assert (img.rows, img.cols, img.first_patch, img.patch_size, img.size) == (4, 4, len(prefix), (8, 8), (32, 32))
        np.testing.assert_allclose(rec.attention(), ref[b], atol=1e-5)
        assert np.abs(sweep.recompute_fp16(rec.neurons()) - ref[b]).max() < 1e-3
        assert img.thumbnail.shape == (32, 32, 3) and img.thumbnail.dtype == np.uint8


def test_patch_names_follow_the_models_own_patch_order():
    # a 32 x 48 image: 4 rows x 6 columns of patches. Token first_patch + k is the
    # k-th embedding the model's patch projection returns; computed here from the
    # pixels of patch (r, c) and the projection's weights, it must be the one named so.
    model = tiny("vit")
    x = torch.randn(1, 3, 32, 48, generator=torch.Generator().manual_seed(2))
    rec = capture(model, pixel_values=x, interpolate_pos_encoding=True)
    names = rec.tokens()[0]
    proj = model.embeddings.patch_embeddings.projection
    with torch.no_grad():
        emb = model.embeddings.patch_embeddings(x)[0]
    W, bias = proj.weight.detach().double().numpy(), proj.bias.detach().double().numpy()
    pixels = x[0].double().numpy()
    for r in range(4):
        for c in range(6):
            patch = pixels[:, r * 8:(r + 1) * 8, c * 8:(c + 1) * 8]
            k = names.index("patch (%d, %d)" % (r, c)) - rec.image.first_patch
            np.testing.assert_allclose(emb[k].double().numpy(), np.einsum("oihw,ihw->o", W, patch) + bias,
                                       atol=1e-4)
    assert (rec.image.rows, rec.image.cols) == (4, 6)


def test_thumbnail_is_the_image_rescaled_and_shrunk():
    model = tiny("vit", image_size=128, patch_size=32)
    x = torch.zeros(1, 3, 128, 128)
    x[0, 0, :, :64] = 2.0  # left half red, right half black, after the model's normalisation
    x[0, 1, :64:2, 64:] = 2.0  # green in every other row of the top right quarter
    x -= 1.0
    thumb = capture(model, pixel_values=x).image.thumbnail
    assert thumb.shape == (64, 64, 3)  # 128 pixels averaged in blocks of 2 x 2
    np.testing.assert_array_equal(thumb[:, :32], np.broadcast_to([255, 0, 0], (64, 32, 3)))
    np.testing.assert_array_equal(thumb[:32, 32:], np.broadcast_to([0, 128, 0], (32, 32, 3)))
    np.testing.assert_array_equal(thumb[32:, 32:], 0)


def test_image_processor_output_is_taken_as_it_is():
    model = tiny("vit")
    processor = tr.ViTImageProcessor(size={"height": 32, "width": 32})
    image = np.zeros((40, 40, 3), np.uint8)
    image[:, :20] = (200, 30, 30)
    rec = capture(model, processor(images=image, return_tensors="pt"))
    assert rec.tokens()[0][0] == "[CLS]" and rec.image.size == (32, 32)
    thumb = rec.image.thumbnail.astype(int)
    assert thumb[:, :12, 0].min() > 200 and thumb[:, 20:, 0].max() < 60  # red on the left only


def test_padded_image_batches_refused():
    model = tiny("vit")
    with pytest.raises(AttentionInputError, match="pads some examples"):
        capture(model, pixel_values=torch.randn(2, 3, 32, 32), attention_mask=torch.tensor([[1], [0]]))


# --------------------------------------------------------------------------
# Audio


def test_whisper_encoder_decoder_and_encoder_alone():
    model = tiny("whisper")
    frames = 2 * model.config.max_source_positions
    x = torch.randn(1, model.config.num_mel_bins, frames, generator=torch.Generator().manual_seed(3))
    dec = torch.tensor([[5, 6, 7, 8]])
    rec = capture(model, input_features=x, decoder_input_ids=dec, neurons=True)
    assert rec.kinds == ("encoder", "decoder", "cross")
    positions = frames // 2  # the encoder's convolutions halve the frames
    assert rec.tokens("encoder")[0] == tuple("frame %d" % i for i in range(positions))
    assert rec.tokens("cross") == (("id:5", "id:6", "id:7", "id:8"), rec.tokens("encoder")[0])
    assert rec.image is None
    assert_faithful(rec, eager(model, input_features=x, decoder_input_ids=dec))
    # no decoder ids: the decoder start token alone, as generation begins
    start = capture(model, input_features=x)
    assert start.tokens("decoder")[0] == ("id:%d" % model.config.decoder_start_token_id,)
    # the encoder alone
    encoder = model.get_encoder()
    alone = capture(encoder, x, neurons=True)
    assert alone.kinds == ("self",)
    np.testing.assert_allclose(alone.attention(), rec.attention("encoder"), atol=1e-6)


def test_whisper_feature_extractor_output():
    model = tiny("whisper", num_mel_bins=16, max_source_positions=50)
    fe = tr.WhisperFeatureExtractor(feature_size=16, chunk_length=1)  # 1 s: 100 frames
    t = np.arange(16000) / 16000
    features = fe(np.sin(2 * np.pi * 440 * t).astype(np.float32), sampling_rate=16000, return_tensors="pt")
    rec = capture(model, features)
    assert rec.attention("encoder").shape[-1] == 50 and rec.tokens("encoder")[0][-1] == "frame 49"


# --------------------------------------------------------------------------
# State


def test_model_left_as_it_was_hooks_and_swapped_modules_included():
    model = tiny("big_bird")  # block-sparse; switches itself to full attention on short inputs
    assert model.config.attention_type == "block_sparse"
    modules = list(model.modules())
    hooks = [dict(m._forward_hooks) for m in modules]
    long_ids = torch.tensor([IDS * 2])  # 20 tokens: block-sparse attention as it is
    assert capture(model, long_ids).attention().shape == (2, 4, 20, 20)
    # 10 tokens: the model swaps its attention modules, which loses transformers'
    # output_attentions hooks: it returns no attention (its eager output neither)
    with pytest.raises(AttentionInputError, match="returned no attention weights"):
        capture(model, ids())
    assert model.attention_type == "block_sparse" and model.encoder.layer[0].attention.self.__class__.__name__ \
        == "BigBirdBlockSparseAttention"
    assert list(model.modules()) == modules
    assert [dict(m._forward_hooks) for m in modules] == hooks  # output_attentions' hooks taken out
    assert not hasattr(model, "_output_capturing_hooks_installed")
    reference = copy.deepcopy(model)
    reference(input_ids=ids())
    assert reference.attention_type == "original_full"  # what the model itself does to itself


# --------------------------------------------------------------------------
# Stored and read back


def test_score_steps_image_and_reasons_survive_the_logdir(tmp_path, monkeypatch):
    from tb_attention import AttentionWriter, load, metadata

    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    cases = {
        "gemma2": (tiny("gemma2", attn_logit_softcapping=0.25), {"input_ids": ids()}, 3),
        "gpt_oss": (tiny("gpt_oss"), {"input_ids": ids()}, 3),
        "vit": (tiny("vit"), {"pixel_values": x}, 1),
        "granite_swa": (tiny("granite_swa"), {"input_ids": ids()}, 1),
    }
    written = {}
    # uncompressed: the versions of format 3's score steps (compressed steps are all version 4)
    with AttentionWriter(str(tmp_path), compress=False) as w:
        for tag, (model, inputs, _) in cases.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NeuronsNotSupportedWarning)  # granite_swa's
                written[tag] = capture(model, inputs, neurons=True)
            w.add_attention(tag, written[tag], global_step=0)
    log = load(str(tmp_path))
    for tag, (model, inputs, version) in cases.items():
        run = log.runs()[0]
        got, want = log.get(run, tag, 0), written[tag]
        if want.has_neurons and want.neurons().key_groups > 1:
            version = 4  # grouped keys stored once per key head (format 4)
        assert log.header(run, tag, 0).version == version, tag
        k, w_ = got.kind(), want.kind()
        assert (k.no_neurons, k.has_sinks) == (w_.no_neurons, w_.has_sinks)
        if w_.neurons is not None:
            for field in ("softcaps", "sinks"):
                a, b = getattr(k.neurons, field), getattr(w_.neurons, field)
                assert (a is None) == (b is None), (tag, field)
                if a is not None:
                    np.testing.assert_array_equal(a, b)
            ref = sweep.eager_attentions(model, inputs)["self"][0]
            assert np.abs(got.recompute_attention() - ref).max() < 1e-3, tag
    im, want_im = log.get(run, "vit", 0).image, written["vit"].image
    assert (im.rows, im.cols, im.first_patch, im.patch_size, im.size) == (4, 4, 1, (8, 8), (32, 32))
    np.testing.assert_array_equal(im.thumbnail, want_im.thumbnail)
    assert log.get(run, "gemma2", 0).image is None
    # a reader of format 2 would recompute the soft-capped step wrongly: it refuses it instead
    monkeypatch.setattr(metadata, "FORMAT_VERSION", 2)
    with pytest.raises(Exception, match="format version [34].*upgrade"):  # 4: its keys are grouped
        load(str(tmp_path)).get(run, "gemma2", 0)
    assert load(str(tmp_path)).get(run, "vit", 0).kinds == ("self",)



@pytest.mark.parametrize("dtype,tolerance", [(torch.bfloat16, 1e-2), (torch.float16, 2e-3)])
def test_half_precision_models_keep_their_neurons(dtype, tolerance):
    # rows of bfloat16 weights sum to 1 only within its rounding: still probabilities
    model = tiny("llama").to(dtype)
    rec = capture(model, ids(), neurons=True)
    ref = eager(model, input_ids=ids())["self"]
    np.testing.assert_array_equal(rec.attention(), ref)
    assert np.abs(rec.attention().sum(-1) - 1).max() > 1e-3 or dtype == torch.float16
    assert np.abs(rec.recompute_attention() - ref).max() < tolerance


def test_keywords_the_probe_sets_itself_are_taken_over():
    model = tiny("llama")
    plain = capture(model, input_ids=ids())
    rec = capture(model, {"input_ids": ids()}, output_attentions=False, return_dict=False)
    np.testing.assert_array_equal(rec.attention(), plain.attention())
    with pytest.raises(AttentionInputError, match="input_ids given both"):
        capture(model, {"input_ids": ids()}, input_ids=ids())
