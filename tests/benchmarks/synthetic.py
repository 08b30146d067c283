"""Synthetic attention for the benchmarks. Imports nothing of tb_attention,
so bench_scale's children can use it whatever tree is first on sys.path."""
import numpy as np


def softmax_attention(L, H, T, seed=0):
    """float32 [L, H, T, T] softmax rows of N(0, 3^2) logits, built layer by
    layer to keep the peak memory at one copy."""
    rng = np.random.default_rng(seed)
    a = np.empty((L, H, T, T), np.float32)
    for layer in range(L):
        x = rng.standard_normal((H, T, T), dtype=np.float32)
        x *= 3
        x -= x.max(-1, keepdims=True)
        np.exp(x, out=x)
        x /= x.sum(-1, keepdims=True)
        a[layer] = x
    return a
