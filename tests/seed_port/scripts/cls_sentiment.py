"""Sentiment classification, bert4torch 0.2.5 style: a BaseModel subclass holding a BERT
with a pooler, ListDataset.load_data, a collate_fn, compile with accuracy, an Evaluator
callback that saves the best weights, predict."""

import json
import os

import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import DataLoader

# seed: from bert4torch.models import build_transformer_model, BaseModel
# seed: from bert4torch.snippets import sequence_padding, Callback, ListDataset, get_pool_emb, seed_everything
# seed: from bert4torch.tokenizers import Tokenizer
# [b4t imports]
from b4t.layers import get_pool_emb
from b4t.models import build_transformer_model
from b4t.tokenizers import Tokenizer, sequence_padding
from b4t.trainer import BaseModel, Callback, ListDataset, seed_everything

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
        self.best_val_acc = 0.0
        self.val_accs = []

    def on_epoch_end(self, global_step, epoch, logs=None):
        val_acc = evaluate(valid_dataloader)
        self.val_accs.append(val_acc)
        if val_acc >= self.best_val_acc:
            self.best_val_acc = val_acc
            model.save_weights("best_model.pt")
        print(f"val_acc: {val_acc:.5f}, best_val_acc: {self.best_val_acc:.5f}\n")


if __name__ == "__main__":
    evaluator = Evaluator()
    seed_everything(42)
    history = model.fit(train_dataloader, epochs=6, steps_per_epoch=None, callbacks=[evaluator])
    model.load_weights("best_model.pt")
    best_acc = evaluate(valid_dataloader)
    x, _ = next(iter(valid_dataloader))
    probs = torch.softmax(model.predict(x), dim=-1)
    assert history.history["loss"][-1] < history.history["loss"][0] * 0.7, history.history
    assert best_acc >= 0.8, evaluator.val_accs
    assert abs(best_acc - evaluator.best_val_acc) < 1e-9
    out = {
        "loss": history.history["loss"],
        "accuracy": history.history["accuracy"],
        "val_accs": evaluator.val_accs,
        "probs": probs.tolist(),
    }
    json.dump(out, open(os.environ["B4T_PORT_OUT"], "w"))
