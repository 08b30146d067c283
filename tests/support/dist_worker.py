"""One rank of tests/test_distributed.py, started by torchrun.

For each setup (SETUPS: a BertForMaskedLM under DDP, under FSDP2
`fully_shard`, under DDP with sharded=True forced; a LlamaForCausalLM with
grouped keys under FSDP2) it trains the tiny model for STEPS steps twice from the same weights
and seeds, once with a Probe every EVERY steps and once without, and keeps
the losses of both (as float.hex: compared bit for bit). With the probe it
also counts this rank's forward passes during each maybe_log, and rank 0
saves the full (unsharded) weights at every probed step for the test's
oracle. Rank r writes OUT/rank<r>.json.

    torchrun ... dist_worker.py   (env: LOGDIR, OUT)
"""
import json
import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import transformers  # noqa: E402
from torch.distributed.fsdp import fully_shard  # noqa: E402
from torch.distributed.tensor import DTensor  # noqa: E402

import tb_attention  # noqa: E402
from tb_attention.probe import is_sharded  # noqa: E402
from tests.models import tiny_model  # noqa: E402

STEPS = 5
EVERY = 2
TEXT = "the cat sat on the mat"
LLAMA_IDS = [98, 17, 33, 8, 41, 60, 12, 5]  # the LLaMA has no tokenizer: token ids
SETUPS = ("ddp", "fsdp", "ddp_forced", "fsdp_llama")


def build(setup):
    """(model, what training calls, tokenizer or None, its transformer body)"""
    if setup == "fsdp_llama":
        model, tok = tiny_model("llama", model_class=transformers.LlamaForCausalLM)
        body, layers = model.model, model.model.layers
    else:
        model, tok = tiny_model("bert", model_class=transformers.BertForMaskedLM)
        body, layers = model.bert, model.bert.encoder.layer
    model.train()
    if setup.startswith("fsdp"):
        for layer in layers:
            fully_shard(layer)
        fully_shard(model)
        return model, model, tok, body
    return model, torch.nn.parallel.DistributedDataParallel(model), tok, body


def full_weights(model):
    """The unsharded state dict (a collective under FSDP2: every rank calls it)."""
    out = {}
    for k, v in model.state_dict().items():
        out[k] = (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().clone()
    return out


def train(setup, probe_dir, rank):
    model, wrapped, tok, body = build(setup)
    opt = torch.optim.SGD(wrapped.parameters(), lr=0.5)
    probe = None
    if probe_dir is not None:
        probe = tb_attention.Probe(wrapped, tok, {"cat": LLAMA_IDS if tok is None else TEXT}, probe_dir, every_n_steps=EVERY, neurons=True,
                                   sharded=True if setup == "ddp_forced" else None)
    torch.manual_seed(100 + rank)  # dropout, per rank
    g = torch.Generator().manual_seed(rank)  # each rank its own batches
    result = {"losses": [], "logged": [], "forwards": [], "resharded": [], "sharded": is_sharded(wrapped)}
    forwards = []
    body.register_forward_hook(lambda *_: forwards.append(1))
    for step in range(STEPS):
        ids = torch.randint(5, 99, (2, 10), generator=g)
        loss = wrapped(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        result["losses"].append(loss.item().hex())
        if probe is None:
            continue
        before = len(forwards)
        result["logged"].append(probe.maybe_log(step))
        result["forwards"].append(len(forwards) - before)
        # the probe freed what its forward pass gathered (FSDP2 keeps the root's
        # parameters unsharded after a forward pass without backward)
        result["resharded"].append(all(isinstance(p, DTensor) for p in model.parameters()))
        if probe.should_log(step):
            weights = full_weights(model)
            if rank == 0:
                torch.save(weights, os.path.join(os.environ["OUT"], "%s-%d.pt" % (setup, step)))
    if probe is not None:
        probe.close()
        result["opened_writer"] = probe._writer is not None
    flat = torch.cat([w.flatten() for w in full_weights(model).values()])
    gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    result["replicas_equal"] = all(torch.equal(gathered[0], x) for x in gathered)
    dist.barrier()
    return result


def main():
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    result = {"world_size": dist.get_world_size(), "setups": {}}
    for setup in SETUPS:
        with_probe = train(setup, os.path.join(os.environ["LOGDIR"], setup), rank)
        without = train(setup, None, rank)
        with_probe["losses_without_probe"] = without["losses"]
        result["setups"][setup] = with_probe
    # Tear down in lockstep: a rank that leaves while the peer's gloo
    # threads still talk to it can abort in C++ at exit.
    dist.barrier()
    dist.destroy_process_group()
    with open(os.path.join(os.environ["OUT"], "rank%d.json" % rank), "w") as f:
        json.dump(result, f)
    # gloo's threads can still abort in C++ destructors at exit (seen in
    # test_workflows' DDP worker): torch's teardown, not what is checked here
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
