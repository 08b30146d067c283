"""The demo's vision part: a small ViT learns the colour of a square, and its
attention over two probe images is logged while it trains (run "vit-train").

The task: 32 x 32 images of dim noise with one bright square (red, green,
blue or white) filling one of the 16 patches (8 x 8 pixels each), anywhere;
the label is its colour. The [CLS] token can only answer by attending to the
square's patch, so the last layer's [CLS] attention moves onto it as the
model learns: in the dashboard's head or matrix view (image mode, query
[CLS]) the heat over the square grows step by step. Queries and keys are
logged too (neuron view).

    from vit import train_vit
    summary = train_vit(logdir, steps=200, log_every=20)
"""
import os

import numpy as np
import torch

import tb_attention

RUN = "vit-train"
SIZE, PATCH = 32, 8
GRID = SIZE // PATCH
COLORS = np.array([[2, 0, 0], [0, 2, 0], [0, 0, 2], [1.5, 1.5, 1.5]], np.float32)  # the labels
# probe images: the square's patch (row, column) and colour -> tag
PROBES = {((0, 3), 0): "image/red-top-right", ((2, 1), 2): "image/blue-bottom-left"}


def images(patches, colors, rng):
    """float32 [N, 3, 32, 32] (the model's normalised input) and the colour labels."""
    x = rng.normal(0.0, 0.3, (len(patches), 3, SIZE, SIZE)).astype(np.float32)
    for i, (r, c) in enumerate(patches):
        x[i, :, r * PATCH:(r + 1) * PATCH, c * PATCH:(c + 1) * PATCH] += COLORS[colors[i]][:, None, None]
    return torch.from_numpy(x), torch.tensor(np.asarray(colors))


def random_images(n, rng):
    return images([tuple(p) for p in rng.integers(0, GRID, (n, 2))], rng.integers(0, len(COLORS), n), rng)


def square_attention(record, patch):
    """Mean over heads of the last layer's [CLS] attention on the square's patch."""
    a = record.attention()[-1]  # [H, T, T]
    return float(a[:, 0, record.image.first_patch + patch[0] * GRID + patch[1]].mean())


def build(seed):
    import transformers

    config = transformers.ViTConfig(
        image_size=SIZE, patch_size=PATCH, num_channels=3, hidden_size=64, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=128, num_labels=4,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(seed)
    return transformers.ViTForImageClassification(config)


def train_vit(logdir, steps=200, log_every=20, seed=0, batch=32):
    """Train, logging the probes every log_every steps (and at the last step);
    returns {"steps", "accuracy", "square": {tag: (first, last)}}."""
    rng = np.random.default_rng(seed)
    model = build(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    probe_x, _ = images([p for p, _ in PROBES], [c for _, c in PROBES], np.random.default_rng(seed + 1))
    first, last = {}, {}
    with tb_attention.AttentionWriter(os.path.join(logdir, RUN)) as writer:
        for step in range(steps + 1):
            if step % log_every == 0 or step == steps:
                for i, ((patch, _), tag) in enumerate(PROBES.items()):
                    record = tb_attention.capture(model, pixel_values=probe_x[i:i + 1], neurons=True)
                    writer.add_attention(tag, record, global_step=step)
                    first.setdefault(tag, square_attention(record, patch))
                    last[tag] = square_attention(record, patch)
            if step == steps:
                break
            model.train()
            x, y = random_images(batch, rng)
            loss = model(pixel_values=x, labels=y).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    x, y = random_images(256, rng)
    with torch.no_grad():
        accuracy = float((model(pixel_values=x).logits.argmax(-1) == y).float().mean())
    return {"steps": steps, "accuracy": accuracy,
            "square": {tag: (first[tag], last[tag]) for tag in PROBES.values()}}
