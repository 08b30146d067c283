"""One process of test_distributed's Lightning launch (torchrun, 2 processes,
CPU, gloo): a tiny BERT trained by lightning.Trainer with its
ModelParallelStrategy, the model sharded by FSDP2's fully_shard in
configure_model, and tb_attention's Lightning AttentionCallback. Writes
rank<N>.json into $OUT: the steps each process ran the probe's forward pass
at, and what the callback says it logged."""
import json
import os
import sys

# the checkout under test (torchrun starts this file as a script)
sys.path.insert(0, os.environ.get("REPO") or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import lightning  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from lightning.pytorch.loggers import TensorBoardLogger  # noqa: E402
from lightning.pytorch.strategies import ModelParallelStrategy  # noqa: E402
from torch.distributed.fsdp import fully_shard  # noqa: E402

from tb_attention.integrations.lightning import AttentionCallback  # noqa: E402
from tests.models import tiny_model  # noqa: E402

STEPS, EVERY = 4, 2


class ShardedMLM(lightning.LightningModule):
    def __init__(self):
        super().__init__()
        self.bert, self.tokenizer = tiny_model("bert", model_class=transformers.BertForMaskedLM)
        self.bert.train()

    def configure_model(self):
        for layer in self.bert.bert.encoder.layer:
            fully_shard(layer)
        fully_shard(self.bert)

    def training_step(self, batch, batch_idx):
        return self.bert(input_ids=batch, labels=batch).loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1e-2)


def main():
    torch.manual_seed(0)
    module = ShardedMLM()
    forwards = []
    module.bert.register_forward_pre_hook(lambda m, args, kwargs: forwards.append(module.trainer.global_step),
                                          with_kwargs=True)
    callback = AttentionCallback({"cat": "the cat sat on the mat"}, every_n_steps=EVERY)
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.DataLoader([torch.randint(5, 99, (12,), generator=g) for _ in range(16)], batch_size=2)
    trainer = lightning.Trainer(
        max_steps=STEPS, logger=TensorBoardLogger(os.environ["LOGDIR"], name="lightning_fsdp2", version="v0"),
        callbacks=[callback], accelerator="cpu", devices=2,
        strategy=ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1),
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=EVERY)
    trainer.fit(module, data)
    rank = trainer.global_rank
    with open(os.path.join(os.environ["OUT"], "rank%d.json" % rank), "w") as f:
        json.dump({"rank": rank, "forwards": forwards, "logged": callback.logged_steps}, f)


if __name__ == "__main__":
    main()
