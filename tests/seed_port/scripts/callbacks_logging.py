"""Training callbacks, bert4torch 0.2.5 style: an Evaluator that puts the dev accuracy into
the logs, then Logger (file), Tensorboard (prefix 'train'), EarlyStopping on the dev
accuracy and Checkpoint saving weights, optimizer and step parameters each epoch."""

import json
import os

import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import DataLoader

# seed: from bert4torch.models import build_transformer_model, BaseModel
# seed: from bert4torch.snippets import sequence_padding, Callback, ListDataset, get_pool_emb, seed_everything
# seed: from bert4torch.snippets import Logger, Tensorboard, EarlyStopping, Checkpoint
# seed: from bert4torch.tokenizers import Tokenizer
# [b4t imports]
from b4t.layers import get_pool_emb
from b4t.models import build_transformer_model
from b4t.tokenizers import Tokenizer, sequence_padding
from b4t.trainer import (
    BaseModel,
    Callback,
    Checkpoint,
    EarlyStopping,
    ListDataset,
    Logger,
    Tensorboard,
    seed_everything,
)

# [end b4t imports]

maxlen = 32
batch_size = 12
root = os.environ["B4T_PORT_DIR"]
config_path = f"{root}/bert/config.json"
checkpoint_path = f"{root}/bert/pytorch_model.bin"
dict_path = f"{root}/vocab.txt"
device = "cpu"
seed_everything(42)

tokenizer = Tokenizer(dict_path, do_lower_case=True)


class MyDataset(ListDataset):
    @staticmethod
    def load_data(filename):
        D = []
        with open(filename, encoding="utf-8") as f:
            for l in f:
                text, label = l.strip().split("\t")
                D.append((text, int(label)))
        return D


def collate_fn(batch):
    batch_token_ids, batch_segment_ids, batch_labels = [], [], []
    for text, label in batch:
        token_ids, segment_ids = tokenizer.encode(text, maxlen=maxlen)
        batch_token_ids.append(token_ids)
        batch_segment_ids.append(segment_ids)
        batch_labels.append([label])
    batch_token_ids = torch.tensor(
        sequence_padding(batch_token_ids), dtype=torch.long, device=device
    )
    batch_segment_ids = torch.tensor(
        sequence_padding(batch_segment_ids), dtype=torch.long, device=device
    )
    batch_labels = torch.tensor(batch_labels, dtype=torch.long, device=device)
    return [batch_token_ids, batch_segment_ids], batch_labels.flatten()


train_dataloader = DataLoader(
    MyDataset(f"{root}/sentiment/train.tsv"),
    batch_size=batch_size,
    shuffle=True,
    collate_fn=collate_fn,
)
valid_dataloader = DataLoader(
    MyDataset(f"{root}/sentiment/dev.tsv"), batch_size=batch_size, collate_fn=collate_fn
)


class Model(BaseModel):
    def __init__(self, pool_method="cls"):
        super().__init__()
        self.pool_method = pool_method
        self.bert = build_transformer_model(
            config_path=config_path, checkpoint_path=checkpoint_path, with_pool=True
        )
        seed_everything(7)  # the same head init on both libraries (see MIGRATION.md: random stream)
        self.dropout = nn.Dropout(0.1)
        self.dense = nn.Linear(self.bert.configs["hidden_size"], 2)

    def forward(self, token_ids, segment_ids):
        hidden_states, pooling = self.bert([token_ids, segment_ids])
        pooled_output = get_pool_emb(
            hidden_states, pooling, token_ids.gt(0).long(), self.pool_method
        )
        output = self.dropout(pooled_output)
        output = self.dense(output)
        return output


model = Model().to(device)
model.compile(
    loss=nn.CrossEntropyLoss(),
    optimizer=optim.Adam(model.parameters(), lr=2e-3),
    metrics=["accuracy"],
)


def evaluate(data):
    total, right = 0.0, 0.0
    for x_true, y_true in data:
        y_pred = model.predict(x_true).argmax(axis=1)
        total += len(y_true)
        right += (y_true == y_pred).sum().item()
    return right / total


class Evaluator(Callback):
    def __init__(self):
        self.val_accs = []

    def on_epoch_end(self, global_step, epoch, logs=None):
        val_acc = evaluate(valid_dataloader)
        self.val_accs.append(val_acc)
        logs["val_acc"] = val_acc


if __name__ == "__main__":
    evaluator = Evaluator()
    logger = Logger("logs/train.log", interval=4)
    tensorboard = Tensorboard("logs/tb", prefix="train")
    early_stop = EarlyStopping(monitor="val_acc", patience=1, verbose=1, mode="max")
    checkpoint = Checkpoint(
        "ckpt/model_{epoch}.pt",
        optimizer_path="ckpt/optimizer_{epoch}.pt",
        steps_params_path="ckpt/steps_{epoch}.pt",
    )
    seed_everything(42)
    history = model.fit(
        train_dataloader,
        epochs=12,
        steps_per_epoch=None,
        callbacks=[evaluator, logger, tensorboard, early_stop, checkpoint],
    )
    n_epochs = len(history.history["loss"])
    best = evaluator.val_accs.index(max(evaluator.val_accs))
    assert max(evaluator.val_accs) >= 0.8, evaluator.val_accs
    # patience 1: the first epoch without improvement after the best one stops training
    assert n_epochs < 12 and n_epochs == best + 2, (n_epochs, evaluator.val_accs)
    log_text = open("logs/train.log", encoding="utf-8").read()
    assert "Finish Training" in log_text and f"epoch={n_epochs}" in log_text, log_text
    assert all(os.path.exists(f"ckpt/{k}_{n_epochs}.pt") for k in ("model", "optimizer", "steps"))
    saved = torch.load(f"ckpt/model_{n_epochs}.pt", map_location="cpu")
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    tb_files = [f for f in os.listdir("logs/tb") if f.startswith("events")]
    assert tb_files, os.listdir("logs/tb")
    out = {"loss": history.history["loss"], "val_accs": evaluator.val_accs, "n_epochs": n_epochs}
    json.dump(out, open(os.environ["B4T_PORT_OUT"], "w"))
