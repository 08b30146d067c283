"""Attention weights from the model's device to host memory, already in the stored dtype.

capture(..., dtype="uint8" or "float16") hands each attention tensor it
records to keep(): the weights are quantized on the model's device, a few
rows at a time (never float32 of a whole layer: 32 heads at 2048 tokens
would be 512 MiB), and copied into pinned host memory without blocking on
CUDA. finish() waits for every copy once, after the forward pass, and gives
numpy arrays. On the CPU the quantized tensor is the host copy.

uint8 is round(w * 255), half to even (torch.round, as codec.quantize's
np.rint), computed in float32 from the model's dtype: the bytes equal what
the writer stores for the same float32 weights.
"""
import numpy as np

# Weights converted to float32 at once on the device (64 MiB of float32).
CHUNK_ELEMENTS = 16 * 2 ** 20

_TORCH_DTYPES = ("uint8", "float16")


def check_dtype(dtype):
    if dtype is not None and dtype not in _TORCH_DTYPES:
        raise ValueError("dtype must be None (float32), 'uint8' or 'float16', got %r" % (dtype,))


def quantize_on_device(t, dtype, out=None):
    """t (torch, any float dtype and device, [..., Tk]) as a new torch tensor
    of dtype ("uint8" or "float16") on the same device; or written into out
    (a tensor of that dtype and t's shape, on t's device or on the CPU: then
    each chunk is copied over as it is done, non-blocking into pinned memory)."""
    import torch

    t = t.detach()
    want = torch.uint8 if dtype == "uint8" else torch.float16
    if out is None:
        out = torch.empty(t.shape, dtype=want, device=t.device)
    if t.numel() == 0:
        return out
    width = t.shape[-1]
    src, dst = t.reshape(-1, width), out.view(-1, width)
    rows = max(1, CHUNK_ELEMENTS // max(1, width))
    for i in range(0, src.shape[0], rows):
        if dtype == "float16":
            dst[i:i + rows].copy_(src[i:i + rows], non_blocking=True)
            continue
        x = src[i:i + rows].to(torch.float32, copy=True)
        x.mul_(255.0).clamp_(0.0, 255.0).round_()
        dst[i:i + rows].copy_(x.to(torch.uint8), non_blocking=True)
    return out


class Pending:
    """A host copy that may still be in flight (CUDA, non-blocking)."""

    __slots__ = ("host", "event")

    def __init__(self, host, event=None):
        self.host = host
        self.event = event


def to_host(t):
    """A Pending host copy of a device tensor the caller owns: pinned and
    non-blocking on CUDA, the tensor itself on the CPU."""
    import torch

    if t.device.type == "cpu":
        return Pending(t)
    if t.device.type == "cuda":
        host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        host.copy_(t, non_blocking=True)
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(t.device))
        return Pending(host, event)
    return Pending(t.cpu())  # MPS and others: a plain copy


def keep(t, dtype):
    """What capture records of an attention tensor: its stored dtype, on the
    way to the host (finish() gives the numpy array)."""
    return to_host(quantize_on_device(t, dtype))


def finish(value):
    """numpy array of a Pending (waits for its copy); anything else as it is."""
    if not isinstance(value, Pending):
        return value
    if value.event is not None:
        value.event.synchronize()
        value.event = None
    return value.host.numpy()


def host_buffer(shape, dtype, device):
    """A host tensor to quantize into: pinned when the weights are on CUDA."""
    import torch

    want = torch.uint8 if dtype == "uint8" else torch.float16
    return torch.empty(shape, dtype=want, pin_memory=getattr(device, "type", "cpu") == "cuda")


def host_attention(layers, dtype):
    """[L, H, Tq, Tk] numpy in dtype from L torch tensors [1, H, Tq, Tk] or
    [H, Tq, Tk] (one example's attention, layer by layer), written straight
    into one host array: no copy of the record but the record itself."""
    import torch

    layers = [t[0] if t.dim() == 4 else t for t in layers]
    host = host_buffer((len(layers),) + tuple(layers[0].shape), dtype, layers[0].device)
    for i, t in enumerate(layers):
        quantize_on_device(t, dtype, out=host[i])
    if layers[0].device.type == "cuda":
        torch.cuda.synchronize(layers[0].device)
    return host.numpy()


def host_stored(t, dtype):
    """t quantized on its device straight into a host tensor (pinned on CUDA,
    the copies in flight until synchronize())."""
    host = host_buffer(tuple(t.shape), dtype, t.device)
    quantize_on_device(t, dtype, out=host)
    return host


def value_range(t):
    """(min, max, largest row sum) of t, on its device: a 3-element float32
    tensor (rows summed in float32, no float32 copy of t)."""
    import torch

    t = t.detach()
    if t.numel() == 0:
        return torch.zeros(3, dtype=torch.float32, device=t.device)
    lo, hi = torch.aminmax(t)
    return torch.stack([lo.float(), hi.float(), t.sum(-1, dtype=torch.float32).amax()])


def synchronize(tensors):
    """Wait for every copy into the host tensors of CUDA devices."""
    import torch

    for dev in {t.device for t in tensors if getattr(t, "is_cuda", False)}:
        torch.cuda.synchronize(dev)
