"""PGD adversarial training (K=3) through the AdversarialTraining callback, bert4torch 0.2.5 style."""

import json
import os

import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import DataLoader

# seed: from bert4torch.models import build_transformer_model, BaseModel
# seed: from bert4torch.snippets import sequence_padding, Callback, ListDataset, seed_everything
# seed: from bert4torch.tokenizers import Tokenizer
# seed: from bert4torch.snippets import AdversarialTraining
# [b4t imports]
from b4t.adversarial import AdversarialTraining
from b4t.models import build_transformer_model
from b4t.tokenizers import Tokenizer, sequence_padding
from b4t.trainer import BaseModel, ListDataset, seed_everything

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
    batch_token_ids, batch_labels = [], []
    for text, label in batch:
        token_ids, _ = tokenizer.encode(text, maxlen=maxlen)
        batch_token_ids.append(token_ids)
        batch_labels.append([label])
    batch_token_ids = torch.tensor(
        sequence_padding(batch_token_ids), dtype=torch.long, device=device
    )
    batch_labels = torch.tensor(batch_labels, dtype=torch.long, device=device)
    return batch_token_ids, batch_labels.flatten()


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
    def __init__(self):
        super().__init__()
        self.bert = build_transformer_model(
            config_path=config_path,
            checkpoint_path=checkpoint_path,
            with_pool=True,
            segment_vocab_size=0,
        )
        seed_everything(7)  # the same head init on both libraries (see MIGRATION.md: random stream)
        self.dropout = nn.Dropout(0.1)
        self.dense = nn.Linear(32, 2)

    def forward(self, token_ids):
        _, pooled_output = self.bert([token_ids])
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


if __name__ == "__main__":
    seed_everything(42)
    history = model.fit(
        train_dataloader,
        epochs=8,
        steps_per_epoch=None,
        callbacks=[AdversarialTraining("pgd", {"epsilon": 0.1, "alpha": 0.05})],
    )
    acc = evaluate(valid_dataloader)
    x, _ = next(iter(valid_dataloader))
    probs = torch.softmax(model.predict(x), dim=-1)
    assert history.history["loss"][-1] < history.history["loss"][0] * 0.7, history.history
    assert acc >= 0.8, acc
    out = {"loss": history.history["loss"], "acc": acc, "probs": probs.tolist()}
    json.dump(out, open(os.environ["B4T_PORT_OUT"], "w"))
